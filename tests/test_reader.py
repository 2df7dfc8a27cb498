"""StreamingReader: coverage per epoch, determinism, per-view gathering, sharding, bounded
memory and clean shutdown. Oracles: the arrays the test wrote, counted with numpy."""

import threading
from collections import Counter

import numpy as np
import pytest
import torch

from harness.cache import FeatureStore, StoreError, StreamingReader, teacher_schema, write_store

N, CHUNK, K, NC = 203, 10, 3, 6  # 21 chunks, the last one short
FIELDS = teacher_schema(4, K, {"sort": (3, 2, 2), "track": (2, 1, 1)}, NC)


def make_arrays():
    rng = np.random.default_rng(5)
    data = {}
    for f in FIELDS:
        shape = (N, *f.item_shape)
        data[f.name] = (rng.integers(0, 256, shape).astype(np.uint8) if f.dtype == "uint8"
                        else rng.standard_normal(shape).astype(f.dtype) if f.dtype.startswith("float")
                        else rng.integers(0, 100, shape))
    data["video"] = np.arange(N) // 7
    data["split"] = (rng.random(N) < 0.3).astype(np.uint8)
    return data


DATA = make_arrays()


@pytest.fixture(scope="module", params=["zarr", "hdf5"])
def store(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / ("s.zarr" if request.param == "zarr" else "s.h5")
    write_store(path, FIELDS, N, CHUNK, {"m": 1},
                lambda i: {k: v[i * CHUNK:(i + 1) * CHUNK] for k, v in DATA.items()},
                format=request.param, progress=False)
    return FeatureStore.open(path)


def epoch_indices(reader):
    return [b["index"].numpy() for b in reader]


def test_epoch_visits_every_item_exactly_once(store):
    reader = StreamingReader(store, batch_size=16, seed=1)
    batches = epoch_indices(reader)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(N))
    assert [len(b) for b in batches] == [16] * (N // 16) + [N % 16]
    assert len(reader) == len(batches) == -(-N // 16)
    assert not np.array_equal(flat, np.arange(N))  # it is shuffled


def test_drop_last_drops_only_the_remainder(store):
    reader = StreamingReader(store, batch_size=16, seed=1, drop_last=True)
    batches = epoch_indices(reader)
    assert len(batches) == len(reader) == N // 16 and all(len(b) == 16 for b in batches)
    flat = np.concatenate(batches)
    assert len(set(flat.tolist())) == len(flat) == (N // 16) * 16


@pytest.mark.parametrize("split,code", [("train", 0), ("test", 1), (1, 1)])
def test_split_filter_keeps_exactly_that_split(store, split, code):
    reader = StreamingReader(store, batch_size=8, split=split, seed=2)
    flat = np.concatenate(epoch_indices(reader))
    want = np.flatnonzero(DATA["split"] == code)
    assert sorted(flat.tolist()) == want.tolist()
    assert reader.num_items() == len(want)


@pytest.mark.parametrize("split", [None, "train"])
def test_two_ranks_partition_the_items(store, split):
    seen = []
    for rank in range(2):
        reader = StreamingReader(store, batch_size=8, split=split, seed=3, rank=rank, world_size=2)
        reader.set_epoch(4)
        seen.append(np.concatenate(epoch_indices(reader)))
    assert not set(seen[0]) & set(seen[1])
    want = np.arange(N) if split is None else np.flatnonzero(DATA["split"] == 0)
    assert sorted(np.concatenate(seen).tolist()) == want.tolist()


def test_even_batches_gives_every_rank_the_same_count(store):
    lens = []
    for rank in range(3):
        reader = StreamingReader(store, batch_size=8, split="test", seed=3, rank=rank, world_size=3, even_batches=True)
        got = epoch_indices(reader)
        assert len(got) == len(reader)
        lens.append(len(got))
    assert len(set(lens)) == 1


def test_order_depends_only_on_seed_and_epoch(store):
    def order(seed, epoch, **kw):
        r = StreamingReader(store, batch_size=16, seed=seed, **kw)
        r.set_epoch(epoch)
        return np.concatenate(epoch_indices(r))

    a = order(0, 0)
    np.testing.assert_array_equal(a, order(0, 0))  # a fresh reader, same order
    np.testing.assert_array_equal(a, order(0, 0, prefetch=1, shuffle_buffer=2))  # prefetch does not change it
    assert not np.array_equal(a, order(0, 1))
    assert not np.array_equal(a, order(1, 0))
    reader = StreamingReader(store, batch_size=16, seed=0)
    first = np.concatenate(epoch_indices(reader))
    np.testing.assert_array_equal(first, np.concatenate(epoch_indices(reader)))  # no hidden state
    unshuffled = np.concatenate(epoch_indices(StreamingReader(store, batch_size=16, shuffle=False)))
    np.testing.assert_array_equal(unshuffled, np.arange(N))


def test_per_view_fields_are_gathered_at_each_items_view(store):
    reader = StreamingReader(store, batch_size=32, seed=7)
    views_seen = []
    for b in reader:
        idx, v = b["index"].numpy(), b["view_index"].numpy()
        views_seen.append(v)
        for name in ("teachers/sort/conv4", "teachers/track/logits", "views"):
            assert b[name].dtype == torch.from_numpy(DATA[name][:1]).dtype
            np.testing.assert_array_equal(b[name].numpy(), DATA[name][idx, v])
        assert b["teachers/sort/conv4"].shape[1:] == (3, 2, 2) and b["teachers/sort/conv4"].dtype == torch.float16
        for name in ("frames", "label", "video"):
            np.testing.assert_array_equal(b[name].numpy(), DATA[name][idx])
    counts = Counter(np.concatenate(views_seen).tolist())
    assert set(counts) == set(range(K)) and min(counts.values()) > N / K / 2  # roughly uniform
    # views per item change with the epoch, stay put for the same epoch
    v0 = reader.views_for_epoch()
    reader.set_epoch(1)
    assert not np.array_equal(v0, reader.views_for_epoch())
    fixed = StreamingReader(store, fields=["teachers/sort/logits"], batch_size=50, view=2, shuffle=False)
    b = next(iter(fixed))
    assert (b["view_index"] == 2).all()
    np.testing.assert_array_equal(b["teachers/sort/logits"].numpy(), DATA["teachers/sort/logits"][:50, 2])


@pytest.mark.parametrize("split, batch", [(None, 32), (None, 1), ("train", 7)])
def test_reused_chunk_buffers_never_change_a_batch_already_delivered(store, split, batch, monkeypatch):
    """Chunks are decoded into the buffers of chunks already drawn out, across epochs. Every batch
    of three epochs is kept as delivered (no copy) and checked only at the end against the
    written arrays: a batch that shared memory with a reused buffer would have been overwritten.
    Single-item batches keep one chunk's rows in one piece; a split leaves chunks part-filtered."""
    allocated = []
    real = store.chunk_buffers
    monkeypatch.setattr(store, "chunk_buffers", lambda names: allocated.append(1) or real(names))
    reader = StreamingReader(store, batch_size=batch, seed=4, shuffle_buffer=2, prefetch=1, split=split)
    kept = []
    for epoch in range(3):
        reader.set_epoch(epoch)
        kept += list(reader)
    if split is None:
        # chunk buffers come back: far fewer sets than chunks read (3 epochs x 21 chunks)
        assert len(allocated) <= 2 + 1 + 2
    for b in kept:
        idx, v = b["index"].numpy(), b["view_index"].numpy()
        for name in ("teachers/sort/conv4", "teachers/track/logits", "views"):
            np.testing.assert_array_equal(b[name].numpy(), DATA[name][idx, v], err_msg=name)
        for name in ("frames", "label", "video"):
            np.testing.assert_array_equal(b[name].numpy(), DATA[name][idx], err_msg=name)


def reader_threads():
    """The reader's producer and its decoding pool, while any is alive."""
    return [t for t in threading.enumerate() if t.name == "store-reader" or t.name.startswith("store-decode")]


@pytest.mark.parametrize("buffer,prefetch,decoders", [(1, 1, 1), (2, 2, 1), (4, 1, 1), (1, 1, 2), (2, 2, 3)])
def test_memory_is_bounded_in_chunks(store, buffer, prefetch, decoders):
    reader = StreamingReader(store, batch_size=4, shuffle_buffer=buffer, prefetch=prefetch, seed=0,
                             decode_threads=decoders)
    peak = 0
    for _ in reader:
        peak = max(peak, reader.chunks_alive)
    assert reader.max_chunks_alive <= buffer + prefetch + decoders < store.n_chunks
    assert reader.max_chunks_alive >= buffer  # the counter does count
    assert reader.chunks_alive == 0 and not reader_threads()


@pytest.mark.parametrize("split", [None, "train"])
def test_batches_are_the_same_bits_whatever_the_decode_threads(store, split):
    """Chunks decoded several at once are handed over in the epoch's order: every batch of
    three epochs (random views, shuffled; a split, whose chunks are cut to its items) equals
    the one-thread reader's, and each chunk is decoded once per epoch."""
    def epochs(decoders):
        reader = StreamingReader(store, batch_size=5, split=split, seed=7, shuffle_buffer=2, prefetch=1,
                                 decode_threads=decoders)
        out = []
        for e in range(3):
            reader.set_epoch(e)
            out += [{k: v.numpy().copy() for k, v in b.items()} for b in reader]
        assert reader.chunks_alive == 0
        return out

    one = epochs(1)
    for decoders in (2, 3, 8):
        many = epochs(decoders)
        assert len(many) == len(one)
        for a, b in zip(one, many):
            assert a.keys() == b.keys()
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{decoders} threads, field {k}")
    assert not reader_threads()


@pytest.mark.parametrize("split", [None, "train"])
def test_chunks_kept_decoded_give_the_same_batches_and_are_read_once(store, monkeypatch, split):
    """A shuffle buffer holding every chunk keeps them decoded across epochs by default: three
    epochs give the batches of a reader that reads every epoch, to the bit, and each chunk is
    read once instead of once per epoch. Several ranks, or a smaller buffer, read every epoch."""
    real = store.read_chunk
    reads = []
    monkeypatch.setattr(store, "read_chunk", lambda i, *a, **kw: (reads.append(i), real(i, *a, **kw))[1])

    def epochs(**kw):
        reads.clear()
        reader = StreamingReader(store, batch_size=5, split=split, seed=4, prefetch=1, **kw)
        out = []
        for e in range(3):
            reader.set_epoch(e)
            out += [{k: v.numpy().copy() for k, v in b.items()} for b in reader]
        assert reader.chunks_alive == 0
        return reader, out, sorted(reads)

    everything = store.n_chunks
    kept, a, reads_kept = epochs(shuffle_buffer=everything)
    fresh, b, reads_fresh = epochs(shuffle_buffer=everything, keep_decoded=False)
    assert kept.keep_decoded and not fresh.keep_decoded
    chunks = sorted(int(c) for c in kept._chunks)
    assert reads_kept == chunks and reads_fresh == sorted(chunks * 3)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    # kept by request beside a small buffer: chunks drawn out early must not lend their memory
    # to the chunks decoded after them
    small, c, reads_small = epochs(shuffle_buffer=1, keep_decoded=True)
    assert reads_small == chunks and len(c) == len(epochs(shuffle_buffer=1)[1])
    for x, y in zip(c, epochs(shuffle_buffer=1, keep_decoded=False)[1]):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    assert not StreamingReader(store, shuffle_buffer=everything - 1).keep_decoded
    assert not StreamingReader(store, shuffle_buffer=everything, rank=0, world_size=2).keep_decoded
    assert not reader_threads()


def test_chunks_decode_at_the_same_time(store, monkeypatch):
    """With two decode threads a second chunk's read starts while the first is still running
    (a read waits until it sees a second one start); one thread reads them one after another
    (its reads, which could never see a second, do not wait)."""
    real = store.read_chunk
    lock = threading.Lock()
    running, overlap = [0], [0]
    second_started = threading.Event()
    wait = [0.0]

    def watched(i, *a, **kw):
        with lock:
            running[0] += 1
            overlap[0] = max(overlap[0], running[0])
            if running[0] > 1:
                second_started.set()
        second_started.wait(wait[0])
        try:
            return real(i, *a, **kw)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(store, "read_chunk", watched)
    for decoders, want in ((1, 1), (2, 2)):
        overlap[0] = 0
        second_started.clear()
        wait[0] = 0.0 if decoders == 1 else 5.0
        list(StreamingReader(store, batch_size=8, decode_threads=decoders))
        assert overlap[0] == want
    assert not reader_threads()


def test_abandoned_iteration_stops_the_thread(store):
    reader = StreamingReader(store, batch_size=4, prefetch=3)
    it = iter(reader)
    next(it)
    next(it)
    it.close()  # what a `break` out of a for loop does
    assert not reader_threads()
    assert reader.chunks_alive == 0


def test_a_pass_finalised_in_another_thread_does_not_wait_for_its_reads(store, monkeypatch):
    """An abandoned pass may be finalised by the garbage collector in any thread, zarr's own I/O
    thread among them, while the producer's read waits on that thread: closing must then not
    wait for the producer (it would never return). Its owner still stops it cleanly."""
    # a shuffle buffer of one chunk: the first batch needs only the first read, so the second is
    # the one blocked while the pass is closed (with two, the first batch itself waited for it)
    reader = StreamingReader(store, batch_size=4, prefetch=1, shuffle_buffer=1)
    release = threading.Event()
    real = reader.store.read_chunk
    calls = []

    def slow(i, names=None, **kwargs):
        calls.append(i)
        if len(calls) > 1:          # the second read blocks until released
            release.wait(10)
        return real(i, names, **kwargs)

    monkeypatch.setattr(reader.store, "read_chunk", slow)
    it = iter(reader)
    next(it)
    closer = threading.Thread(target=it.close)
    closer.start()
    closer.join(2)
    closed_in_time = not closer.is_alive()
    release.set()
    closer.join()
    assert closed_in_time
    for t in reader_threads():      # the stopped producer exits by itself once its read returns
        t.join(5)
    assert not reader_threads()


def test_errors_in_the_reading_thread_reach_the_caller(store, monkeypatch):
    reader = StreamingReader(store, batch_size=4)

    def broken(i, names=None, **kwargs):
        raise OSError(f"disk gone at chunk {i}")

    monkeypatch.setattr(reader.store, "read_chunk", broken)
    with pytest.raises(OSError, match="disk gone"):
        list(reader)
    assert not reader_threads()


def test_bad_arguments(store):
    with pytest.raises(StoreError, match="view must be 'random' or an int in \\[0, 3\\)"):
        StreamingReader(store, view=3)
    with pytest.raises(StoreError, match="split must be"):
        StreamingReader(store, split="val")
    with pytest.raises(StoreError, match="rank 2 / world size 2"):
        StreamingReader(store, rank=2, world_size=2)
    with pytest.raises(StoreError, match="no field 'nope'"):
        StreamingReader(store, fields=["nope"])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_agrees_with_isfinite_on_every_special_value(dtype):
    from harness.cache.reader import all_finite

    info = np.finfo(dtype)
    finite = np.array([0.0, -0.0, info.max, -info.max, info.tiny, info.smallest_subnormal, 1.5], dtype)
    assert all_finite(finite) and all_finite(finite.reshape(7, 1)[::2])   # non-contiguous too
    for bad in (np.inf, -np.inf, np.nan):
        arr = np.broadcast_to(finite, (3, 7)).copy()
        arr[2, 4] = bad
        assert not all_finite(arr) and not np.isfinite(arr).all()


def test_all_finite_agrees_with_isfinite_on_every_half_float():
    """All 65,536 float16 bit patterns, one at a time among finite values, and the empty array."""
    from harness.cache.reader import all_finite

    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    want = np.isfinite(every)
    got = [all_finite(np.array([1.0, every[i], -2.0], np.float16)) for i in range(len(every))]
    np.testing.assert_array_equal(np.array(got), want)
    assert all_finite(np.zeros(0, np.float16))


def test_the_reader_hints_each_next_chunk_before_decoding_the_current_one(store, monkeypatch):
    """While chunk k decodes, chunk k+1 of the epoch's order (this rank's share) is announced to
    the store (``will_read_chunk``), so its files load from disk meanwhile; the last chunk
    announces nothing."""
    events = []
    monkeypatch.setattr(store, "will_read_chunk", lambda i, names: events.append(("hint", i, tuple(names))))
    read = store.read_chunk
    monkeypatch.setattr(store, "read_chunk", lambda i, *a, **kw: (events.append(("read", i)), read(i, *a, **kw))[1])
    fields = ["label", "teachers/sort/conv4"]
    for decoders in (1, 2):
        events.clear()
        reader = StreamingReader(store, fields, batch_size=16, seed=3, rank=1, world_size=2, decode_threads=decoders)
        reader.set_epoch(2)
        epoch_indices(reader)
        order = [int(c) for c in reader._rank_chunks(1)]
        if decoders == 1:   # one at a time: hint the next, read this one
            expected = []
            for k, c in enumerate(order):
                if k + 1 < len(order):
                    expected.append(("hint", order[k + 1], tuple(fields)))
                expected.append(("read", c))
            assert events == expected
        else:               # several decoders: each next chunk still hinted before this one's read starts
            assert sorted(e for e in events if e[0] == "read") == sorted(("read", c) for c in order)
            assert [e for e in events if e[0] == "hint"] == [("hint", c, tuple(fields)) for c in order[1:]]
            for k in range(len(order) - 1):
                assert events.index(("hint", order[k + 1], tuple(fields))) < events.index(("read", order[k]))


def test_will_read_chunk_asks_the_kernel_for_that_chunks_files(store, monkeypatch):
    """Local Zarr: one posix_fadvise(WILLNEED) per requested field's chunk file; a chunk
    never written (no file) is skipped quietly. HDF5 has nothing to hint."""
    import os

    advised = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        advised.append((os.readlink(f"/proc/self/fd/{fd}"), advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    fields = ["label", "teachers/track/conv4"]
    store.will_read_chunk(4, fields)
    if store.format == "hdf5":
        assert advised == []
        return
    want = sorted(str(store._chunk_files(n, 4).resolve()) for n in fields)
    assert sorted(p for p, _ in advised) == want
    assert {a for _, a in advised} == {os.POSIX_FADV_WILLNEED}
    advised.clear()
    store.will_read_chunk(10_000, fields)   # no such files
    assert advised == []
