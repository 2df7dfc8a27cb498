"""Speed of the feature store: StreamingReader epochs from Zarr and HDF5 beside random-order
batches gathered from the same arrays already in RAM, and the codecs' size/speed trade-off.

Run: OMP_NUM_THREADS=1 pytest benchmarks --benchmark-only
The figures (items/s, MB/s of delivered features, ratios, sizes) are printed at the end.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from harness.cache import FeatureStore, StreamingReader, teacher_schema, write_store
from harness.cache.store import DEFAULT_COMPRESSION

# The benchmark store: 1000 items, 4 views, 2 teachers with conv4 (128, 8, 8), 101 classes,
# 64x64 frames: 144 MB as stored (conv4 float16), 275 MB if every float were float32.
N_ITEMS, VIEWS, CLASSES, SIZE, CONV4 = 1000, 4, 101, 64, (128, 8, 8)
TEACHERS = ("sort", "motion")


def teacher_like_arrays(n_items: int = N_ITEMS, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays shaped and distributed like a real cache, so compression ratios mean something.

    Frames are smooth images plus noise; each teacher's conv4 is the ReLU output of a fixed
    random two-layer conv net over K flipped/shifted views of the frame (about half zeros,
    like trained conv4 maps); logits are a random linear read-out of pooled conv4.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    low = torch.from_numpy(rng.random((n_items, 3, 8, 8), dtype=np.float32))
    img = torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    img = (img + 0.05 * torch.randn_like(img)).clamp(0, 1)
    frames = (img.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    shifts = rng.integers(-6, 7, (VIEWS, 2))
    flips = rng.integers(0, 2, VIEWS)
    views = np.zeros((n_items, VIEWS, 5), np.float32)
    views[:, :, :2] = rng.random((n_items, VIEWS, 2)) * 0.2
    views[:, :, 2:4] = 0.8
    views[:, :, 4] = flips
    out = {"frames": frames, "views": views}
    c, h, w = CONV4
    with torch.no_grad():
        for t in TEACHERS:
            net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 5, stride=2, padding=2), torch.nn.ReLU(),
                torch.nn.Conv2d(16, c, 3, stride=4, padding=1), torch.nn.ReLU(),
            )
            head = torch.randn(c, CLASSES) / c**0.5
            conv4 = np.empty((n_items, VIEWS, c, h, w), np.float16)
            logits = np.empty((n_items, VIEWS, CLASSES), np.float32)
            for k in range(VIEWS):
                x = torch.roll(img, shifts=tuple(int(s) for s in shifts[k]), dims=(2, 3))
                x = torch.flip(x, dims=(3,)) if flips[k] else x
                for a in range(0, n_items, 250):
                    f = net(x[a:a + 250] - 0.5)
                    f = f / f.std()
                    conv4[a:a + 250, k] = f.half().numpy()
                    logits[a:a + 250, k] = (f.mean((2, 3)) @ head).numpy()
            out[f"teachers/{t}/conv4"] = conv4
            out[f"teachers/{t}/logits"] = logits
    out["video"] = np.arange(n_items, dtype=np.int64) // 25
    out["frame"] = np.arange(n_items, dtype=np.int64) % 25
    out["label"] = (out["video"] % CLASSES).astype(np.int64)
    out["split"] = (rng.random(n_items) < 0.3).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def teacher_arrays():
    return teacher_like_arrays()


FIELDS = teacher_schema(SIZE, VIEWS, {t: CONV4 for t in TEACHERS}, CLASSES)
CHUNK = 64
BATCH = 64
# What the distillation runner asks for each step.
DELIVER = ["frames", "views", "label"] + [f"teachers/{t}/{k}" for t in TEACHERS for k in ("conv4", "logits")]
PER_VIEW = {f.name for f in FIELDS if f.per_view}
RESULTS: dict[str, float] = {}


def _build(path, arrays, fmt, compression):
    t0 = time.perf_counter()
    store = write_store(path, FIELDS, N_ITEMS, CHUNK, {"bench": True},
                        lambda i: {k: v[i * CHUNK:(i + 1) * CHUNK] for k, v in arrays.items()},
                        format=fmt, compression=compression, progress=False)
    return store, time.perf_counter() - t0


@pytest.fixture(scope="module")
def stores(tmp_path_factory, teacher_arrays, report_lines):
    """``stores(fmt, compression)``: the benchmark store in that codec, built once (timed)."""
    root = tmp_path_factory.mktemp("bench")
    built = {}

    def get(fmt, compression):
        if (fmt, compression) not in built:
            store, seconds = _build(root / f"{compression}.{fmt}", teacher_arrays, fmt, compression)
            built[fmt, compression] = (FeatureStore.open(store.path), seconds)
            if compression == DEFAULT_COMPRESSION[fmt]:
                stored = sum(store.stored_bytes().values())
                raw = sum(store.raw_bytes().values())
                raw32 = sum(N_ITEMS * int(np.prod(f.item_shape)) * (4 if f.dtype.startswith("float") else np.dtype(f.dtype).itemsize)
                            for f in FIELDS)
                report_lines.append(f"size on disk [{fmt}, {compression}, default]: {stored / 1e6:.1f} MB; as-stored dtypes raw "
                                    f"{raw / 1e6:.1f} MB; all-float32 raw {raw32 / 1e6:.1f} MB; disk/float32 = {stored / raw32:.3f}")
        return built[fmt, compression]

    return get


def _delivered(batch) -> int:
    return sum(v.nbytes if hasattr(v, "nbytes") else v.numel() * v.element_size()
               for k, v in batch.items() if k in DELIVER)


def _numpy_epoch(arrays, seed=0):
    """The in-RAM baseline: random permutation, random view per item, fancy-index gathers."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(N_ITEMS)
    views = rng.integers(0, VIEWS, N_ITEMS)
    nbytes = 0
    for a in range(0, N_ITEMS, BATCH):
        idx = order[a:a + BATCH]
        v = views[idx]
        batch = {k: torch.from_numpy(arrays[k][idx, v] if k in PER_VIEW else arrays[k][idx]) for k in DELIVER}
        nbytes += _delivered(batch)
    return nbytes


def _reader_epoch(store):
    nbytes = 0
    for batch in StreamingReader(store, fields=DELIVER, batch_size=BATCH, seed=0, shuffle_buffer=2, prefetch=2):
        nbytes += _delivered(batch)
    return nbytes


def _report(name, benchmark, nbytes, lines):
    mean = benchmark.stats.stats.mean
    RESULTS[name] = mean
    line = f"{name}: {N_ITEMS / mean:,.0f} items/s, {nbytes / mean / 1e6:,.0f} MB/s delivered ({nbytes / 1e6:.1f} MB per epoch)"
    if name != "numpy-in-RAM" and "numpy-in-RAM" in RESULTS:
        line += f"; {mean / RESULTS['numpy-in-RAM']:.1f}x the in-RAM time"
    lines.append(line)


def test_bench_numpy_in_memory(benchmark, teacher_arrays, report_lines):
    nbytes = benchmark.pedantic(_numpy_epoch, args=(teacher_arrays,), rounds=5, iterations=1, warmup_rounds=1)
    _report("numpy-in-RAM", benchmark, nbytes, report_lines)


@pytest.mark.parametrize("fmt,compression", [("zarr", "lz4"), ("zarr", "zstd"), ("hdf5", "none"), ("hdf5", "lzf")])
def test_bench_streaming_reader(benchmark, stores, fmt, compression, report_lines):
    store, _ = stores(fmt, compression)
    nbytes = benchmark.pedantic(_reader_epoch, args=(store,), rounds=3, iterations=1, warmup_rounds=1)
    _report(f"StreamingReader-{fmt}/{compression}", benchmark, nbytes, report_lines)


CODECS = [("zarr", "none"), ("zarr", "lz4"), ("zarr", "zstd"), ("zarr", "zstd-bitshuffle"),
          ("hdf5", "none"), ("hdf5", "lzf"), ("hdf5", "gzip")]


@pytest.mark.parametrize("fmt,compression", CODECS)
def test_bench_codec(benchmark, stores, fmt, compression, report_lines):
    """Write once (timed), then time a full read of every field; report size per field group."""
    store, write_s = stores(fmt, compression)

    def read_all():
        for i in range(store.n_chunks):
            store.read_chunk(i)

    benchmark.pedantic(read_all, rounds=2, iterations=1, warmup_rounds=0)
    stored, raw = store.stored_bytes(), store.raw_bytes()
    conv = [n for n in stored if n.endswith("conv4")]
    ratio = lambda names: sum(stored[n] for n in names) / sum(raw[n] for n in names)  # noqa: E731
    total_raw = sum(raw.values())
    report_lines.append(
        f"codec {fmt}/{compression}: stored/raw total {ratio(list(stored)):.3f}, conv4 {ratio(conv):.3f}, "
        f"frames {ratio(['frames']):.3f}, logits {ratio([n for n in stored if n.endswith('logits')]):.3f}; "
        f"write {total_raw / write_s / 1e6:,.0f} MB/s, read {total_raw / benchmark.stats.stats.mean / 1e6:,.0f} MB/s (raw bytes)"
    )
