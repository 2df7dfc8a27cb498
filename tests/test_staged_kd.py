"""staged-kd (our interpretation of the staged-KD abstract): pseudo-label refinement, the soft
CE and consensus KD it trains with, the cascade schedule and which blocks each phase trains."""

import math

import pytest
import torch

from harness.distill.losses import LossInputError, cross_entropy, kd_loss, kd_to_distribution, soft_cross_entropy
from harness.distill.losses.pseudo_label import refine_labels, teacher_consensus
from harness.distill.methods import MethodContext, MethodError, MethodSettings, TeacherBatch, build_method
from harness.distill.staged import cascade_phase
from harness.models import build_model

D64 = torch.float64


# ---------------------------------------------------------------- pseudo-labels


def _logits_for(probs, temperature):
    """Teacher logits whose softmax at ``temperature`` is exactly ``probs`` (up to rounding)."""
    return temperature * torch.tensor(probs, dtype=D64).log()


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_refine_labels_golden_hand_made_case(temperature):
    # Two teachers, three classes. Per row: the teachers' distributions and the true label.
    rows = [
        ([0.95, 0.03, 0.02], [0.95, 0.03, 0.02], 1),   # confident (0.95) and disagreeing -> replaced by 0
        ([0.95, 0.03, 0.02], [0.95, 0.03, 0.02], 0),   # confident and agreeing -> kept
        ([0.60, 0.30, 0.10], [0.80, 0.10, 0.10], 2),   # disagreeing, not confident (0.70) -> kept
        ([1.00, 0.00, 0.00], [0.84, 0.16, 0.00], 2),   # q = (0.92, 0.08, 0): confident, disagreeing -> replaced
        ([0.90, 0.10, 0.00], [0.86, 0.14, 0.00], 1),   # q = (0.88, 0.12, 0): just below tau -> kept
    ]
    logits = torch.stack([torch.stack([_logits_for(a, temperature), _logits_for(b, temperature)]) for a, b, _ in rows])
    logits = logits.clamp_min(-1e4)        # log 0 = -inf -> a finite, fully underflowing logit
    y = torch.tensor([r[2] for r in rows])
    out = refine_labels(logits, y, alpha=0.3, tau=0.9, temperature=temperature)
    # q by hand, then target = 0.7 * onehot(label') + 0.3 * q
    expected_q = [[0.95, 0.03, 0.02], [0.95, 0.03, 0.02], [0.70, 0.20, 0.10], [0.92, 0.08, 0.0], [0.88, 0.12, 0.0]]
    expected_target = [[0.985, 0.009, 0.006], [0.985, 0.009, 0.006], [0.21, 0.06, 0.73], [0.976, 0.024, 0.0],
                       [0.264, 0.736, 0.0]]
    assert torch.allclose(out.consensus, torch.tensor(expected_q, dtype=D64), atol=1e-9)
    assert torch.allclose(out.target, torch.tensor(expected_target, dtype=D64), atol=1e-9)
    assert out.replaced.tolist() == [True, False, False, True, False]
    assert torch.allclose(out.target.sum(1), torch.ones(5, dtype=D64), atol=1e-12)


def test_refine_labels_replaces_only_when_confident_and_disagreeing():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 3, 5, generator=g, dtype=D64) * 6
    y = torch.randint(0, 5, (64,), generator=g)
    for tau in (0.5, 0.8, 0.95):
        out = refine_labels(logits, y, alpha=0.25, tau=tau, temperature=2.0)
        q = teacher_consensus(logits, 2.0)
        conf, top = q.max(1)
        assert torch.equal(out.replaced, (conf >= tau) & (top != y))
        label = torch.where(out.replaced, top, y)
        assert torch.allclose(out.target, 0.75 * torch.nn.functional.one_hot(label, 5).to(D64) + 0.25 * q)
        assert torch.allclose(out.target.sum(1), torch.ones(64, dtype=D64))
        assert (out.target >= 0).all()
    # alpha = 0 and an unreachable tau: the plain one-hot labels
    out = refine_labels(logits, y, alpha=0.0, tau=1.1, temperature=2.0)
    assert not out.replaced.any() and torch.equal(out.target.argmax(1), y) and torch.equal(out.target.max(1).values,
                                                                                          torch.ones(64, dtype=D64))


def test_refine_labels_rejects_multilabel_targets_and_bad_alpha():
    logits = torch.zeros(2, 3, 4)
    with pytest.raises(LossInputError, match="pseudo_label.py: target must be 2 integer class ids"):
        refine_labels(logits, torch.zeros(2, 4))
    with pytest.raises(LossInputError, match="alpha must lie in"):
        refine_labels(logits, torch.tensor([0, 1]), alpha=1.5)


def test_soft_cross_entropy_and_consensus_kd():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, 6, generator=g, dtype=D64)
    y = torch.tensor([0, 5, 2, 2, 1])
    onehot = torch.nn.functional.one_hot(y, 6).to(D64)
    assert float(soft_cross_entropy(z, onehot)) == pytest.approx(float(cross_entropy(z, y)), rel=1e-12)
    r = torch.softmax(torch.randn(5, 6, generator=g, dtype=D64), 1)
    naive = -sum(float((r[b] * torch.log_softmax(z[b], 0)).sum()) for b in range(5)) / 5
    assert float(soft_cross_entropy(z, r)) == pytest.approx(naive, rel=1e-12)
    # KD to a distribution p = softmax(t / T) equals Hinton KD from the logits t
    t = torch.randn(5, 6, generator=g, dtype=D64)
    p = torch.softmax(t / 3.0, 1)
    assert float(kd_to_distribution(z, p, 3.0)) == pytest.approx(float(kd_loss(z, t, 3.0)), rel=1e-10)
    # exact zeros in the target contribute nothing (0 log 0 = 0), and the value stays finite
    p0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=D64)
    z0 = torch.tensor([[2.0, 0.0, -1.0]], dtype=D64)
    expect = 4.0 * -math.log(math.exp(1.0) / (math.exp(1.0) + 1 + math.exp(-0.5)))
    assert float(kd_to_distribution(z0, p0, 2.0)) == pytest.approx(expect, rel=1e-12)
    with pytest.raises(LossInputError, match="ce.py: soft target shape"):
        soft_cross_entropy(z, r[:, :3])


# ---------------------------------------------------------------- cascade schedule


def test_cascade_schedule_full_shortened_and_off():
    P = 4
    # tiny: 12 epochs, 1 epoch per phase -> phases 1..4, then 8 whole-student epochs (5 = whole)
    assert [cascade_phase(e, 12, P, 1) for e in range(12)] == [1, 2, 3, 4] + [5] * 8
    assert [cascade_phase(e, 12, P, 2) for e in range(12)] == [1, 1, 2, 2, 3, 3, 4, 4] + [5] * 4
    # exactly P * phase_epochs + 1 epochs: nothing shortened
    assert [cascade_phase(e, 9, P, 2) for e in range(9)] == [1, 1, 2, 2, 3, 3, 4, 4, 5]
    # shorter runs: the cascade gets epochs - 1 epochs, evenly, always ending at phase P
    assert [cascade_phase(e, 8, P, 2) for e in range(8)] == [1, 2, 2, 3, 3, 4, 4, 5]
    assert [cascade_phase(e, 5, P, 1) for e in range(5)] == [1, 2, 3, 4, 5]
    assert [cascade_phase(e, 4, P, 1) for e in range(4)] == [2, 3, 4, 5]
    assert [cascade_phase(e, 3, P, 1) for e in range(3)] == [2, 4, 5]
    assert [cascade_phase(e, 2, P, 1) for e in range(2)] == [4, 5]      # smoke
    assert [cascade_phase(e, 1, P, 1) for e in range(1)] == [5]         # one epoch: whole student only
    assert [cascade_phase(e, 6, P, 0) for e in range(6)] == [5] * 6     # cascade off
    for epochs in range(1, 30):
        for pe in range(0, 4):
            phases = [cascade_phase(e, epochs, P, pe) for e in range(epochs)]
            assert phases[-1] == P + 1                                   # >= 1 whole-student epoch
            assert phases == sorted(phases)                              # never goes back
            cascade = [p for p in phases if p <= P]
            if cascade:
                assert cascade[-1] == P                                  # the cascade ends with all substages
            if len(cascade) >= P:
                assert set(cascade) == set(range(1, P + 1))              # no phase skipped when there is room


# ---------------------------------------------------------------- the method


def _ctx_batch(multilabel=False):
    g = torch.Generator().manual_seed(0)
    k, c, b = 4, 4, 3
    ctx = MethodContext(num_classes=c, teacher_names=[f"t{i}" for i in range(k)], teacher_channels=[16, 16, 16, 8],
                        student_channels=32, multilabel=multilabel, student_stage_channels=(8, 24, 48, 32))
    tb = TeacherBatch(logits=torch.randn(b, k, c, generator=g) * 3,
                      conv4=[torch.randn(b, ch, 3, 3, generator=g).relu() for ch in ctx.teacher_channels],
                      target=torch.tensor([0, 2, 3]))
    return ctx, tb, torch.randn(b, 3, 32, 32, generator=g)


def _grads_after_one_step(method, student, x, tb):
    student.zero_grad(set_to_none=True)
    method.zero_grad(set_to_none=True)
    _, terms = method(student, x, tb)
    sum(terms.values()).backward()
    return terms


@pytest.mark.parametrize("point", ["relu", "pool"])
def test_each_phase_trains_only_its_substages(point):
    ctx, tb, x = _ctx_batch()
    torch.manual_seed(0)
    student = build_model("alexnet", 4, "smoke")
    method = build_method("staged-kd", ctx, MethodSettings(staged_stage_point=point))
    conv_keys = ["features.0", "features.3", "features.6", "features.8"]   # smoke student has no batch norm
    later = ["features.10", "classifier.1", "classifier.4", "classifier.6"]
    params = dict(student.named_parameters())
    for epoch in range(6):
        method.set_epoch(epoch, 6)            # 6 epochs: phases 1, 2, 3, 4, whole, whole
        terms = _grads_after_one_step(method, student, x, tb)
        phase = min(epoch + 1, 5)
        assert method.phase == phase
        if phase <= 4:
            assert list(terms) == [f"stage{j}/kl" for j in range(1, phase + 1)]
            assert method.stats() == {"staged/phase": float(phase)}
        else:
            assert list(terms) == ["ce", "kd", "stage1/kl", "stage2/kl", "stage3/kl", "stage4/kl"]
            assert set(method.stats()) == {"staged/phase", "staged/replaced"}
        trained = conv_keys[:phase] if phase <= 4 else conv_keys + later
        for key in conv_keys + later:
            grad = params[f"{key}.weight"].grad
            if key in trained:
                assert grad is not None and grad.abs().sum() > 0, (epoch, key)
            else:
                assert grad is None, (epoch, key)   # later blocks and the classifier get nothing
        for j, adapters in enumerate(method.substages.adapters):
            for adapter in adapters:
                assert (adapter.weight.grad is not None) == (j < min(phase, 4)), (epoch, j)


def test_whole_student_terms_are_weighted_by_lambda_and_beta():
    ctx, tb, x = _ctx_batch()
    torch.manual_seed(0)
    student = build_model("alexnet", 4, "smoke").eval()
    torch.manual_seed(1)
    a = build_method("staged-kd", ctx, MethodSettings())
    torch.manual_seed(1)
    b = build_method("staged-kd", ctx, MethodSettings(lam=0.25, beta=0.5))
    with torch.no_grad():
        _, ta = a(student, x, tb)
        _, tb_ = b(student, x, tb)
    assert float(tb_["ce"]) == pytest.approx(float(ta["ce"]) / 0.4 * 0.75, rel=1e-6)
    assert float(tb_["kd"]) == pytest.approx(float(ta["kd"]) / 0.6 * 0.25, rel=1e-6)
    for j in range(1, 5):
        assert float(tb_[f"stage{j}/kl"]) == pytest.approx(0.5 * float(ta[f"stage{j}/kl"]), rel=1e-6)
    # in the cascade the substage losses are unweighted (they are the whole objective)
    b.set_epoch(3, 12)
    with torch.no_grad():
        _, tc = b(student, x, tb)
    assert float(tc["stage4/kl"]) == pytest.approx(float(ta["stage4/kl"]), rel=1e-6)


def test_build_errors_are_one_line():
    ctx, _, _ = _ctx_batch(multilabel=True)
    with pytest.raises(MethodError, match="staged-kd: the pseudo-label refinement is single-label only"):
        build_method("staged-kd", ctx, MethodSettings())
    ctx, _, _ = _ctx_batch()
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match="config key 'staged_stage_point': 'conv5' is not one of relu, pool"):
        MethodSettings(staged_stage_point="conv5")
    with pytest.raises(MethodError, match="student_stage_channels"):
        build_method("staged-kd", MethodContext(4, ["a"], [16], 32), MethodSettings())
