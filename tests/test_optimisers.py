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
