"""The deterministic mode: identical weights under other thread counts and kernel levels, its
switches recorded, and the keys of runs made without it unchanged."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness import determinism
from harness.cache.teachers import default_store_path
from harness.cli import main
from harness.provenance import fingerprint
from harness.runs import RunDir

# two settings that change a run's numbers without the mode (docs/REPRODUCIBILITY.md): the
# thread count, ATen's kernel level, oneDNN's and MKL's instruction sets
CONFIGS = {"two threads": {"OMP_NUM_THREADS": "2"},
           "one thread, AVX2 kernels": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2",
                                        "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
ONE_EPOCH = ("--set", "epochs=1")   # enough for the settings to move the weights; the test stays cheap
_STEERING = {determinism.ENV, "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
             "MKL_ENABLE_INSTRUCTIONS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"}


def _env(config: dict) -> dict:
    """This process's environment without the variables that steer kernels, with ``config``."""
    env = {k: v for k, v in os.environ.items() if k not in _STEERING}
    env.update(config)
    return env


def _harness(runs: Path, config: dict, *args: str, prefix: tuple = ()) -> None:
    """``harness ARGS`` in a fresh process (behind ``prefix``, e.g. an emulator)."""
    done = subprocess.run([*prefix, sys.executable, "-m", "harness", *args],
                          env=_env({**config, "HARNESS_RUNS": str(runs)}), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _weights(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state.get("model", state))
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def _identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _only(pattern: str, root: Path) -> Path:
    (found,) = root.glob(pattern)
    return found


def _distill(runs: Path, config: dict, store: Path, *mode: str, prefix: tuple = ()) -> dict:
    _harness(runs, config, *mode, "distill", "--method", "gl+gr", "--preset", "smoke", "--store", str(store),
             *ONE_EPOCH, prefix=prefix)
    return _weights(_only("distill/smoke/*/student.pt", runs))


def test_deterministic_mode_gives_identical_weights_across_threads_and_kernel_levels(tmp_path, smoke_data,
                                                                                    smoke_store):
    weights = {}
    for i, (name, config) in enumerate(CONFIGS.items()):
        runs = tmp_path / f"det{i}"
        # the first configuration asks for the mode with the flag, the second with the variable
        mode, config = (("--deterministic",), config) if i == 0 else ((), {**config, determinism.ENV: "1"})
        _harness(runs, config, *mode, "finetune", "--arch", "alexnet", "--init", "random",
                 "--preset", "smoke", "--data-root", str(smoke_data), "--quiet", *ONE_EPOCH)
        finetuned = _weights(_only("finetune/smoke/*/checkpoint.pt", runs))
        weights[name] = finetuned, _distill(runs, config, smoke_store, *mode)
        record = (_only("distill/smoke/*/run.json", runs)).read_text()
        assert '"on": true' in record and '"aten_cpu_capability": "DEFAULT"' in record and '"sqrt": "ieee"' in record
    (ft_a, st_a), (ft_b, st_b) = weights.values()
    assert _identical(ft_a, ft_b), "fine-tuned weights differ between configurations under the mode"
    assert _identical(st_a, st_b), "distilled weights differ between configurations under the mode"
    # not vacuous: without the mode the same two configurations give other weights
    plain = [_distill(tmp_path / f"plain{i}", config, smoke_store) for i, config in enumerate(CONFIGS.values())]
    assert not _identical(*plain)


def test_the_mode_is_part_of_a_run_key_only_when_on(monkeypatch):
    config = {"kind": "distill", "method": "gl+gr", "seed": 0}
    monkeypatch.delenv(determinism.ENV, raising=False)
    off = RunDir.for_config("distill", "smoke", "gl+gr", config, Path("r"))
    assert off.path.name == f"gl_gr-{fingerprint(config)[:10]}"   # the key of runs made before the mode
    monkeypatch.setenv(determinism.ENV, "1")
    on = RunDir.for_config("distill", "smoke", "gl+gr", config, Path("r"))
    assert on.path != off.path
    assert default_store_path("smoke", "zarr") == Path("cache/smoke-deterministic.zarr")
    monkeypatch.setenv(determinism.ENV, "0")
    assert RunDir.for_config("distill", "smoke", "gl+gr", config, Path("r")).path == off.path
    assert default_store_path("smoke", "zarr") == Path("cache/smoke.zarr")


def test_a_bad_mode_value_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(determinism.ENV, "maybe")
    result = CliRunner().invoke(main, ["config", "show", "--preset", "smoke"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: environment variable {determinism.ENV}='maybe': "
                                                  f"expected 1 (on) or 0 (off)"]


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT", reason="torch already on portable kernels")
def test_the_mode_refuses_a_torch_loaded_with_other_kernels(monkeypatch):
    for key in determinism.IMPORT_ENV:   # restored after the test: apply() writes them
        monkeypatch.setenv(key, os.environ.get(key, ""))
    monkeypatch.setenv(determinism.ENV, "1")
    threads = torch.get_num_threads()
    with pytest.raises(determinism.DeterminismError, match="ATEN_CPU_CAPABILITY=default must be in the environment"):
        determinism.apply()
    assert torch.get_num_threads() == threads and torch.backends.mkldnn.enabled


def test_run_json_records_the_mode_and_footers_name_it_only_when_on(monkeypatch):
    from harness.provenance import machine_summary, numerics

    monkeypatch.delenv(determinism.ENV, raising=False)
    record = numerics()
    assert record["deterministic_mode"]["on"] is False and "deterministic" not in record["summary"]
    assert record["deterministic_mode"]["threads"] == torch.get_num_threads()
    assert record["deterministic_mode"]["sqrt"] == "torch"
    on = {**record, "deterministic_mode": {**record["deterministic_mode"], "on": True}}
    assert machine_summary(on).endswith(", deterministic mode")


def _correctly_rounded(x: float, y: float) -> bool:
    """Whether ``y`` is sqrt(x) rounded to the nearest float64 (exact rational arithmetic): x lies
    between the squares of the midpoints to y's neighbours."""
    import math
    from fractions import Fraction

    lo = (Fraction(y) + Fraction(math.nextafter(y, 0.0))) / 2
    hi = (Fraction(y) + Fraction(math.nextafter(y, math.inf))) / 2
    return lo * lo <= Fraction(x) <= hi * hi


def test_ieee_sqrt_is_correctly_rounded_for_every_float32_mantissa_and_for_float64():
    import numpy as np

    # every float32 in [1, 4): both exponent parities, so every mantissa a square root can see
    # (sqrt(4^k x) = 2^k sqrt(x) exactly); the oracle is float64's sqrt rounded once more, which is
    # exact for float32 square roots (53 >= 2 * 24 + 2 bits)
    bits = np.arange(np.float32(1).view(np.uint32), np.float32(4).view(np.uint32), dtype=np.uint32)
    x = torch.from_numpy(bits.view(np.float32))
    oracle = torch.from_numpy(np.sqrt(x.numpy().astype(np.float64)).astype(np.float32))
    got = determinism.ieee_sqrt(x)
    assert got.dtype == torch.float32 and torch.equal(got, oracle)
    # float64: checked against the exact rational bounds, over 40 decades
    g = torch.Generator().manual_seed(0)
    xs = torch.exp(torch.empty(2000, dtype=torch.float64).uniform_(-46, 46, generator=g))
    ys = determinism.ieee_sqrt(xs)
    assert all(_correctly_rounded(a, b) for a, b in zip(xs.tolist(), ys.tolist()))
    # special values as IEEE (and torch) have them; shape kept, 0-d included
    special = torch.tensor([0.0, -0.0, float("inf"), float("nan"), -1.0])
    got = determinism.ieee_sqrt(special)
    assert got[:3].tolist() == [0.0, 0.0, float("inf")] and torch.signbit(got[1]) and got[3:].isnan().all()
    assert determinism.ieee_sqrt(torch.tensor(2.25)).shape == () and float(determinism.ieee_sqrt(torch.tensor(2.25))) == 1.5
    assert torch.equal(determinism.ieee_sqrt(x[:12].view(3, 4).t()), oracle[:12].view(3, 4).t())   # strided input


def test_ieee_sqrt_has_torchs_gradient():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(5, 7, dtype=torch.float64, generator=g) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(determinism.ieee_sqrt, (x,))
    w = torch.randn(5, 7, dtype=torch.float64, generator=g)
    (grad,) = torch.autograd.grad((determinism.ieee_sqrt(x) * w).sum(), x)
    assert torch.equal(grad, w / (2 * determinism.ieee_sqrt(x.detach())))   # SqrtBackward's formula


_MODE_SQRT = """
import harness, torch, numpy as np
from harness import determinism
determinism.apply()
x = torch.rand(1000) + 0.5
oracle = torch.from_numpy(np.sqrt(x.numpy()))
print(torch.equal(torch.sqrt(x), oracle), torch.equal(x.sqrt(), oracle), torch.equal(x.clone().sqrt_(), oracle),
      torch.equal(torch.sqrt(x, out=torch.empty(1000)), oracle), torch.equal(torch.sqrt(x.half()).float(),
      torch.sqrt(x.half().float()).half().float()))
print(all(getattr(f, "__module__", "") == "harness.determinism" for f in (torch.sqrt, torch.Tensor.sqrt, torch.Tensor.sqrt_,
                                                                       torch._foreach_sqrt, torch._foreach_sqrt_)))
p = torch.nn.Parameter(torch.ones(3)); opt = torch.optim.Adam([p], lr=0.1)
calls = []; inner = torch.Tensor.sqrt
torch.Tensor.sqrt = lambda self: calls.append(1) or inner(self)
p.sum().backward(); opt.step(); print(bool(calls))
torch.Tensor.sqrt = inner
y = [x.clone(), x[:10].double()]; torch._foreach_sqrt_(y)
print(all(torch.equal(a, torch.from_numpy(np.sqrt(b.numpy()))) for a, b in zip([*torch._foreach_sqrt([x, x[:10].double()]), *y],
                                                                               [x, x[:10].double()] * 2)))
# the harness's Adam (the foreach path) gives in the mode the weights of the per-tensor loop in the mode
from harness.utils import adam
def trained(make):
    g = torch.Generator().manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(500, generator=g)), torch.nn.Parameter(torch.randn(20, 7, generator=g))]
    opt = make(ps)
    for _ in range(5):
        opt.zero_grad(); sum((q.sin() * q).sum() for q in ps).backward(); opt.step()
    return torch.cat([q.detach().flatten() for q in ps])
print(torch.equal(trained(lambda ps: adam(ps, lr=0.1, weight_decay=1e-3)),
                  trained(lambda ps: torch.optim.Adam(ps, lr=0.1, weight_decay=1e-3, foreach=False))))
"""


@pytest.mark.parametrize("mode", ["1", "0"])
def test_the_mode_routes_torch_sqrt_and_adam_through_ieee_sqrt_and_only_the_mode(mode):
    done = subprocess.run([sys.executable, "-c", _MODE_SQRT], env=_env({determinism.ENV: mode}), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    values, replaced, adam, foreach, foreach_adam = done.stdout.split("\n")[:5]
    assert adam == "True"   # Adam's second moment goes through Tensor.sqrt, the one the mode replaces
    assert foreach_adam == "True"   # and harness.utils.adam's (torch._foreach_sqrt) gives the same weights
    if mode == "1":
        assert values == "True True True True True" and replaced == "True" and foreach == "True"
    else:
        assert replaced == "False"   # without the mode, torch's own sqrt


QEMU = shutil.which("qemu-x86_64")
# an emulated CPU of another vendor and instruction set than any x86-64 machine this runs on is
# likely to be (Intel Haswell: AVX2 and FMA, no AVX512), through QEMU's user-mode emulator
EMULATED_CPU = "Haswell-v4"


@pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                    reason="needs qemu-x86_64 (Debian: qemu-user) on an x86-64 machine")
def test_deterministic_mode_gives_identical_weights_on_an_emulated_cpu_of_another_vendor(tmp_path, smoke_store):
    mode = {determinism.ENV: "1"}
    here = _distill(tmp_path / "here", mode, smoke_store)
    emulated = _distill(tmp_path / "emulated", mode, smoke_store, prefix=(QEMU, "-cpu", EMULATED_CPU))
    assert _identical(here, emulated), f"the mode's weights differ on an emulated {EMULATED_CPU}"
