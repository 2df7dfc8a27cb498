"""The objective learns what it says: the optimiser holds every graph parameter, the graphs'
edges move toward the teacher that is right, the regularisers act on the live edges, and
lambda / beta weight the terms as Eq. 2 writes them (checked against hand computations)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import ConfigError
from harness.distill.graphs import LogitsGraph, MMGDGraph, RepresentationGraph
from harness.distill.losses.em import class_ground_cost
from harness.distill.methods import METHODS, MethodContext, MethodSettings, TeacherBatch, build_method
from harness.distill.runner import _resolve_config, _Trainable, optimiser_parameters, run_settings
from harness.models import build_model

K, C, B = 4, 10, 64


def _one_right_teacher(seed=0):
    """Teacher 0 predicts the labels; teachers 1-3 are noise. Returns (labels, teacher logits
    (B, K, C), student logits that also predict the labels, a class ground cost)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (B,), generator=g)
    right = 5.0 * F.one_hot(y, C).float() + 0.3 * torch.randn(B, C, generator=g)
    noise = [5.0 * torch.randn(B, C, generator=g) for _ in range(K - 1)]
    teachers = torch.stack([right, *noise], 1)
    student = 5.0 * F.one_hot(y, C).float() + 0.3 * torch.randn(B, C, generator=g)
    cost = class_ground_cost(3.0 * torch.eye(C) + torch.randn(C, C, generator=g))
    return y, teachers, student, cost


def _ctx(student_channels=32, channels=16):
    return MethodContext(num_classes=C, teacher_names=[f"t{i}" for i in range(K)], teacher_channels=[channels] * K,
                         student_channels=student_channels, ground_cost=class_ground_cost(torch.randn(C, C)))


# ------------------------------------------------------------------ the optimiser


@pytest.mark.parametrize("name", [m for m in METHODS if m != "fusion"])
def test_optimiser_holds_every_parameter_of_the_method(name):
    torch.manual_seed(0)
    student = build_model("alexnet", C, "smoke")
    ctx = _ctx(student_channels=student.conv4_shape()[0])
    ctx.student_stage_channels = tuple(student.stage_channels)
    method = build_method(name, ctx, MethodSettings(gr_d=32))
    held = {id(p) for p in optimiser_parameters(_Trainable(student, method))}
    assert all(id(p) in held for p in method.parameters() if p.requires_grad)
    if method.trains_student:
        assert all(id(p) in held for p in student.parameters())
    names = {n for n, p in method.named_parameters() if p.requires_grad}
    expected = {"gl": "parts.gl.graph.A", "gr": "parts.gr.graph.g_r", "mmgd": "parts.mmgd.graph.W_edge.weight"}
    for part, param in expected.items():
        assert (param in names) == (part in name.split("+")), (name, param)


def test_smoke_runs_move_the_graphs(smoke_store, tmp_path):
    """One smoke epoch through the runner moves G_l's edges and G_r's vertex weights off their
    uniform start (they stay exactly uniform when the optimiser leaves them out)."""
    from harness.distill.runner import distill

    run = distill("gl+gr", "smoke", 0, smoke_store, overrides={"epochs": "1"}, runs_root=tmp_path, progress=False)
    art = run.final()["artifacts"]
    adj = np.array(art["gl_adjacency"])
    assert np.abs(adj - 0.25).max() > 1e-5
    w = np.array(art["gr_vertex_weights"])
    assert np.abs(w - 1 / 6).max() > 1e-6
    assert art["gr_weight_entropy"] < math.log(6) and art["gr_weight_max"] > 1 / 6
    assert art["gr_weight_entropy_uniform"] == pytest.approx(math.log(6))


# ------------------------------------------------------------------ edges learn the right teacher


@pytest.mark.parametrize("reading", ["adjusted", "literal"])
@pytest.mark.parametrize("em", ["exact", "sinkhorn"])
def test_logits_graph_edges_move_toward_the_right_teacher(reading, em):
    _, teachers, student, cost = _one_right_teacher()
    graph = LogitsGraph(K, temperatures=2.0, reading=reading, em=em, gd_reg=0.1, em_iters=100)
    opt = torch.optim.Adam(graph.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        out = graph(teachers, student, cost)
        loss = out["logit"] + out["graph_reg"]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    e = graph.edges().detach()
    assert float(graph(teachers, student, cost)["logit"].detach()) < first
    if reading == "adjusted":
        assert (e[:, 0] > 0.4).all(), e               # every vertex now listens mostly to teacher 0
    else:
        weight = e.sum(0)                             # literal: the column sums weight each teacher
        assert weight[0] == weight.max() and weight[0] > 1.3, e


def test_mmgd_edges_move_toward_the_right_teacher():
    torch.manual_seed(0)
    _, teachers, student, _ = _one_right_teacher()
    g = torch.Generator().manual_seed(1)
    reprs = [torch.randn(B, 16, generator=g) for _ in range(K)]
    s_repr = reprs[0] + 0.1 * torch.randn(B, 16, generator=g)    # the student also matches teacher 0's features
    graph = MMGDGraph(K, C, [16] * K, 16, gd_reg=0.1)
    before = graph.edges(teachers, student, reprs, s_repr).detach().mean(0)
    opt = torch.optim.Adam(graph.parameters(), lr=0.05)
    for _ in range(40):
        out = graph(teachers, student, reprs, s_repr)
        loss = out["logit"] + out["repr"] + out["graph_reg"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = graph.edges(teachers, student, reprs, s_repr).detach().mean(0)
    assert after[0] > before[0] + 0.1 and after[0] == after.max(), (before, after)


# ------------------------------------------------------------------ regularisers on live edges


def _numpy_gl_reg(a: np.ndarray, gd_reg: float) -> float:
    e = np.exp(a - a.max(1, keepdims=True))
    e /= e.sum(1, keepdims=True)
    return gd_reg * float(((e - 1.0 / a.shape[0]) ** 2).sum())


def test_logits_graph_regulariser_gradient_matches_a_hand_derivative():
    graph = LogitsGraph(K, gd_reg=3.0).double()
    with torch.no_grad():
        graph.A.copy_(torch.randn(K, K, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    _, teachers, student, cost = _one_right_teacher()
    reg = graph(teachers.double(), student.double(), cost.double())["graph_reg"]
    (grad,) = torch.autograd.grad(reg, graph.A)
    a = graph.A.detach().numpy().copy()
    fd = np.zeros_like(a)
    for i in range(K):
        for j in range(K):
            up, down = a.copy(), a.copy()
            up[i, j] += 1e-6
            down[i, j] -= 1e-6
            fd[i, j] = (_numpy_gl_reg(up, 3.0) - _numpy_gl_reg(down, 3.0)) / 2e-6
    assert float(reg.detach()) == pytest.approx(_numpy_gl_reg(a, 3.0), rel=1e-10)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-5, atol=1e-8)
    assert np.abs(fd).max() > 1e-2


def _fd_against_autograd(module, params, loss_fn):
    """Central differences of ``loss_fn()`` (forward only) vs its autograd gradient."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads):
        flat = p.detach().view(-1)
        fd = torch.zeros_like(flat)
        for i in range(0, flat.numel(), max(1, flat.numel() // 12)):
            old = float(flat[i])
            with torch.no_grad():
                p.view(-1)[i] = old + 1e-6
                up = float(loss_fn())
                p.view(-1)[i] = old - 1e-6
                down = float(loss_fn())
                p.view(-1)[i] = old
            fd[i] = (up - down) / 2e-6
            assert float(g.view(-1)[i]) == pytest.approx(float(fd[i]), rel=1e-4, abs=1e-7)
        assert fd.abs().max() > 1e-6


def test_mmgd_regulariser_acts_on_the_live_edges():
    torch.manual_seed(0)
    _, teachers, student, _ = _one_right_teacher()
    reprs = [torch.randn(B, 16, dtype=torch.float64) for _ in range(K)]
    graph = MMGDGraph(K, C, [16] * K, 16, gd_reg=5.0).double()
    t, s = teachers.double(), student.double()
    _fd_against_autograd(graph, [graph.W_edge.weight, graph.W_logit.weight],
                         lambda: graph(t, s, reprs, reprs[0])["graph_reg"])


def test_representation_graph_regulariser_acts_on_the_live_weights():
    graph = RepresentationGraph([8] * K, 8, d=16, gd_reg=5.0).double()
    with torch.no_grad():
        graph.g_r.copy_(torch.randn(6, dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    maps = [torch.rand(2, 8, 3, 3, generator=g, dtype=torch.float64) for _ in range(K)]
    s_map = torch.rand(2, 8, 3, 3, generator=g, dtype=torch.float64)
    reg = graph(maps, s_map)["graph_reg"]
    w = torch.softmax(graph.g_r.detach(), 0).numpy()
    assert float(reg.detach()) == pytest.approx(5.0 * float(((w - 1 / 6) ** 2).sum()), rel=1e-10)
    _fd_against_autograd(graph, [graph.g_r], lambda: graph(maps, s_map)["graph_reg"])


# ------------------------------------------------------------------ Eq. 2 by hand


def test_lambda_and_beta_weight_the_terms_as_eq2():
    """L = (1 - lambda) CE + lambda L_logit + beta L_r + graph regularisers (weight 1), with
    lambda = 0.3, beta = 0.7 and non-zero regularisers, against the parts called directly."""
    torch.manual_seed(0)
    student = build_model("alexnet", C, "smoke").eval()
    ctx = _ctx(student_channels=student.conv4_shape()[0])
    s = MethodSettings(gr_d=32, lam=0.3, beta=0.7, gl_gd_reg=2.0, gr_gd_reg=3.0)
    method = build_method("gl+gr", ctx, s)
    with torch.no_grad():
        method.parts["gl"].graph.A.copy_(torch.randn(K, K))
        method.parts["gr"].graph.g_r.copy_(torch.randn(6))
    g = torch.Generator().manual_seed(4)
    h, w = student.conv4_shape()[1:]
    tb = TeacherBatch(torch.randn(8, K, C, generator=g), [torch.rand(8, 16, h, w, generator=g) for _ in range(K)],
                      torch.randint(0, C, (8,), generator=g))
    x = torch.randn(8, 3, 32, 32, generator=g)
    _, terms = method(student, x, tb)
    terms = {k: v.detach() for k, v in terms.items()}
    with torch.no_grad():
        out = student.forward_features(x)
        gl = method.parts["gl"].graph(tb.logits, out.logits, method.parts["gl"].cost)
        gr = method.parts["gr"].graph(tb.conv4, out.conv4)
    ce = F.cross_entropy(out.logits, tb.target)
    e = method.parts["gl"].graph.edges().detach().numpy()
    vw = torch.softmax(method.parts["gr"].graph.g_r.detach(), 0).numpy()
    gl_reg = 2.0 * float(((e - 0.25) ** 2).sum())
    gr_reg = 3.0 * float(((vw - 1 / 6) ** 2).sum())
    assert gl_reg > 1e-3 and gr_reg > 1e-3
    hand = 0.7 * float(ce) + 0.3 * float(gl["logit"]) + 0.7 * float(gr["repr"]) + gl_reg + gr_reg
    assert float(sum(terms.values())) == pytest.approx(hand, rel=1e-5)
    assert float(terms["gl/graph_reg"]) == pytest.approx(gl_reg, rel=1e-5)
    assert float(terms["gr/graph_reg"]) == pytest.approx(gr_reg, rel=1e-5)
    assert float(terms["gr/repr"]) == pytest.approx(0.7 * float(gr["repr"]), rel=1e-5)


# ------------------------------------------------------------------ switches and fingerprints


EVERY_READING = {
    "gr_l2_over": "map", "gr_weight_temperatures": "0.5", "gr_student_temperature": "2", "mmd_sigma": "0.5",
    "mmd_multipliers": "0.5,1,2", "gr_gd_reg": "1", "gr_sqrt_eps": "1e-6", "gr_learn_weights": "false",
    "em_floor": "1e-8", "mmgd_w_logit": "5", "mmgd_edge_temperature": "4", "mmgd_embed_dim": "16",
    "em_eps": "0.01", "em_tol": "1e-3", "em_iters": "50", "em_eps_start": "0.5", "em_round": "false",
    "gl_em": "sinkhorn", "feat_student_temperature": "2",
}


def test_every_reading_is_reachable_by_set_and_reaches_the_graphs():
    cfg = _resolve_config("smoke", EVERY_READING)
    m = cfg.method
    assert m.gr_weight_temperatures == (0.5,) and m.mmd_multipliers == (0.5, 1, 2) and m.gr_learn_weights is False
    torch.manual_seed(0)
    student = build_model("alexnet", C, "smoke")
    ctx = _ctx(student_channels=student.conv4_shape()[0])
    gr = build_method("gr", ctx, m).parts["gr"].graph
    assert (gr.l2_over, gr.student_temperature, gr.mmd_sigma, gr.mmd_multipliers, gr.gd_reg, gr.sqrt_eps) == \
        ("map", 2.0, 0.5, (0.5, 1.0, 2.0), 1.0, 1e-6)
    assert torch.allclose(gr.weight_temperatures, torch.full((6,), 0.5)) and not isinstance(gr.g_r, torch.nn.Parameter)
    mmgd = build_method("mmgd", ctx, m).parts["mmgd"].graph
    assert (mmgd.w_logit, mmgd.edge_temperature, mmgd.W_logit.out_features) == (5.0, 4.0, 16)
    gl = build_method("gl", ctx, m).parts["gl"].graph
    assert gl.em == "sinkhorn" and gl.sinkhorn_options() == {
        "eps": 0.01, "iters": 50, "floor": 1e-8, "grad": "potentials", "tol": 1e-3, "eps_start": 0.5,
        "round_plan": False}
    feat = build_method("feat", ctx, m).parts["feat"].loss
    assert feat.student_temperature == 2.0 and feat.mmd_sigma == 0.5


@pytest.mark.parametrize("key, value", [("em_eps", "0"), ("gl_reading", "bogus"), ("gr_temperatures", "0"),
                                        ("lam", "nan"), ("mmgd_edge_temperature", "-1"), ("em_iters", "0"),
                                        ("mmd_multipliers", "[]"), ("kd_temperature", "inf"), ("mmd_multipliers", "a,b"),
                                        ("gl_gd_reg", "x")])
def test_a_bad_value_names_its_key(key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        _resolve_config("smoke", {key: value})


def test_a_knob_of_one_method_leaves_the_others_fingerprints_alone():
    base = _resolve_config("tiny", {})
    for key, value in [("staged_tau", "0.5"), ("gr_gd_reg", "1"), ("mmgd_w_logit", "3"), ("em_eps", "0.02")]:
        changed = _resolve_config("tiny", {key: value})
        for name, spec in METHODS.items():
            same = run_settings(name, base) == run_settings(name, changed)
            assert same == (key not in spec.reads), (key, name)
    assert run_settings("fusion", base)["method"] == {}
    assert "staged_tau" in run_settings("staged-kd", base)["method"]
    assert "em_eps" in run_settings("gl+gr", base)["method"] and "em_eps" not in run_settings("kd", base)["method"]


def test_config_show_prints_every_switch_the_docs_name_for_a_method():
    import dataclasses
    import re
    from pathlib import Path

    from click.testing import CliRunner

    from harness.cli import main
    from harness.distill.runner import DistillConfig

    out = CliRunner().invoke(main, ["config", "show", "--preset", "tiny", "--method", "gl+gr", "--set", "em_eps=0.02"])
    assert out.exit_code == 0, out.output
    shown = dict(re.findall(r"^\| \w+ \| `(\w+)` \| ([^|]+) \|", out.output, re.M))
    docs = Path(__file__).resolve().parents[1] / "docs" / "DISTILL.md"
    named = set(re.findall(r"^\| `(\w+)`", docs.read_text(), re.M))
    reads = set(METHODS["gl+gr"].reads)
    assert reads <= named                                        # every key gl+gr reads is documented
    assert reads <= set(shown) and {f.name for f in dataclasses.fields(DistillConfig)} - {"method"} <= set(shown)
    assert not (set(shown) & (named - reads - set(shown)))       # other methods' keys are left out
    assert "staged_tau" not in shown and shown["em_eps"].strip() == "0.02 (set)"
    assert all(line.rstrip().endswith("|") and not line.rstrip().endswith("|  |")
               for line in out.output.splitlines() if line.startswith("| method"))   # each has a doc
