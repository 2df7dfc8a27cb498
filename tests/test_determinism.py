"""The deterministic mode: identical weights under other thread counts and kernel levels, its
switches recorded, and the keys of runs made without it unchanged."""

import os
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


def _harness(runs: Path, config: dict, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _STEERING}
    env.update(config, HARNESS_RUNS=str(runs))
    done = subprocess.run([sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True,
                          timeout=600)
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


def _distill(runs: Path, config: dict, store: Path, *mode: str) -> dict:
    _harness(runs, config, *mode, "distill", "--method", "gl+gr", "--preset", "smoke", "--store", str(store),
             *ONE_EPOCH)
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
        assert '"on": true' in record and '"aten_cpu_capability": "DEFAULT"' in record
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
    on = {**record, "deterministic_mode": {**record["deterministic_mode"], "on": True}}
    assert machine_summary(on).endswith(", deterministic mode")
