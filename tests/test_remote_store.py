"""A finished store read from an fsspec URL (fsspec's in-process ``memory://`` filesystem standing
in for object storage): the same items, checksums and student as the local copy."""

import json
import uuid

import numpy as np
import pytest
import torch

from harness.cache.store import FeatureStore, RemoteZarrStore, StoreError


@pytest.fixture
def memory_store(smoke_store):
    """The smoke store copied to a fresh ``memory://`` location; removed afterwards."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/stores-{uuid.uuid4().hex}/smoke.zarr"
    fs.put(str(smoke_store), root, recursive=True)
    yield f"memory://{root}"
    fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_url_store_reads_what_the_local_store_holds(smoke_store, memory_store):
    with FeatureStore.open(smoke_store) as local, FeatureStore.open(memory_store) as remote:
        assert isinstance(remote, RemoteZarrStore) and remote.path == memory_store
        assert remote.manifest == local.manifest and remote.is_complete()
        assert remote.completed_chunks() == local.completed_chunks() and remote.n_chunks > 1
        assert remote.extras() == local.extras() and remote.extras()
        for name in remote.extras():
            assert np.array_equal(remote.get_extra(name), local.get_extra(name))
        assert remote.stored_bytes() == local.stored_bytes()
        for i in range(local.n_chunks):
            assert remote.chunk_checksums(i) == local.chunk_checksums(i)
            a, b = local.read_chunk(i), remote.read_chunk(i)
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        idx = np.array([5, 0, local.n_items - 1, 3])
        for f in local.fields:
            assert np.array_equal(remote.read(f.name, idx), local.read(f.name, idx))


def test_url_store_checks_chunks_against_their_recorded_checksums(memory_store):
    fsspec = pytest.importorskip("fsspec")
    fs, root = RemoteZarrStore.filesystem(memory_store)
    with FeatureStore.open(memory_store) as st:
        name = st.fields[0].name
        marker = f"{root}/_progress/chunk_000000.done"
        sums = json.loads(fs.cat_file(marker))
        sums["checksums"][name] += 1
        fs.pipe_file(marker, json.dumps(sums).encode())
        with pytest.raises(StoreError, match="does not match the checksum"):
            st.read_chunk(0)
        assert any("chunk 0" in p for p in st.verify())
    assert fsspec   # the filesystem stayed in process for the whole test


def test_student_from_a_url_store_equals_the_one_from_the_local_store(smoke_store, memory_store, tmp_path):
    from harness.distill.runner import distill

    over = {"epochs": "1"}
    local = distill("gl+gr", "smoke", 0, smoke_store, overrides=over, runs_root=tmp_path / "a", progress=False)
    remote = distill("gl+gr", "smoke", 0, memory_store, overrides=over, runs_root=tmp_path / "b", progress=False)
    a, b = torch.load(local.path / "student.pt"), torch.load(remote.path / "student.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((remote.path / "run.json").read_text())["inputs"]["store"] == memory_store


def test_distill_cli_takes_a_store_url(memory_store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness import pipeline
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(pipeline, "ensure_store", lambda *a, **k: pytest.fail("the store was rebuilt"))
    ok = CliRunner().invoke(main, ["distill", "--method", "kd", "--preset", "smoke", "--store", memory_store,
                                   "--set", "epochs=1"])
    assert ok.exit_code == 0, ok.output
    missing = CliRunner().invoke(main, ["distill", "--method", "kd", "--preset", "smoke", "--store",
                                        memory_store + "-absent"])
    assert missing.exit_code == 2 and "no feature store here" in missing.output
    assert "Traceback" not in missing.output and len(missing.output.strip().splitlines()) == 1


def test_url_store_is_read_only_and_unknown_protocols_are_one_line(memory_store):
    with pytest.raises(StoreError, match="opens read-only"):
        FeatureStore.open(memory_store, "r+")
    with FeatureStore.open(memory_store) as st:
        with pytest.raises(StoreError, match="read-only"):
            st.write_chunk(0, st.read_chunk(0))
        fields = st.fields
    with pytest.raises(StoreError, match="written to a local folder"):
        FeatureStore.create(memory_store + "-new", fields, 4, 2, {"kind": "x"})
    with pytest.raises(StoreError, match="cannot open this URL"):
        FeatureStore.open("nosuchprotocol://bucket/store.zarr")
