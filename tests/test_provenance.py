"""run.json records what decides the numerics; tables name the machines behind their runs."""

import json

import torch

from harness.provenance import numerics, run_record
from harness.tables.render import run_machines


def test_run_record_names_the_kernels_threads_and_determinism_switches():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rec = run_record({"a": 1})["environment"]["numerics"]
        assert rec["torch_threads"] == 1 and "1 threads" in rec["summary"]
    finally:
        torch.set_num_threads(old)
    for key in ("cpu_model", "cpu_simd_flags", "aten_cpu_capability", "blas", "onednn", "onednn_enabled",
                "torch_interop_threads", "env", "deterministic_algorithms", "cudnn_deterministic"):
        assert key in rec
    assert rec["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()
    assert numerics()["torch_threads"] == old


def test_tables_list_the_machines_recorded_by_their_runs(tmp_path):
    a, b, old = tmp_path / "a", tmp_path / "b", tmp_path / "old"
    for path, summary in ((a, "CPU X, AVX2 kernels"), (b, "CPU X, AVX2 kernels")):
        path.mkdir()
        (path / "run.json").write_text(json.dumps({"environment": {"numerics": {"summary": summary}}}))
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"environment": {}}))
    assert run_machines([a, b]) == ["CPU X, AVX2 kernels"]
    assert run_machines([a, old, tmp_path / "missing"]) == ["CPU X, AVX2 kernels", "not recorded"]
    pre = tmp_path / "pretrain"
    pre.mkdir()
    (pre / "run.json").write_text(json.dumps({"environment": {"numerics": {"summary": "CPU Y"}}}))
    assert run_machines([pre, a]) == ["CPU Y", "CPU X, AVX2 kernels"]
