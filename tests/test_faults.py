"""Bad input and damage through the CLI, on smoke: exit code 2, one error line naming the key
or file, no traceback, nothing already written damaged. The matrix is summarised in
docs/RELIABILITY.md."""

import builtins
import errno
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import TEACHERS
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


# ---- full disks, read-only folders, odd paths -------------------------------------------------
# Run as root in a container, a full disk and a read-only folder cannot be made for real: the
# system calls that would fail are replaced, for the paths under test only, by ones that fail
# as the system does (a write that stores part of its data then raises ENOSPC; an open or mkdir
# refused with EACCES / EROFS).

class _WrappedFile:
    """A file whose writes behave as a subclass says; everything else is the real file's."""

    def __init__(self, fh):
        self._fh = fh

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


class _FullDiskFile(_WrappedFile):
    """A file on a disk that fills up during the first write: half the bytes land, then ENOSPC."""

    def write(self, data):
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_writes(monkeypatch, hit, err):
    """Opening for writing a path ``hit(path)`` accepts (absolute) fails as a full disk
    (``err`` ENOSPC, at the first write) or a read-only folder would; so does making a folder
    there. As on a real disk, a path whose parent folder does not exist fails with ENOENT first."""
    real_open, real_fdopen, real_mkdir = io.open, os.fdopen, os.mkdir

    def refused(path):
        path = os.path.abspath(path)
        return hit(path) and os.path.isdir(os.path.dirname(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and refused(file):
            if err == errno.ENOSPC:
                return _FullDiskFile(real_open(file, mode, *args, **kwargs))
            raise OSError(err, os.strerror(err), str(file))
        return real_open(file, mode, *args, **kwargs)

    def fake_fdopen(fd, mode="r", *args, **kwargs):   # a file made by os.open (a chunk's claim)
        fh = real_fdopen(fd, mode, *args, **kwargs)
        path = os.readlink(f"/proc/self/fd/{fd}")
        if any(c in mode for c in "wax+") and hit(path):
            if err == errno.ENOSPC:
                return _FullDiskFile(fh)
            fh.close()
            raise OSError(err, os.strerror(err), path)
        return fh

    def fake_mkdir(path, *args, **kwargs):
        if err != errno.ENOSPC and refused(path) and not os.path.exists(path):
            raise OSError(err, os.strerror(err), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "fdopen", fake_fdopen)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


class _SlowFile(_WrappedFile):
    """A file on a slow disk: each write lands, then takes a while to return."""

    def write(self, data):
        n = self._fh.write(data)
        time.sleep(0.5)
        return n


def _slow_writes(monkeypatch, hit):
    """Writing a file ``hit(path)`` accepts is slow, so a write still running beside a failed
    one is still running when the command returns, unless the code waited for it."""
    inner = io.open

    def slow_open(file, mode="r", *args, **kwargs):
        fh = inner(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and hit(os.path.abspath(file)):
            return _SlowFile(fh)
        return fh

    monkeypatch.setattr(io, "open", slow_open)
    monkeypatch.setattr(builtins, "open", slow_open)


def _fails_then_restored(monkeypatch, hit, err, args, *needles, slow=None):
    """The command fails in one line under the fault; the fault is then lifted. Writes to the
    paths ``slow`` accepts are slow meanwhile."""
    with monkeypatch.context() as m:
        _fail_writes(m, hit, err)
        if slow is not None:
            _slow_writes(m, slow)
        line = _fails_cleanly(args, *needles)
    return line


def _no_temporaries(folder):
    return sorted(str(p) for p in Path(folder).rglob("*") if ".tmp" in p.name or p.name.endswith(".partial"))


def _teacher_args(smoke_store):
    return [f"--teacher={name}={smoke_store.parent / f'{name}.pt'}" for name, _ in TEACHERS]


def _same_store(a, b):
    from harness.cache.store import FeatureStore

    with FeatureStore.open(a) as x, FeatureStore.open(b) as y:
        assert [f.name for f in x.fields] == [f.name for f in y.fields]
        for f in x.fields:
            np.testing.assert_array_equal(x.read(f.name), y.read(f.name), err_msg=f.name)
        assert x.extras() == y.extras()


def test_a_full_disk_while_writing_the_store_is_one_line_and_resumes(smoke_store, smoke_data, tmp_path, monkeypatch):
    """Creating it, a chunk file, a chunk's marker or claim, the class prototypes: each refused in one
    line naming it, and the same command then ends with the store an uninterrupted run makes.
    The store's folder has a space, a unicode letter and parents that do not exist yet."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "no such parent" / "übung store.zarr"
    args = ["cache-teachers", "--preset", "smoke", "--data-root", str(smoke_data), "--store", str(store),
            *_teacher_args(smoke_store)]
    _fails_then_restored(monkeypatch, lambda p: "harness_store.json" in p, errno.ENOSPC, args,
                         f"{store}/harness_store.json: no space left on device")
    chunk3 = str(store / "teachers" / "sort" / "conv4" / "c" / "3") + os.sep
    _fails_then_restored(monkeypatch, lambda p: p.startswith(chunk3), errno.ENOSPC, args,
                         f"{store}/teachers/sort/conv4/c/3/", "no space left on device")
    done = sorted(p.name for p in (store / "_progress").iterdir())
    assert done == [f"chunk_{i:06d}.done" for i in range(3)]      # the chunks before are kept, no claim left
    _fails_then_restored(monkeypatch, lambda p: "chunk_000005.done" in p, errno.ENOSPC, args,
                         f"{store}/_progress/chunk_000005.done", "no space left on device")
    _fails_then_restored(monkeypatch, lambda p: p.endswith("chunk_000007.claim"), errno.ENOSPC, args,
                         f"{store}/_progress/chunk_000007.claim: no space left on device")
    assert not (store / "_progress" / "chunk_000007.claim").exists()     # no half claim blocks chunk 7
    extra = str(store / "extra") + os.sep      # the class prototypes, written once every chunk is
    # with the store's own metadata slow to write: no write may still be running when the
    # command returns (zarr writes parent groups beside the array, leaving a temporary behind)
    _fails_then_restored(monkeypatch, lambda p: p.startswith(extra), errno.ENOSPC, args,
                         f"{store}/extra/class_prototypes/sort: no space left on device",
                         slow=lambda p: os.path.dirname(p) == str(store))
    assert len(list((store / "_progress").iterdir())) == 13
    assert _no_temporaries(tmp_path) == []
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    _same_store(store, smoke_store)


def _student_weights(run_folder):
    import torch

    return torch.load(Path(run_folder) / "student.pt", map_location="cpu")


def _the_run(runs):
    folders = list((Path(runs) / "distill" / "smoke").iterdir())
    assert len(folders) == 1, folders
    return folders[0]


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k


def _kd_args(smoke_store):
    """The distillation the run faults below cut short (3 epochs, so one can be cut in the middle)."""
    return ["distill", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store), "--set", "epochs=3"]


@pytest.fixture(scope="module")
def uninterrupted_kd(smoke_store, tmp_path_factory):
    """The student weights of ``_kd_args`` run start to end, once for the tests that compare."""
    runs = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("HARNESS_RUNS", str(runs))
        out = CliRunner().invoke(main, _kd_args(smoke_store))
    assert out.exit_code == 0, out.output
    return _student_weights(_the_run(runs))


def test_a_full_disk_while_writing_a_run_is_one_line_and_resumes(smoke_store, uninterrupted_kd, tmp_path,
                                                                  monkeypatch):
    """state.pt (torch's save), metrics.jsonl, final.json: each refused in one line naming it,
    nothing half-written left, and the run resumes to the weights of an uninterrupted run.
    The runs root has a space and a unicode letter."""
    import torch

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs ü"
    monkeypatch.setenv("HARNESS_RUNS", str(runs))
    args = _kd_args(smoke_store)
    real_save = torch.save

    def save_on_a_full_disk(obj, f, *a, **k):
        if ".tmp" in str(f) and "state.pt" in str(f):
            Path(f).write_bytes(b"PK\x03\x04 half an archive")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", save_on_a_full_disk)
        _fails_cleanly(args, "state.pt: no space left on device")
    folder = _the_run(runs)
    assert not (folder / "state.pt").exists() and (folder / "run.json").is_file()
    run_json = (folder / "run.json").read_bytes()
    for name in ("metrics.jsonl", "final.json"):
        _fails_then_restored(monkeypatch, lambda p, n=name: f"{n}.tmp" in p, errno.ENOSPC, args,
                             f"{folder}/{name}: no space left on device")
        assert not (folder / name).exists()
    assert (folder / "state.pt").is_file() and (folder / "run.json").read_bytes() == run_json
    assert _no_temporaries(runs) == []
    assert CliRunner().invoke(main, args).exit_code == 0
    _same_weights(_student_weights(folder), uninterrupted_kd)
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_full_disk_while_writing_a_table_is_one_line_and_keeps_the_old_one(smoke_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    args = ["ablation", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store)]
    assert CliRunner().invoke(main, args).exit_code == 0
    table = tmp_path / "tables" / "generated" / "smoke" / "ablation" / "kd"
    before = {p.name: p.read_bytes() for p in table.iterdir()}
    _fails_then_restored(monkeypatch, lambda p: "table2.csv.tmp" in p, errno.ENOSPC, args,
                         "table2.csv: no space left on device")
    assert {p.name: p.read_bytes() for p in table.iterdir() if p.name != "table2.md"} == \
        {k: v for k, v in before.items() if k != "table2.md"}      # the csv and json as they were
    assert _no_temporaries(tmp_path) == []


def test_a_full_disk_while_generating_the_synthetic_set_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["data", "synth", "--root", "d", "--preset", "smoke", "--quiet"]
    _fails_then_restored(monkeypatch, lambda p: p.endswith("trainlist01.txt"), errno.ENOSPC, args,
                         "d: no space left on device")
    assert list(tmp_path.iterdir()) == []       # the half-made set was in a hidden folder, now removed


# (command, folder made unwritable, relative to tmp_path; errno)
UNWRITABLE = [
    (["distill", "--method", "kd", "--preset", "smoke", "--store", "{store}"], "runs", errno.EACCES),
    (["cache-teachers", "--preset", "smoke", "--data-root", "{data}", "{teachers}"], "cache", errno.EROFS),
    (["cache-teachers", "--preset", "smoke", "--data-root", "{data}", "--store", "ro/s.zarr", "{teachers}"], "ro",
     errno.EACCES),
    (["ablation", "--method", "kd", "--preset", "smoke", "--store", "{store}"], "tables", errno.EROFS),
]


@pytest.mark.parametrize("args, folder, err", UNWRITABLE, ids=["runs root", "cache root", "store folder", "tables"])
def test_a_folder_that_cannot_be_written_is_named_in_one_line(args, folder, err, smoke_store, smoke_data, tmp_path,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    (tmp_path / folder).mkdir()
    words = []
    for a in args:
        words += _teacher_args(smoke_store) if a == "{teachers}" else [a.format(store=smoke_store, data=smoke_data)]
    locked = str(tmp_path / folder)
    line = _fails_then_restored(monkeypatch, lambda p: p.startswith(locked + os.sep), err, words,
                                os.strerror(err).lower(), " writable or choose another path")
    named = line.split("; make ", 1)[1].split(" writable")[0]     # as the user wrote it, or absolute
    assert Path(named).resolve() == Path(locked), line
    assert list((tmp_path / folder).iterdir()) == [], line


def test_odd_paths_work_or_fail_in_one_line(smoke_store, smoke_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    odd = tmp_path / "a folder ü" / "store ö.zarr"
    shutil.copytree(smoke_store, odd)
    shutil.copytree(smoke_store, tmp_path / "rel.zarr")
    for store in (str(odd), "rel.zarr"):
        out = CliRunner().invoke(main, ["distill", "--method", "kd", "--preset", "smoke", "--store", store])
        assert out.exit_code == 0, out.output
    (tmp_path / "file.zarr").write_text("not a store")
    for args in (["distill", "--method", "kd", "--preset", "smoke", "--store", "file.zarr"],
                 ["cache-teachers", "--verify", "file.zarr"], ["cache-teachers", "--info", "file.zarr"]):
        _fails_cleanly(args, "file.zarr: is a file, not a Zarr store folder")
    _fails_cleanly(["cache-teachers", "--verify", str(tmp_path / "a folder ü")], "a folder ü: no feature store here")
    (tmp_path / "afile").write_text("a file where a folder is expected")
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--data-root", str(smoke_data), "--store", "afile/s.zarr",
                    *_teacher_args(smoke_store)],
                   "afile: is a file, not a folder")
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "afile" / "runs"))
    _fails_cleanly(["distill", "--method", "kd", "--preset", "smoke", "--store", str(odd)],
                   "lies under", "afile, a file, not a folder")


@pytest.mark.parametrize("spec, needle", [("sort", "--teacher expects NAME=CHECKPOINT"),
                                          ("=x.pt", "the name must be non-empty and without '/'"),
                                          ("a/b=x.pt", "the name must be non-empty and without '/'"),
                                          ("sort=y.pt", "--teacher sort: given twice (x.pt and y.pt)")])
def test_a_bad_teacher_option_fails_before_any_work(spec, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--teacher", "sort=x.pt", "--teacher", spec], needle)
    assert list(tmp_path.iterdir()) == []       # not even the synthetic data generated


# ---- Ctrl-C ------------------------------------------------------------------------------------
# A real process gets SIGINT once it has finished some work (the first epoch's state.pt, the
# first chunk's marker). Each later epoch or chunk is slowed by a sleep, only so that the signal
# surely lands before the command would have finished on its own.

_SLOWED = """
import signal, sys, time
# a child of a shell's background job starts with SIGINT ignored, and Python then keeps it so:
# the test is about what Ctrl-C does, so the child takes it as a terminal would deliver it
signal.signal(signal.SIGINT, signal.default_int_handler)
from harness.cli import main
import {module} as m
real = m.{cls}.{method}
def slowed(*args, **kwargs):
    out = real(*args, **kwargs)
    time.sleep({pause})
    return out
m.{cls}.{method} = slowed
main(sys.argv[1:], prog_name="harness")
"""


def _interrupt(args, progress_made, tmp_path, slow):
    """Run ``harness ARGS`` as a process, send SIGINT once ``progress_made()``; (exit code, stderr)."""
    import signal
    import subprocess
    import sys
    import time

    # the thread count of the runs it is compared with (another count is another result)
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-c", _SLOWED.format(**slow), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not progress_made() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _interrupted_cleanly(code, err, where):
    assert code == 130, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"interrupted; run the same command to resume from {where}", err


def test_ctrl_c_during_distill_resumes_to_the_uninterrupted_weights(smoke_store, uninterrupted_kd, tmp_path,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS", str(runs))
    args = _kd_args(smoke_store)
    code, err = _interrupt(args, lambda: any(runs.rglob("state.pt")), tmp_path,
                           {"module": "harness.runs", "cls": "RunDir", "method": "save_state", "pause": 0.5})
    folder = _the_run(runs)
    _interrupted_cleanly(code, err, folder)
    assert not (folder / "final.json").exists() and _no_temporaries(runs) == []
    assert CliRunner().invoke(main, args).exit_code == 0                      # the same command resumes
    _same_weights(_student_weights(folder), uninterrupted_kd)
    epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_ctrl_c_during_cache_teachers_resumes_to_the_uninterrupted_store(smoke_store, smoke_data, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.zarr"
    args = ["cache-teachers", "--preset", "smoke", "--data-root", str(smoke_data), "--store", "s.zarr",
            *_teacher_args(smoke_store)]
    code, err = _interrupt(args, lambda: any((store / "_progress").glob("*.done")), tmp_path,
                           {"module": "harness.cache.store", "cls": "FeatureStore", "method": "write_chunk",
                            "pause": 0.3})
    _interrupted_cleanly(code, err, "s.zarr")
    markers = list((store / "_progress").iterdir())
    assert markers and all(p.name.endswith(".done") for p in markers)          # no claim left behind
    assert len(markers) < 13 and _no_temporaries(store) == []
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    _same_store(store, smoke_store)


# ---- stores of another version, checkpoints of another architecture ------------------------------

def _edited_record(smoke_store, tmp_path, edit):
    """A copy of the smoke store whose record (harness_store.json) ``edit`` changed."""
    copy = tmp_path / "edited.zarr"
    shutil.copytree(smoke_store, copy)
    record = json.loads((copy / "harness_store.json").read_text())
    edit(record)
    (copy / "harness_store.json").write_text(json.dumps(record))
    return copy


def _set_version(value):
    def edit(record):
        if value is None:
            del record["layout"]["layout_version"]
        else:
            record["layout"]["layout_version"] = value
    return edit


def _drop_field(name):
    def edit(record):
        record["layout"]["fields"] = [f for f in record["layout"]["fields"] if f["name"] != name]
    return edit


STORE_VERSIONS = [
    (_set_version(0), "store layout version 0, this harness reads version 1"),
    (_set_version("2.0"), "store layout version '2.0', this harness reads version 1"),
    (_set_version(None), "store layout version unknown (none recorded), this harness reads version 1"),
    (lambda r: r.pop("layout"), "store layout version unknown"),
    (lambda r: r["layout"].update(n_items="many"), "store record (layout version 1) is damaged (ValueError"),
    (lambda r: r["layout"].update(chunk_items=0), "store record (layout version 1) is damaged (n_items, chunk_items"),
    (_drop_field("teachers/sort/conv4"), "store lacks teachers/sort/conv4, which every teacher store of layout "
                                         "version 1 holds (this one says version 1"),
    (_drop_field("label"), "store lacks label"),
]


@pytest.mark.parametrize("edit, needle", STORE_VERSIONS,
                         ids=["older", "unknown", "none", "no layout", "n_items text", "chunk_items 0", "no conv4",
                              "no label"])
def test_a_store_of_another_version_is_refused_saying_what_to_do(edit, needle, smoke_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    copy = _edited_record(smoke_store, tmp_path, edit)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in copy.rglob("*"))
    for args in (["distill", "--method", "gl+gr", "--preset", "smoke", "--store", str(copy)],
                 ["cache-teachers", "--verify", str(copy)]):
        _fails_cleanly(args, str(copy), needle, "rebuild it with `harness cache-teachers`")
    assert sorted((str(p), p.stat().st_mtime_ns) for p in copy.rglob("*")) == before
    assert not (tmp_path / "runs").exists()


def test_a_teacher_checkpoint_of_another_architecture_is_one_line(smoke_store, smoke_data, tmp_path, monkeypatch):
    """cache-teachers --teacher: AlexNet or PredNet weights where the 'arch' entry says VGG, a
    truncated file, a file of random bytes; finetune --checkpoint: a fine-tuned teacher given as
    a pretraining checkpoint. Each names the file; no store is started."""
    import torch

    from harness.models import build_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    vgg = smoke_store.parent / "sort.pt"
    for arch, needle in (("alexnet", "unexpected keys (e.g. 'features.3.weight')"),
                         ("prednet", "unexpected keys (e.g. 'cells.0.conv.weight')")):
        path = tmp_path / f"{arch}.pt"
        torch.save({"arch": "vgg19_teacher", "model": build_model(arch, 4, "smoke").state_dict(), "num_classes": 4,
                    "preset": "smoke"}, path)
        _fails_cleanly(["cache-teachers", "--preset", "smoke", "--data-root", str(smoke_data), "--store", "s.zarr",
                        f"--teacher=sort={path}"],
                       f"{path}: teacher 'sort' (vgg19_teacher by its 'arch' entry) does not fit the VGGTeacher", needle,
                       "a checkpoint of another architecture?")
    (tmp_path / "truncated.pt").write_bytes(vgg.read_bytes()[:4096])
    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    for name in ("truncated.pt", "garbage.pt"):
        _fails_cleanly(["cache-teachers", "--preset", "smoke", "--data-root", str(smoke_data), "--store", "s.zarr",
                        f"--teacher=sort={tmp_path / name}"], f"{tmp_path / name}: cannot read as a teacher checkpoint")
    _fails_cleanly(["cache-teachers", "--preset", "smoke", "--data-root", str(smoke_data), "--store", "s.zarr",
                    f"--teacher=sort={tmp_path}"], f"{tmp_path}: is a folder, not a teacher checkpoint (sort) file")
    assert not (tmp_path / "s.zarr").exists()
    _fails_cleanly(["finetune", "--arch", "vgg19_teacher", "--init", "pretext", "--checkpoint", str(vgg),
                    "--preset", "smoke", "--data-root", str(smoke_data)],
                   f"{vgg}: not a pretraining checkpoint (no backbone)")


def test_a_resume_state_of_another_run_or_damaged_is_one_line(smoke_store, tmp_path, monkeypatch):
    """A run folder's state.pt replaced by another run's, or by a truncated file: the resume
    names it and the folder to delete; the state is left as it was."""
    from harness.distill.runner import distill

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_RUNS", str(runs))
    folders = [distill("kd", "smoke", seed, smoke_store, runs_root=runs, progress=False, stop_after_epoch=1).path
               for seed in (0, 1)]
    other = (folders[0] / "state.pt").read_bytes()
    target = folders[1] / "state.pt"
    args = ["distill", "--method", "kd", "--preset", "smoke", "--seed", "1", "--store", str(smoke_store)]
    for content, needle in ((other, "belongs to a run with another config; delete"),
                            (other[:2048], "cannot read as a resume state")):
        target.write_bytes(content)
        _fails_cleanly(args, f"{target}: {needle}")
        assert target.read_bytes() == content and not (folders[1] / "final.json").exists()
