"""scripts/gradient_shares.py: each weighted term's gradient, against the explicit formulas."""
import importlib.util
from pathlib import Path

import torch

from harness.distill.methods import PARTS, MethodContext, MethodSettings, TeacherBatch
from harness.models import build_model

_SPEC = importlib.util.spec_from_file_location(
    "gradient_shares", Path(__file__).resolve().parents[1] / "scripts" / "gradient_shares.py")
gradient_shares = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gradient_shares)


def _setup(seed=0, b=6, k=2, c=4):
    torch.manual_seed(seed)
    student = build_model("alexnet", c, "smoke")
    ctx = MethodContext(num_classes=c, teacher_names=[f"t{i}" for i in range(k)], teacher_channels=[8] * k,
                        student_channels=student.conv4_shape()[0])
    s = MethodSettings(gl_ground_cost="01", kd_temperature=3.0)
    parts = {"ce": PARTS["ce"](ctx, s), "kd": PARTS["kd"](ctx, s)}
    size = 32
    batches = []
    for _ in range(2):
        x = torch.randn(b, 3, size, size)
        tb = TeacherBatch(logits=torch.randn(b, k, c) * 3, conv4=None, target=torch.randint(0, c, (b,)))
        batches.append((x, tb))
    return student, parts, batches, s


def test_logit_gradients_match_the_explicit_formulas():
    student, parts, batches, s = _setup()
    lam, t = 0.6, s.kd_temperature
    got = gradient_shares.measure(student, parts, {"ce": 1 - lam, "kd": lam}, batches)
    ce = kd = 0.0
    for i, (x, tb) in enumerate(batches):
        torch.manual_seed(i)   # measure's dropout masks
        with torch.no_grad():
            z = student.forward_features(x).logits
        onehot = torch.nn.functional.one_hot(tb.target, z.shape[1]).float()
        # d/dz of the per-item losses: CE gives softmax(z) - y; T^2 KL(p_t || softmax(z/T)) gives T (softmax(z/T) - p_t)
        ce += float(((1 - lam) * (torch.softmax(z, 1) - onehot)).norm(dim=1).mean())
        p_t = torch.softmax(tb.logits / t, -1)
        kd += float((lam * t * (torch.softmax(z / t, 1).unsqueeze(1) - p_t).mean(1)).norm(dim=1).mean())
    assert abs(got["ce"]["logits"] - ce / 2) < 1e-5
    assert abs(got["kd"]["logits"] - kd / 2) < 1e-5
    assert abs(got["ce"]["cos_ce"] - 1.0) < 1e-6


def test_parameter_gradient_norm_and_cosine_are_of_the_weighted_terms():
    student, parts, batches, s = _setup(seed=1)
    got = gradient_shares.measure(student, parts, {"ce": 0.4, "kd": 0.6}, batches)
    params = [p for p in student.parameters() if p.requires_grad]
    norms, coss = {"ce": 0.0, "kd": 0.0}, 0.0
    for i, (x, tb) in enumerate(batches):
        flat = {}
        for name, w in (("ce", 0.4), ("kd", 0.6)):
            torch.manual_seed(i)
            student.zero_grad()
            out = student.forward_features(x)
            (w * next(iter(parts[name](out, tb).values()))).backward()
            flat[name] = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
            norms[name] += float(flat[name].norm()) / len(batches)
        coss += float(torch.dot(flat["ce"], flat["kd"]) / (flat["ce"].norm() * flat["kd"].norm())) / len(batches)
    for name in norms:
        assert abs(got[name]["params"] - norms[name]) < 1e-4 * max(1.0, norms[name])
    assert abs(got["kd"]["cos_ce"] - coss) < 1e-4
