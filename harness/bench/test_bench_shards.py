"""Figure 9: the paper-scale store's layout, measured. One paper-shaped field (a VGG teacher's
conv4, 2 views x 256 x 13 x 13 float16, 173,056 bytes an item) written twice to this disk,
at least 4 GB each: unsharded (one file per chunk of ``CHUNK`` items, the store's layout) and
with Zarr v3's sharding codec (``SHARD_CHUNKS`` chunks of ``CHUNK`` items in one file, each
chunk still compressed and readable on its own). Read back chunk by chunk in a shuffled order,
as the streaming reader does, from the page cache (warm) and after evicting the files from it
(cold: ``posix_fadvise(DONTNEED)``, which a process may do to its own files).

    HARNESS_BENCH_LARGE=1 pytest benchmarks/test_bench_shards.py --benchmark-only

Skipped unless ``HARNESS_BENCH_LARGE=1``: it writes about 9 GB and takes minutes.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import speed_setup as S  # noqa: E402

LARGE = os.environ.get("HARNESS_BENCH_LARGE") == "1"
ITEM_SHAPE = (2, 256, 13, 13)                     # conv4 of one VGG teacher at the paper preset, float16
ITEM_BYTES = int(np.prod(ITEM_SHAPE)) * 2
CHUNK = 38                                        # the writer's default chunk at the paper preset (~32 MB an item row)
SHARD_CHUNKS = 16                                 # chunks per shard file
N_ITEMS = -(-(4 << 30) // ITEM_BYTES // (CHUNK * SHARD_CHUNKS)) * CHUNK * SHARD_CHUNKS   # >= 4 GiB, whole shards

pytestmark = pytest.mark.skipif(not LARGE, reason="writes about 9 GB; HARNESS_BENCH_LARGE=1 runs it")


def _write(path: Path, sharded: bool) -> float:
    """Write the field with random contents (incompressible, as float16 features nearly are);
    the seconds it took."""
    import zarr

    from harness.cache.store import _zarr_compressors

    shape = (N_ITEMS, *ITEM_SHAPE)
    chunks = (CHUNK, *ITEM_SHAPE)
    compressors = _zarr_compressors("lz4", np.dtype("float16"))
    kwargs = dict(shape=shape, dtype="float16", compressors=compressors, fill_value=0,
                  chunk_key_encoding={"name": "default", "separator": "/"})
    if sharded:
        arr = zarr.create_array(str(path), chunks=chunks, shards=(CHUNK * SHARD_CHUNKS, *ITEM_SHAPE), **kwargs)
        step = CHUNK * SHARD_CHUNKS   # a shard is written whole (a partial write would rewrite it)
    else:
        arr = zarr.create_array(str(path), chunks=chunks, **kwargs)
        step = CHUNK
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for a in range(0, N_ITEMS, step):
        n = min(step, N_ITEMS - a)
        arr[a:a + n] = rng.standard_normal((n, *ITEM_SHAPE), dtype=np.float32).astype(np.float16)
    return time.perf_counter() - t0


def _read_shuffled(path: Path, seed: int) -> int:
    """Every chunk once, in a shuffled order; the bytes delivered."""
    import zarr

    arr = zarr.open_array(str(path), mode="r")
    order = np.random.default_rng(seed).permutation(-(-N_ITEMS // CHUNK))
    total = 0
    for i in order:
        total += np.asarray(arr[i * CHUNK:(i + 1) * CHUNK]).nbytes
    return total


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = Path(os.environ.get("HARNESS_BENCH_DIR") or tmp_path_factory.mktemp("shards"))
    paths = {"unsharded": root / "unsharded.zarr", "sharded": root / "sharded.zarr"}
    seconds = {k: _write(p, k == "sharded") for k, p in paths.items()}
    yield paths, seconds
    for p in paths.values():
        shutil.rmtree(p, ignore_errors=True)


def _files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def test_fig9_sharded_vs_unsharded_read(benchmark, layouts, speed_summary):
    from test_bench_speed import _record

    paths, write_s = layouts
    nbytes = N_ITEMS * ITEM_BYTES
    warm = S.interleaved({k: (lambda p=p: _read_shuffled(p, 0)) for k, p in paths.items()}, rounds=2, warmup=1)
    cold = {k: [] for k in paths}
    for r in range(2):   # cold: evict, then read, alternating the layouts
        for k, p in (list(paths.items()) if r % 2 == 0 else list(paths.items())[::-1]):
            S.evict(p)
            t0 = time.perf_counter()
            _read_shuffled(p, r + 1)
            cold[k].append(time.perf_counter() - t0)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    mbs = {f"{k} {w}": nbytes / S.median(t[k]) / 1e6 for w, t in (("warm", warm), ("cold", cold)) for k in paths}
    benchmark.extra_info.update({"MB/s": mbs, "write_s": write_s, "bytes": nbytes,
                                 "files": {k: _files(p) for k, p in paths.items()}})
    detail = (f"{nbytes / 1e9:.2f} GB each, {N_ITEMS} items; warm {mbs['sharded warm']:.0f} vs "
              f"{mbs['unsharded warm']:.0f} MB/s, cold {mbs['sharded cold']:.0f} vs {mbs['unsharded cold']:.0f} MB/s; "
              f"files {_files(paths['sharded'])} vs {_files(paths['unsharded'])}; "
              f"write {write_s['sharded']:.0f} vs {write_s['unsharded']:.0f} s")
    _record(speed_summary, benchmark, 9, "sharded / unsharded read MB/s (paper conv4, cold)",
            S.median(cold["unsharded"]) / S.median(cold["sharded"]), None, detail)
    _record(speed_summary, benchmark, 9, "sharded / unsharded read MB/s (paper conv4, warm)",
            S.median(warm["unsharded"]) / S.median(warm["sharded"]), None, detail)
