"""The harness's optimisers (harness.utils.adam / sgd, torch's foreach path) against torch's
per-parameter loop, the oracle: the same weights to the bit, so switching paths moved no run."""

import pytest
import torch

from harness.models import build_model
from harness.utils import adam, sgd


def _trained(make_optimiser, steps: int = 6) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model("alexnet", 10, "smoke")
    opt = make_optimiser(model.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (4,), generator=g)
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_the_harness_optimisers_give_the_per_parameter_loops_weights_to_the_bit(kind):
    if kind == "adam":
        ours = _trained(lambda ps: adam(ps, lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-4))
        loop = _trained(lambda ps: torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-4, foreach=False))
    else:
        ours = _trained(lambda ps: sgd(ps, lr=1e-2, momentum=0.9, weight_decay=5e-4))
        loop = _trained(lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=5e-4, foreach=False))
    start = _trained(lambda ps: torch.optim.SGD(ps, lr=0.0), steps=0)
    assert not torch.equal(ours, start)   # the steps moved the weights
    assert torch.equal(ours, loop)


def test_the_harness_optimisers_take_the_foreach_path():
    p = [torch.nn.Parameter(torch.ones(3))]
    assert adam(p, lr=0.1).defaults["foreach"] is True and sgd(p, lr=0.1).defaults["foreach"] is True


def test_the_fused_kernel_is_adam_with_other_rounding():
    """``adam(..., "fused")``: torch's fused kernel, close to the loop's weights but not its bits
    (which is why only the paper preset, with no committed numbers, takes it)."""
    fused = _trained(lambda ps: adam(ps, "fused", lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-4))
    loop = _trained(lambda ps: torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-4, foreach=False))
    start = _trained(lambda ps: torch.optim.SGD(ps, lr=0.0), steps=0)
    assert (fused - start).abs().max() > 1e-3           # it trains: six steps of lr 1e-3 moved the weights
    assert torch.allclose(fused, loop, rtol=0, atol=1e-5)
    assert not torch.equal(fused, loop)
    p = [torch.nn.Parameter(torch.ones(3))]
    assert adam(p, "fused", lr=0.1).defaults["fused"] is True
    with pytest.raises(ValueError, match="'fast' is not one of foreach, fused"):
        adam(p, "fast", lr=0.1)


def test_the_deterministic_mode_keeps_the_foreach_kernel(monkeypatch):
    from harness import determinism

    monkeypatch.setattr(determinism, "requested", lambda: True)
    opt = adam([torch.nn.Parameter(torch.ones(3))], "fused", lr=0.1)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]


def test_the_runner_builds_the_kernel_its_config_names(smoke_store, tmp_path, monkeypatch):
    """The paper preset's distillation takes the fused kernel; the presets with committed
    numbers keep foreach and their run keys (the setting is keyless at its default)."""
    import harness.distill.runner as runner
    from harness.config import to_dict

    assert runner.DISTILL_PRESETS["paper"].optimizer_kernel == "fused"
    for preset in ("smoke", "tiny"):
        assert runner.DISTILL_PRESETS[preset].optimizer_kernel == "foreach"
        assert "optimizer_kernel" not in to_dict(runner.DISTILL_PRESETS[preset])
    built = []
    real = runner.adam
    monkeypatch.setattr(runner, "adam", lambda params, kernel, **kw: built.append(kernel) or real(params, kernel, **kw))
    a = runner.distill("kd", "smoke", 0, smoke_store, overrides={"epochs": "1"}, runs_root=tmp_path, progress=False)
    b = runner.distill("kd", "smoke", 0, smoke_store, overrides={"epochs": "1", "optimizer_kernel": "fused"},
                       runs_root=tmp_path, progress=False)
    assert built == ["foreach", "fused"] and a.path != b.path
    wa, wb = torch.load(a.path / "student.pt"), torch.load(b.path / "student.pt")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)   # the kernel reached the optimiser


def test_a_run_with_the_fused_kernel_resumes_to_the_uninterrupted_result(smoke_store, tmp_path):
    from harness.distill.runner import distill

    over = {"epochs": "2", "optimizer_kernel": "fused"}
    whole = distill("kd", "smoke", 0, smoke_store, overrides=over, runs_root=tmp_path / "a", progress=False)
    part = distill("kd", "smoke", 0, smoke_store, overrides=over, runs_root=tmp_path / "b", progress=False,
                   stop_after_epoch=1)
    assert not part.is_finished()
    saved = torch.load(part.state_path, weights_only=False)["optimizer"]["param_groups"][0]
    assert saved["fused"] is True and not saved["foreach"]   # the resume point is the fused kernel's
    resumed = distill("kd", "smoke", 0, smoke_store, overrides=over, runs_root=tmp_path / "b", progress=False)
    a, b = torch.load(whole.path / "student.pt"), torch.load(resumed.path / "student.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
