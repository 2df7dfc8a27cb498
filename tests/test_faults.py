"""Bad input and damage through the CLI, on smoke: exit code 2, one error line naming the key
or file, no traceback, nothing already written damaged. The matrix is summarised in
docs/RELIABILITY.md."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main


def _fails_cleanly(args, *needles, runner=None):
    out = (runner or CliRunner()).invoke(main, args)
    text = out.output
    assert out.exit_code == 2, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, text
    for needle in needles:
        assert needle in errors[0], text
    return errors[0]


# (extra args of `harness distill --method kd --preset smoke --store S`, what the line must name)
DISTILL_BAD = [
    (["--set", "lr=-1"], "'lr': must be > 0"),
    (["--set", "lr=nan"], "'lr': 'nan' is not a finite number"),
    (["--set", "lr=inf"], "'lr': 'inf' is not a finite number"),
    (["--set", "epochs=0"], "'epochs': must be >= 1"),
    (["--set", "epochs=-1"], "'epochs': must be >= 1"),
    (["--set", "batch_size=0"], "'batch_size': must be >= 1"),
    (["--set", "shuffle_buffer=0"], "'shuffle_buffer': must be >= 1"),
    (["--set", "device=tpu"], "'device': 'tpu' is not one of auto, cpu, cuda"),
    (["--set", "em_eps=0"], "'em_eps': must be > 0"),
    (["--set", "kd_temperature=0"], "'kd_temperature': must be > 0"),
    (["--set", "gl_reading=bogus"], "'gl_reading': 'bogus' is not one of"),
    (["--set", "lam=2"], "'lam': must lie in [0, 1]"),
    (["--set", "epochs=two"], "'epochs': cannot read 'two' as int"),
    (["--set", "nosuchkey=1"], "unknown config key 'nosuchkey'"),
    (["--set", "lr"], "KEY=VALUE"),
    (["--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("extra, needle", DISTILL_BAD, ids=[" ".join(a) for a, _ in DISTILL_BAD])
def test_distill_bad_settings_are_one_line(extra, needle, smoke_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    _fails_cleanly(["distill", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store), *extra], needle)
    assert not (tmp_path / "runs").exists()       # nothing started, not even an empty run folder


def test_cache_and_data_bad_arguments_fail_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--views", "0"], "--views")
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--format", "hdf5", "--store", "x.zarr"],
                   "x.zarr: the name says zarr but --format is hdf5")
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--set", "views=0"], "'views': must be >= 1")
    _fails_cleanly(["data", "synth", "--root", str(tmp_path / "d"), "--seed", "-1"], "--seed")
    _fails_cleanly(["table2", "--preset", "smoke", "--seeds", "0"], "--seeds")
    _fails_cleanly(["pretrain", "--task", "sort", "--preset", "smoke", "--set", "epochs=0"], "'epochs': must be >= 1")
    _fails_cleanly(["finetune", "--arch", "alexnet", "--init", "random", "--preset", "smoke", "--set", "lr=nan"],
                   "'lr': 'nan' is not a finite number")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists() and not (tmp_path / "x.zarr").exists()


def _damaged_copy(smoke_store, tmp_path, field, split):
    """A copy of the smoke store with one NaN in ``field`` of the first ``split`` item (a chunk
    whose checksum still matches: the NaN was written, not damaged afterwards)."""
    import zarr

    from harness.cache.store import FeatureStore

    copy = tmp_path / "damaged.zarr"
    shutil.copytree(smoke_store, copy)
    with FeatureStore.open(copy) as st:
        item = int(np.flatnonzero(st.read("split") == split)[0])
        chunk = item // st.chunk_items
    arr = zarr.open_array(copy / field, mode="r+")
    value = arr[item]
    value.flat[0] = np.nan
    arr[item] = value
    # as a teacher that produced the NaN would have written it: the checksum matches the NaN
    import json

    from harness.cache.store import chunk_checksum

    with FeatureStore.open(copy) as st:
        start, stop = st.chunk_range(chunk)
        marker = copy / "_progress" / f"chunk_{chunk:06d}.done"
        record = json.loads(marker.read_text())
        record["checksums"][field] = chunk_checksum(st.read(field, slice(start, stop)))
    marker.write_text(json.dumps(record))
    return copy, chunk


@pytest.mark.parametrize("split, method", [(1, "ensemble"), (0, "kd")])
def test_nan_in_a_store_is_named_by_field_and_chunk(split, method, smoke_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    field = "teachers/sort/conv4" if method == "ensemble" else "teachers/sort/logits"
    copy, chunk = _damaged_copy(smoke_store, tmp_path, field, split)
    before = sorted(p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file())
    _fails_cleanly(["distill", "--method", method, "--preset", "smoke", "--store", str(copy), "--set", "epochs=1"],
                   str(copy), f"field '{field}', chunk {chunk}", "non-finite")
    assert sorted(p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()) == before   # store untouched


def test_a_non_finite_loss_names_the_step_and_the_first_bad_term(smoke_store, tmp_path, monkeypatch):
    import torch

    from harness.distill import methods

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    forward = methods.KDUniform.forward
    calls = {"n": 0}

    def poisoned(self, out, tb):
        calls["n"] += 1
        terms = forward(self, out, tb)
        return {k: v * torch.tensor(float("nan")) for k, v in terms.items()} if calls["n"] == 3 else terms

    monkeypatch.setattr(methods.KDUniform, "forward", poisoned)
    _fails_cleanly(["distill", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store), "--set", "epochs=1"],
                   "non-finite at epoch 1, step 3", "first non-finite term: kd/kd")


def test_real_data_problems_are_named_before_work_starts(smoke_data, tmp_path, monkeypatch):
    """A classInd listing a class no training video has is refused before any teacher runs;
    unlabeled videos of several frame sizes are refused with the setting that fixes it."""
    from harness.data.video import write_video

    def square_video(t, size, seed):
        v = np.full((t, size, size, 3), 30, np.uint8)
        for i in range(t):
            v[i, 2 + i:8 + i, 2:8] = 200 - 10 * seed
        return v

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    root = tmp_path / "data"
    shutil.copytree(smoke_data, root)
    with open(root / "ucfTrainTestlist" / "classInd.txt", "a") as fh:
        fh.write("5 NeverTrained\n")
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--data-root", str(root), "--teacher", "sort=missing.pt",
                    "--store", str(tmp_path / "s.zarr")], "1 of 5 classes have no training video", "NeverTrained")
    assert not (tmp_path / "s.zarr").exists()

    mixed = tmp_path / "mixed"
    for i, size in enumerate((32, 32, 24)):
        write_video(mixed / f"u{i}.avi", square_video(12, size, i))
    (mixed / "unlabeled.txt").write_text("u0.avi\nu1.avi\nu2.avi\n")
    _fails_cleanly(["pretrain", "--task", "motion", "--preset", "smoke", "--data-root", str(mixed)],
                   "2 frame sizes", "--set decode_size=N")


def test_a_bad_setting_fails_before_teachers_or_a_store_are_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    _fails_cleanly(["distill", "--method", "kd", "--preset", "smoke", "--store", str(tmp_path / "new.zarr"),
                    "--set", "lr=-1"], "'lr': must be > 0")
    _fails_cleanly(["table2", "--preset", "smoke", "--seeds", "0"], "--seeds")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "new.zarr").exists()
