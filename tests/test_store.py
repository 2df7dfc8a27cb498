"""Feature store backends and the resumable writer, on small synthetic arrays.

Oracles: the arrays the test itself generated (numpy casts for float16), an uninterrupted
single-process store, and byte counts computed from the shapes.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from harness.cache import FeatureStore, FieldSpec, ManifestMismatch, StoreError, teacher_schema, write_store
from harness.cache.writer import owned_chunks, world_from_env

# The chunk generator is shared verbatim by the test process and the writer subprocesses.
GEN = textwrap.dedent(
    """
    import numpy as np
    from harness.cache import teacher_schema

    N, CHUNK = 50, 8
    FIELDS = teacher_schema((6, 5), 3, {"sort": (4, 3, 3), "motion": (2, 2, 2)}, 7)
    MANIFEST = {"teachers": {"sort": "ab" * 32, "motion": "cd" * 32}, "view_seed": 3,
                "dataset": "synth-fp", "preprocessing": {"size": 6}, "code_version": "v1"}

    def make_chunk(i):
        a, b = i * CHUNK, min((i + 1) * CHUNK, N)
        rng = np.random.default_rng([11, i])
        out = {}
        for f in FIELDS:
            shape = (b - a, *f.item_shape)
            if f.dtype == "uint8":
                out[f.name] = rng.integers(0, 256, shape).astype(np.uint8)
            elif f.dtype.startswith("float"):
                # float32 in, so the float16 conv4 field really is a cast by the store
                out[f.name] = rng.standard_normal(shape).astype(np.float32)
            else:
                out[f.name] = rng.integers(-1000, 1000, shape)
        out["split"] = (np.arange(a, b) % 4 == 0).astype(np.uint8)
        return out
    """
)
ns: dict = {}
exec(GEN, ns)
N, CHUNK, FIELDS, MANIFEST, make_chunk = ns["N"], ns["CHUNK"], ns["FIELDS"], ns["MANIFEST"], ns["make_chunk"]
N_CHUNKS = -(-N // CHUNK)
FORMATS = ["zarr", "hdf5"]


def expected():
    chunks = [make_chunk(i) for i in range(N_CHUNKS)]
    return {f.name: np.concatenate([c[f.name] for c in chunks]).astype(f.dtype) for f in FIELDS}


def store_path(tmp_path, fmt, name="s"):
    return tmp_path / (f"{name}.zarr" if fmt == "zarr" else f"{name}.h5")


def assert_same_store(a: FeatureStore, b: FeatureStore):
    assert a.is_complete() and b.is_complete()
    assert [f.name for f in a.fields] == [f.name for f in b.fields]
    for f in a.fields:
        x, y = a.read(f.name), b.read(f.name)
        assert x.dtype == y.dtype == np.dtype(f.dtype)
        np.testing.assert_array_equal(x, y, err_msg=f.name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted single-process stores, one per backend."""
    root = tmp_path_factory.mktemp("ref")
    return {fmt: write_store(store_path(root, fmt), FIELDS, N, CHUNK, MANIFEST, make_chunk, format=fmt, progress=False)
            for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_field_and_dtype(reference, fmt):
    store = FeatureStore.open(reference[fmt].path)
    want = expected()
    assert store.format == fmt and store.n_items == N and store.n_chunks == N_CHUNKS
    assert store.manifest == MANIFEST
    for f in FIELDS:
        got = store.read(f.name)
        assert got.dtype == np.dtype(f.dtype), f.name
        assert got.shape == (N, *f.item_shape)
        np.testing.assert_array_equal(got, want[f.name], err_msg=f.name)
    conv4 = store.read("teachers/sort/conv4")
    assert conv4.dtype == np.float16
    # oracle: numpy's own float32 -> float16 rounding of what was written
    src = np.concatenate([make_chunk(i)["teachers/sort/conv4"] for i in range(N_CHUNKS)])
    assert src.dtype == np.float32
    np.testing.assert_array_equal(conv4, src.astype(np.float16))
    # chunk reads and index reads agree with numpy slicing
    got = store.read_chunk(N_CHUNKS - 1, ["video", "frames"])
    np.testing.assert_array_equal(got["video"], want["video"][(N_CHUNKS - 1) * CHUNK:])
    idx = np.array([49, 3, 17, 3])
    np.testing.assert_array_equal(store.read("teachers/motion/logits", idx), want["teachers/motion/logits"][idx])
    np.testing.assert_array_equal(store.read("label", slice(1, 40, 7)), want["label"][1:40:7])


@pytest.mark.parametrize("fmt", FORMATS)
def test_extras_and_multilabel(tmp_path, fmt):
    fields = teacher_schema(4, 2, {"t": (2, 1, 1)}, 5, multilabel=True)
    rng = np.random.default_rng(0)
    data = {f.name: rng.integers(0, 2, (6, *f.item_shape)).astype(f.dtype) for f in fields}
    store = write_store(store_path(tmp_path, fmt), fields, 6, 4, {"m": 1},
                        lambda i: {k: v[i * 4:(i + 1) * 4] for k, v in data.items()}, format=fmt, progress=False)
    proto = rng.standard_normal((5, 5)).astype(np.float32)
    store.put_extra("class_prototypes/t", proto)
    store.put_extra("class_prototypes/t", proto * 2)  # overwrite
    store.close()
    again = FeatureStore.open(store.path)
    assert again.extras() == ["class_prototypes/t"]
    np.testing.assert_array_equal(again.get_extra("class_prototypes/t"), proto * 2)
    assert again.read("label").shape == (6, 5) and again.read("label").dtype == np.uint8
    np.testing.assert_array_equal(again.read("label"), data["label"])
    with pytest.raises(StoreError, match="no extra array 'nope'"):
        again.get_extra("nope")


def test_hdf5_extra_written_before_finalize_is_kept(tmp_path):
    path = tmp_path / "e.h5"
    store = FeatureStore.create(path, FIELDS, N, CHUNK, MANIFEST, format="hdf5")
    store.put_extra("class_prototypes/sort", np.arange(49, dtype=np.float32).reshape(7, 7))
    write_store(path, FIELDS, N, CHUNK, MANIFEST, make_chunk, format="hdf5", progress=False)
    final = FeatureStore.open(path)
    assert final.is_complete() and not (tmp_path / "e.h5.parts").exists()
    np.testing.assert_array_equal(final.get_extra("class_prototypes/sort"), np.arange(49).reshape(7, 7))


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("fmt", FORMATS)
def test_crash_at_chunk_k_then_resume_equals_uninterrupted(tmp_path, reference, fmt):
    path = store_path(tmp_path, fmt)
    calls = []

    def failing(i):
        if i == 3:
            raise Boom("teacher crashed")
        calls.append(i)
        return make_chunk(i)

    with pytest.raises(Boom):
        write_store(path, FIELDS, N, CHUNK, MANIFEST, failing, format=fmt, progress=False)
    partial = FeatureStore.open(path)
    assert partial.completed_chunks() == [0, 1, 2] and not partial.is_complete()
    with pytest.raises(StoreError, match="incomplete"):
        from harness.cache import StreamingReader

        StreamingReader(partial, batch_size=4)
    resumed_calls = []

    def counting(i):
        resumed_calls.append(i)
        return make_chunk(i)

    store = write_store(path, FIELDS, N, CHUNK, MANIFEST, counting, format=fmt, progress=False)
    assert resumed_calls == list(range(3, N_CHUNKS))  # only the missing chunks
    assert_same_store(FeatureStore.open(path), reference[fmt])
    assert store.is_complete()


KILL_SCRIPT = GEN + textwrap.dedent(
    """
    import sys, time
    from harness.cache import write_store

    def slow(i):
        time.sleep(0.15)  # leave time to be killed mid-run
        return make_chunk(i)

    write_store(sys.argv[1], FIELDS, N, CHUNK, MANIFEST, slow, format=sys.argv[2], progress=False)
    """
)


def _done_count(path, fmt):
    d = path / "_progress" if fmt == "zarr" else path.with_name(path.name + ".parts")
    pattern = "*.done" if fmt == "zarr" else "chunk_??????.h5"
    return len(list(d.glob(pattern))) if d.is_dir() else 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, reference, fmt):
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    path = store_path(tmp_path, fmt)
    proc = subprocess.Popen([sys.executable, str(script), str(path), fmt], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 30
    while _done_count(path, fmt) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was killed, not finished
    partial = FeatureStore.open(path)
    done = partial.completed_chunks()
    assert 2 <= len(done) < N_CHUNKS and done == list(range(len(done)))
    resumed = []
    write_store(path, FIELDS, N, CHUNK, MANIFEST, lambda i: resumed.append(i) or make_chunk(i), format=fmt, progress=False)
    assert resumed == [i for i in range(N_CHUNKS) if i not in done]
    assert_same_store(FeatureStore.open(path), reference[fmt])


TWO_WRITERS = GEN + textwrap.dedent(
    """
    import sys, time
    from harness.cache import write_store

    def slow(i):
        time.sleep(0.02)
        return make_chunk(i)

    write_store(sys.argv[1], FIELDS, N, CHUNK, MANIFEST, slow, format=sys.argv[2], progress=False)
    """
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_writer_processes_equal_one(tmp_path, reference, fmt):
    script = tmp_path / "writer.py"
    script.write_text(TWO_WRITERS)
    path = store_path(tmp_path, fmt)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), fmt],
                         env={**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(r), "WORLD_SIZE": "2"},
                         stderr=subprocess.PIPE)
        for r in range(2)
    ]
    errs = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    store = FeatureStore.open(path)
    assert_same_store(store, reference[fmt])
    if fmt == "hdf5":  # merged into the single file by whichever rank finished last
        assert path.is_file() and not path.with_name(path.name + ".parts").exists()


def test_rank_assignment_is_a_disjoint_cover(monkeypatch):
    for world in (1, 2, 3, 5):
        owned = [owned_chunks(13, r, world) for r in range(world)]
        flat = sorted(c for o in owned for c in o)
        assert flat == list(range(13))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert world_from_env() == (1, 4)
    assert world_from_env(0, 1) == (0, 1)
    monkeypatch.setenv("RANK", "4")
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="rank 4 / world size 4"):
        world_from_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(HarnessError, match="environment variable RANK='one' is not an integer"):
        world_from_env()


@pytest.mark.parametrize("fmt", FORMATS)
def test_manifest_mismatch_is_refused_and_names_the_key(tmp_path, fmt):
    path = store_path(tmp_path, fmt)
    with pytest.raises(ZeroDivisionError):
        write_store(path, FIELDS, N, CHUNK, MANIFEST, lambda i: make_chunk(i) if i < 2 else 1 / 0, format=fmt, progress=False)
    other = dict(MANIFEST, teachers={"sort": "ee" * 32, "motion": "cd" * 32})
    with pytest.raises(ManifestMismatch) as exc:
        write_store(path, FIELDS, N, CHUNK, other, make_chunk, format=fmt, progress=False)
    msg = str(exc.value)
    assert str(path) in msg and "teachers" in msg and "\n" not in msg
    with pytest.raises(ManifestMismatch, match="differing keys: extra_key"):
        FeatureStore.open(path, expect_manifest=dict(MANIFEST, extra_key=1))
    with pytest.raises(ManifestMismatch, match="layout.chunk_items"):
        FeatureStore.create(path, FIELDS, N, CHUNK * 2, MANIFEST, format=fmt)
    # code_version is not part of the comparison by default, but can be made so
    FeatureStore.open(path, expect_manifest=dict(MANIFEST, code_version="v2"))
    with pytest.raises(ManifestMismatch, match="code_version"):
        FeatureStore.open(path, expect_manifest=dict(MANIFEST, code_version="v2"), ignore_keys=())
    # nothing was overwritten by the refused attempts
    store = FeatureStore.open(path)
    assert store.completed_chunks() == [0, 1] and store.manifest == MANIFEST
    np.testing.assert_array_equal(store.read("video", slice(0, 2 * CHUNK)),
                                  np.concatenate([make_chunk(0)["video"], make_chunk(1)["video"]]))


@pytest.mark.parametrize("fmt", FORMATS)
def test_uncompressed_stored_bytes_equal_raw(tmp_path, fmt):
    # 48 items in chunks of 8: no edge chunk, so stored bytes must equal raw bytes exactly.
    store = write_store(store_path(tmp_path, fmt), FIELDS, 48, 8, MANIFEST, make_chunk, format=fmt,
                        compression="none", progress=False)
    raw = {f.name: 48 * int(np.prod(f.item_shape, dtype=int)) * np.dtype(f.dtype).itemsize for f in FIELDS}
    assert store.raw_bytes() == raw
    assert store.stored_bytes() == raw
    info = store.info()
    assert "compression ratio 1.000" in info and "teachers/sort/conv4: (48, 3, 4, 3, 3) float16" in info


def test_compression_shrinks_compressible_data(tmp_path):
    fields = [FieldSpec("x", (64,), "float32")]
    ramp = np.tile(np.arange(64, dtype=np.float32), (32, 1))
    for fmt, comp in [("zarr", "zstd"), ("zarr", "lz4"), ("hdf5", "gzip"), ("hdf5", "lzf")]:
        store = write_store(tmp_path / f"c_{comp}.{fmt}", fields, 32, 16, {}, lambda i: {"x": ramp[i * 16:(i + 1) * 16]},
                            format=fmt, compression=comp, progress=False)
        assert sum(store.stored_bytes().values()) < 0.5 * ramp.nbytes, comp
        np.testing.assert_array_equal(store.read("x"), ramp)


def test_bad_inputs_are_one_line_errors(tmp_path):
    store = FeatureStore.create(tmp_path / "b.zarr", FIELDS, N, CHUNK, MANIFEST)
    good = make_chunk(0)
    with pytest.raises(StoreError, match=r"b\.zarr: chunk 0: every field must be written together; missing video"):
        store.write_chunk(0, {k: v for k, v in good.items() if k != "video"})
    with pytest.raises(StoreError, match=r"field 'frames' has shape \(7, 6, 5, 3\), expected \(8, 6, 5, 3\)"):
        store.write_chunk(0, dict(good, frames=good["frames"][:7]))
    with pytest.raises(StoreError, match="cannot store as uint8"):
        store.write_chunk(0, dict(good, split=good["split"].astype(np.float32)))
    with pytest.raises(StoreError, match="chunk 7 out of range"):
        store.write_chunk(7, good)
    assert store.completed_chunks() == []
    ro = FeatureStore.open(tmp_path / "b.zarr")
    with pytest.raises(StoreError, match="read-only"):
        ro.write_chunk(0, good)
    with pytest.raises(StoreError, match="no feature store here"):
        FeatureStore.open(tmp_path / "missing.zarr")
    with pytest.raises(StoreError, match="no field 'nope'"):
        ro.read("nope")
    with pytest.raises(StoreError, match="compression 'gzip' is not available for zarr"):
        FeatureStore.create(tmp_path / "c.zarr", FIELDS, N, CHUNK, MANIFEST, compression="gzip")
    with pytest.raises(StoreError, match="duplicate field names: a"):
        FeatureStore.create(tmp_path / "d.zarr", [FieldSpec("a", (), "int64")] * 2, N, CHUNK, {})
    # a folder that is not a store is never wiped
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "precious.txt").write_text("keep")
    with pytest.raises(StoreError, match="is not a harness feature store"):
        FeatureStore.create(tmp_path / "user", FIELDS, N, CHUNK, MANIFEST)
    assert (tmp_path / "user" / "precious.txt").read_text() == "keep"


def test_schema_builds_and_parses_teacher_field_names():
    from harness.cache import schema
    from harness.cache.store import teacher_schema

    fields = [f.name for f in teacher_schema(8, 2, {"sort": (4, 2, 2), "my-net": (3, 2, 2)}, 5)]
    assert schema.teacher_names(fields) == ["sort", "my-net"]
    assert schema.parse_teacher_field("teachers/my-net/conv4") == ("my-net", "conv4")
    for bad in ("frames", "teachers/x", "teachers/x/fc7", "teachers//logits", "teachers/a/b/logits"):
        assert schema.parse_teacher_field(bad) is None
    assert schema.teacher_fields(["a", "b"], ("logits",)) == ["teachers/a/logits", "teachers/b/logits"]
    with pytest.raises(ValueError, match="unknown teacher output 'fc7'"):
        schema.teacher_field("a", "fc7")
    with pytest.raises(ValueError, match="without '/'"):
        schema.teacher_field("a/b", "logits")


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_carry_checksums_and_damage_is_named_by_chunk_and_field(tmp_path, fmt):
    """Each chunk records a crc32 per field when written; reading checks it. A chunk file
    deleted behind its marker (Zarr reads it back as zeros) or overwritten with other bytes is
    reported by path, chunk and field, by reading and by `cache-teachers --verify`."""
    from click.testing import CliRunner

    from harness.cli import main

    path = store_path(tmp_path, fmt)
    st = write_store(path, FIELDS, N, CHUNK, MANIFEST, make_chunk, format=fmt, progress=False)
    assert st.verify() == [] and st.chunk_checksums(2)["teachers/sort/conv4"] > 0
    ok = CliRunner().invoke(main, ["cache-teachers", "--verify", str(path)])
    assert ok.exit_code == 0 and "sound (7 chunks" in ok.output
    st.close()
    if fmt == "zarr":
        # chunk 2's conv4 file gone: zarr would hand back zeros
        victim = path / "teachers" / "sort" / "conv4" / "c" / "2" / "0" / "0" / "0" / "0"
        victim.unlink()
        other = path / "teachers" / "motion" / "logits" / "c" / "4" / "0" / "0"
        other.write_bytes(np.random.default_rng(0).bytes(other.stat().st_size))
        want = [f"chunk 2, field 'teachers/sort/conv4': the data does not match the checksum",
                "chunk 4, field 'teachers/motion/logits'"]
    else:
        import h5py

        with h5py.File(path, "r+") as f:   # other bytes in chunk 2 of one field
            f["teachers/sort/conv4"][2 * CHUNK] = 0.5
        want = ["chunk 2, field 'teachers/sort/conv4': the data does not match the checksum"]
    with FeatureStore.open(path) as st:
        with pytest.raises(StoreError, match=want[0].replace("(", r"\(")):
            st.read_chunk(2)
        problems = st.verify()
    assert len(problems) == len(want) and all(w in p for w, p in zip(want, problems))
    bad = CliRunner().invoke(main, ["cache-teachers", "--verify", str(path)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and str(path) in bad.output


UNCOORDINATED = "import sys, time\nfrom harness.cache import write_store\n" + GEN + textwrap.dedent(
    """
    calls = []
    def slow(i):
        calls.append(i)
        time.sleep(0.05)
        return make_chunk(i)
    write_store(sys.argv[1], FIELDS, N, CHUNK, MANIFEST, slow, format=sys.argv[2], progress=False)
    print(len(calls))
    """
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_uncoordinated_writers_share_the_chunks(tmp_path, reference, fmt):
    """Two processes started on one store without RANK/WORLD_SIZE: each claims a chunk before
    computing it, so together they compute every chunk about once, both exit 0, and the
    store equals a single writer's."""
    script = tmp_path / "w.py"
    script.write_text(UNCOORDINATED)
    path = store_path(tmp_path, fmt)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    procs = [subprocess.Popen([sys.executable, str(script), str(path), fmt], env={**env, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
    computed = sum(int(o[0].decode().split()[-1]) for o in outs)
    assert N_CHUNKS <= computed <= N_CHUNKS + 2       # at most a chunk or two raced, not every chunk twice
    assert_same_store(FeatureStore.open(path), reference[fmt])
    leftovers = [p.name for p in path.parent.iterdir() if "claim" in p.name] + (
        [p.name for p in (path / "_progress").glob("*.claim")] if fmt == "zarr" else [])
    assert leftovers == []


@pytest.mark.parametrize("compression", ["lz4", "zstd", "zstd-bitshuffle", "none"])
def test_zarr_chunks_decoded_directly_equal_zarrs_own_read(tmp_path, compression):
    """A whole chunk of a store this harness wrote is decoded from its file without zarr: every
    chunk of every field (uint8, int64, float16, float32; the last chunk part-filled) equals what
    zarr itself reads, a chunk never written (all zeros) reads as zeros, and a damaged or
    truncated file is one line naming the chunk and field."""
    path = tmp_path / "s.zarr"
    zero = 3

    def chunk(i):
        out = make_chunk(i)
        return {k: np.zeros_like(v) for k, v in out.items()} if i == zero else out

    st = write_store(path, FIELDS, N, CHUNK, MANIFEST, chunk, compression=compression, progress=False)
    st.close()
    with FeatureStore.open(path) as st:
        want = "raw" if compression == "none" else "blosc"
        assert st._direct == {f.name: want for f in FIELDS}          # the direct path is the one taken
        for i in range(N_CHUNKS):
            got = st.read_chunk(i)
            for f in FIELDS:
                oracle = np.asarray(st._arrays[f.name][slice(*st.chunk_range(i))])   # zarr's own decoding
                assert got[f.name].dtype == oracle.dtype and got[f.name].shape == oracle.shape, (i, f.name)
                np.testing.assert_array_equal(got[f.name], oracle, err_msg=f"{i} {f.name}")
                assert got[f.name].flags.writeable
        assert not st._chunk_files("teachers/sort/conv4", zero).exists()
        assert not st.read_chunk(zero)["teachers/sort/conv4"].any()
    victim = path / "teachers" / "sort" / "logits" / "c" / "5" / "0" / "0"
    data = victim.read_bytes()
    for bad in (data[: len(data) // 2], np.random.default_rng(1).bytes(len(data))):
        victim.write_bytes(bad)
        with FeatureStore.open(path) as st, pytest.raises(StoreError, match=r"chunk 5, field 'teachers/sort/logits'"):
            st.read_chunk(5)


def test_a_zarr_layout_the_store_did_not_write_goes_through_zarr(tmp_path):
    """Other codecs, chunk shapes or key encodings are not decoded directly."""
    import zarr
    from zarr.codecs import ZstdCodec

    from harness.cache.store import FieldSpec, _direct_codec

    spec = FieldSpec("x", (3,), "float32")
    plain = zarr.create_array(str(tmp_path / "a"), shape=(10, 3), chunks=(5, 3), dtype="float32", fill_value=0,
                              compressors=[], chunk_key_encoding={"name": "default", "separator": "/"})
    assert _direct_codec(plain, spec, 5) == "raw"
    assert _direct_codec(plain, spec, 4) is None                      # another chunk shape
    other = [zarr.create_array(str(tmp_path / "b"), shape=(10, 3), chunks=(5, 3), dtype="float32", fill_value=0,
                               compressors=[ZstdCodec()], chunk_key_encoding={"name": "default", "separator": "/"}),
             zarr.create_array(str(tmp_path / "c"), shape=(10, 3), chunks=(5, 3), dtype="float32", fill_value=0,
                               compressors=[], chunk_key_encoding={"name": "default", "separator": "."}),
             zarr.create_array(str(tmp_path / "d"), shape=(10, 3), chunks=(5, 3), dtype="float32", fill_value=1,
                               compressors=[], chunk_key_encoding={"name": "default", "separator": "/"}),
             zarr.create_array(str(tmp_path / "e"), shape=(10, 3), chunks=(5, 3), shards=(10, 3), dtype="float32",
                               fill_value=0, compressors=[], chunk_key_encoding={"name": "default", "separator": "/"})]
    assert [_direct_codec(a, spec, 5) for a in other] == [None] * 4


def test_chunk_checksum_is_zlibs_crc32():
    """The markers of every store record zlib's crc32; the faster ISA-L one used now must give the
    same number for every array (sizes across its block boundaries, dtypes, a transposed view)."""
    import zlib

    from harness.cache import store as store_module

    assert store_module._crc32.__module__.startswith("isal")     # the fast one is the one in use
    rng = np.random.default_rng(5)
    arrays = [np.zeros(0, np.uint8), rng.integers(0, 256, 1, dtype=np.uint8)]
    arrays += [rng.standard_normal(n).astype(dt) for n in (7, 64, 1000, 4097, 400_000)
               for dt in (np.float16, np.float32, np.int64)]
    arrays.append(rng.standard_normal((33, 17)).astype(np.float32).T)
    for a in arrays:
        assert store_module.chunk_checksum(a) == zlib.crc32(np.ascontiguousarray(a).tobytes()), (a.dtype, a.shape)
