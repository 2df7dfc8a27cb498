"""Streaming, shuffled, sharded batches from a feature store with bounded memory.

One pass over a :class:`StreamingReader` is one epoch. Order: the chunks are permuted from
``(seed, epoch)``; each rank takes every ``world_size``-th of them; a background thread reads
them, ``decode_threads`` chunks at a time, and hands them over in that order (at most
``prefetch`` waiting in a queue); the consumer keeps ``shuffle_buffer`` chunks and draws every
batch uniformly from the items still in them, releasing a chunk once all its items are drawn
(a batch's rows are copied out as they are drawn). So at most
``shuffle_buffer + prefetch + decode_threads`` chunks are alive whatever the store size, and
the order (so every batch, to the bit) depends only on ``(seed, epoch, rank, world_size)``,
never on ``decode_threads``. A reader whose shuffle buffer holds all of one rank's chunks
keeps them decoded between epochs (``keep_decoded``): the memory it holds at each epoch's
start anyway, read once.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np
import torch

from harness.cache.store import FeatureStore, StoreError

_SPLITS = {"train": 0, "test": 1}
_END = object()


def default_decode_threads() -> int:
    """Chunks decoded at once by default: two where the process may use two cores. Decoding
    (file read, blosc, crc32, the finite check) runs outside the interpreter lock, so a second
    chunk decodes beside the first (docs/SPEED.md, figure 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 1


_HALF_EXPONENT = np.uint16(0x7C00)
_HALF_MAGNITUDE = np.uint16(0x7FFF)


def all_finite(arr: np.ndarray) -> bool:
    """Whether every value of a float array is finite. float16 (the stored conv4 maps) is
    checked on its bits, exponent all ones meaning Inf or NaN: numpy's isfinite has no fast
    half-float loop and took a third of the reader's time (docs/SPEED.md)."""
    if arr.dtype == np.float16:
        if arr.size == 0:
            return True
        # without the sign bit, Inf and NaN are exactly the bit patterns >= the exponent mask
        bits = np.ascontiguousarray(arr).view(np.uint16)
        return bool((bits & _HALF_MAGNITUDE).max() < _HALF_EXPONENT)
    return bool(np.isfinite(arr).all())


class StreamingReader:
    """Batches of store items as dicts of torch tensors.

    Each batch has every requested field under its own name, ``index`` (the items' positions
    in the store, int64) and ``view_index`` (int64). Fields marked ``per_view`` (views, conv4,
    logits) are delivered for the item's selected view only: ``(B, *item_shape[1:])``, e.g.
    conv4 ``(B, C, h, w)``. ``view="random"`` draws one view per item per epoch from
    ``(seed, epoch)``; an int fixes it. Dtypes are the stored ones (conv4 stays float16).

    ``split`` ("train"/"test"/0/1) keeps only items whose ``split_field`` has that value.
    ``even_batches`` makes every rank yield the same number of batches (DDP needs it; the
    surplus items of the fuller ranks are skipped that epoch). ``decode_threads`` (default
    :func:`default_decode_threads`) chunks are read and decoded at once; the batches are the
    same bits whatever it is. ``keep_decoded`` keeps every chunk decoded (and checked) across
    epochs, read once; by default on where the shuffle buffer holds all of a single rank's
    chunks (the whole split is then in memory at each epoch's start anyway). The batches are
    the same bits either way.
    """

    def __init__(
        self,
        store: FeatureStore | str | os.PathLike,
        fields: Sequence[str] | None = None,
        batch_size: int = 64,
        split: str | int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 2,
        prefetch: int = 2,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        view: str | int = "random",
        rank: int = 0,
        world_size: int = 1,
        even_batches: bool = False,
        split_field: str = "split",
        decode_threads: int | None = None,
        keep_decoded: bool | None = None,
    ):
        self.store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
        st = self.store
        if not st.is_complete():
            raise StoreError(f"{st.path}: store is incomplete ({len(st.completed_chunks())}/{st.n_chunks} chunks); "
                             f"finish writing it before reading")
        self.fields = [f.name for f in st.fields] if fields is None else list(fields)
        specs = [st.field(n) for n in self.fields]
        decode_threads = default_decode_threads() if decode_threads is None else decode_threads
        if batch_size < 1 or shuffle_buffer < 1 or prefetch < 1 or decode_threads < 1:
            raise StoreError(f"{st.path}: batch_size, shuffle_buffer, prefetch and decode_threads must be >= 1")
        self.decode_threads = int(decode_threads)
        if world_size < 1 or not 0 <= rank < world_size:
            raise StoreError(f"{st.path}: rank {rank} / world size {world_size}: need 0 <= rank < world_size")
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.shuffle_buffer, self.prefetch, self.drop_last = int(shuffle_buffer), int(prefetch), bool(drop_last)
        self.rank, self.world_size, self.even_batches = int(rank), int(world_size), bool(even_batches)
        self.device = torch.device(device)
        self.epoch = 0

        self._per_view = {s.name for s in specs if s.per_view}
        counts = {st.field(n).item_shape[0] for n in self._per_view}
        if len(counts) > 1:
            raise StoreError(f"{st.path}: per-view fields disagree on the number of views: {sorted(counts)}")
        self.num_views = counts.pop() if counts else 1
        if view != "random":
            if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or not 0 <= view < self.num_views:
                raise StoreError(f"{st.path}: view must be 'random' or an int in [0, {self.num_views}), got {view!r}")
        self.view = view

        # Which items this reader serves; kept as a bool mask (one byte per item).
        if split is None:
            self._keep = None
            per_chunk = [b - a for a, b in map(st.chunk_range, range(st.n_chunks))]
        else:
            code = _SPLITS.get(split, split) if isinstance(split, str) else split
            if code not in (0, 1):
                raise StoreError(f"{st.path}: split must be 'train', 'test', 0 or 1, got {split!r}")
            self._keep = st.read(split_field) == code
            per_chunk = [int(self._keep[a:b].sum()) for a, b in map(st.chunk_range, range(st.n_chunks))]
        self._chunk_counts = np.asarray(per_chunk, dtype=np.int64)
        self._chunks = np.flatnonzero(self._chunk_counts)
        # A shuffle buffer that holds every chunk (one rank) holds the whole split decoded at
        # each epoch's start anyway: keeping it so costs no more memory than the buffers kept
        # for decoding into, and spares every later epoch its reads and its wait to fill.
        if keep_decoded is None:
            keep_decoded = self.world_size == 1 and self.shuffle_buffer >= len(self._chunks)
        self.keep_decoded = bool(keep_decoded)
        self._decoded: dict[int, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        # Instrumentation: chunks read and not yet released (the memory bound under test).
        # Buffers of chunks drawn out, decoded into again (this epoch or the next); never more
        # sets than chunks alive at once.
        self._spare: queue.SimpleQueue = queue.SimpleQueue()
        self._alive_lock = threading.Lock()
        self.chunks_alive = 0
        self.max_chunks_alive = 0

    # -- epoch plan --------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order (and random views) the next pass follows."""
        self.epoch = int(epoch)

    def _rank_chunks(self, rank: int) -> np.ndarray:
        order = self._chunks
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 0]).permutation(order)
        return order[rank::self.world_size]

    def _n_batches(self, n: int) -> int:
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch."""
        if self.even_batches:
            return min(self._n_batches(int(self._chunk_counts[self._rank_chunks(r)].sum())) for r in range(self.world_size))
        return self._n_batches(int(self._chunk_counts[self._rank_chunks(self.rank)].sum()))

    def num_items(self) -> int:
        """Items this rank yields in the current epoch (before even_batches truncation)."""
        return int(self._chunk_counts[self._rank_chunks(self.rank)].sum())

    def views_for_epoch(self) -> np.ndarray | None:
        """The view index of every store item this epoch (independent of rank and order)."""
        if self.view != "random":
            return None
        return np.random.default_rng([self.seed, self.epoch, 1]).integers(0, self.num_views, self.store.n_items, dtype=np.int16)

    # -- iteration -----------------------------------------------------------------------------

    def _acquire(self, n: int) -> None:
        with self._alive_lock:
            self.chunks_alive += n
            self.max_chunks_alive = max(self.max_chunks_alive, self.chunks_alive)

    def _read(self, c: int, buffers: dict[str, np.ndarray]) -> tuple:
        """Chunk ``c`` read, checked and cut to this reader's items: ``(idx, data, buffers)``,
        ``buffers`` None when ``data`` are copies (the buffers are then free again)."""
        a, b = self.store.chunk_range(c)
        data = self.store.read_chunk(c, self.fields, buffers=buffers)
        self._check_finite(c, data)
        idx = np.arange(a, b, dtype=np.int64)
        if self._keep is not None:
            rows = np.flatnonzero(self._keep[a:b])
            if len(rows) < b - a:
                data = {k: v[rows] for k, v in data.items()}   # copies: the buffers are free again
                idx = idx[rows]
                self._spare.put(buffers)
                buffers = None
        return idx, data, buffers

    def _produce(self, chunks: np.ndarray, q: queue.Queue, stop: threading.Event) -> None:
        # Chunks are decoded into the buffers of chunks already drawn out (``_spare``): fresh
        # memory's first touch cost 3.5x the decoding itself and left the reader at 0.4 of a
        # plain read of the files (docs/SPEED.md, figure 4). ``decode_threads`` chunks decode
        # at once on a pool (the work is outside the interpreter lock) and are handed over in
        # the epoch's order, so the batches do not depend on how many decode together.
        width = min(self.decode_threads, max(len(chunks), 1))
        todo = [int(c) for c in chunks if int(c) not in self._decoded]
        pool = ThreadPoolExecutor(width, thread_name_prefix="store-decode") if width > 1 and len(todo) > 1 else None
        pending: collections.deque = collections.deque()   # (chunk, read started or None), in chunk order
        started = 0

        def start() -> None:
            nonlocal started
            k, started = started, started + 1
            c = int(chunks[k])
            self._acquire(1)   # a chunk being decoded holds its buffers: alive from here
            if c in self._decoded:   # kept decoded from an earlier epoch: nothing to read
                pending.append((c, None))
                return
            if k + 1 < len(chunks) and int(chunks[k + 1]) not in self._decoded:
                # the next chunk's files start loading from disk while this one decodes:
                # on a store larger than the page cache, the disk and the decoding overlap
                self.store.will_read_chunk(int(chunks[k + 1]), self.fields)
            try:
                buffers = self._spare.get_nowait()
            except queue.Empty:
                buffers = self.store.chunk_buffers(self.fields)
            pending.append((c, pool.submit(self._read, c, buffers) if pool else buffers))

        def result(c: int, read) -> tuple:
            if read is None:
                idx, data = self._decoded[c]
                return idx, data, None
            idx, data, buffers = read.result() if pool else self._read(c, read)
            if not self.keep_decoded:
                return idx, data, buffers
            self._decoded[c] = (idx, data)   # its buffers now back the kept chunk: never reused
            return idx, data, None

        try:
            while started < min(width, len(chunks)):
                start()
            while pending:
                if stop.is_set():
                    return
                c, read = pending.popleft()
                try:
                    item = result(c, read)
                except BaseException:
                    self._acquire(-1)
                    raise
                if not self._hand_over(item, q, stop):
                    self._acquire(-1)
                    return
                if started < len(chunks):
                    start()
            self._hand_over(_END, q, stop)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._hand_over(exc, q, stop)
        finally:
            # reads still running when the pass stops end before the thread does; their
            # buffers are dropped, never reused while a decoder might still write them
            if pool is not None:
                for _, f in pending:
                    if f is not None:
                        f.cancel()
                pool.shutdown(wait=True)
            self._acquire(-len(pending))

    @staticmethod
    def _hand_over(item, q: queue.Queue, stop: threading.Event) -> bool:
        """Put ``item`` unless the consumer has stopped (then False): a stopped consumer drains
        nothing more, and a producer blocked on its full queue would never exit."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _check_finite(self, chunk: int, data: dict[str, np.ndarray]) -> None:
        """A NaN or Inf in a float field is damage (teachers never write one): named by field
        and chunk, never handed to training."""
        for name, arr in data.items():
            if arr.dtype.kind == "f" and not all_finite(arr):
                n = int(arr.size - np.isfinite(arr).sum())
                raise StoreError(f"{self.store.path}: field {name!r}, chunk {chunk}: {n} non-finite values (NaN/Inf); "
                                 f"the store is damaged, rebuild it")

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        chunks = self._rank_chunks(self.rank)
        n_batches = len(self)
        views = self.views_for_epoch()
        rng = np.random.default_rng([self.seed, self.epoch, 2, self.rank, self.world_size])
        hold = self.shuffle_buffer if self.shuffle else 1
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        thread = threading.Thread(target=self._produce, args=(chunks, q, stop), daemon=True, name="store-reader")
        thread.start()
        owner = threading.current_thread()
        pool: list[_Chunk] = []
        # Chunks drawn out during the batch being built still count against the buffer when
        # deciding to read the next one (this fixes the draw order); their memory is freed at once.
        drained = 0
        exhausted = False
        try:
            for _ in range(n_batches):
                batch: dict[str, np.ndarray] | None = None
                filled = 0
                need = self.batch_size
                while need > 0:
                    while not exhausted and (len(pool) + drained < hold or not pool):
                        got = q.get()
                        if got is _END:
                            exhausted = True
                        elif isinstance(got, BaseException):
                            raise got
                        else:
                            idx, data, buffers = got
                            rest = rng.permutation(len(idx)) if self.shuffle else np.arange(len(idx))
                            pool.append(_Chunk(idx, data, rest, buffers))
                    sizes = np.array([len(c.rest) for c in pool], dtype=np.int64)
                    total = int(sizes.sum())
                    if total == 0:
                        break
                    take = min(need, total)
                    # Uniform draw without replacement over every item still in the pool.
                    pick = np.sort(rng.choice(total, take, replace=False)) if self.shuffle else np.arange(take)
                    offsets = np.concatenate([[0], np.cumsum(sizes)])
                    for c, lo, hi in zip(pool, offsets[:-1], offsets[1:]):
                        local = pick[(pick >= lo) & (pick < hi)] - lo
                        if len(local):
                            # Rows are copied out now, straight into the batch, so a drawn-out
                            # chunk is released at once and the consumer never holds more than
                            # `hold` chunks.
                            if batch is None:
                                batch = self._new_batch(c)
                            filled = self._gather_into(batch, filled, c, c.rest[local], views)
                            c.rest = np.delete(c.rest, local)
                    drawn_out = 0
                    for c in pool:
                        if len(c.rest) == 0:
                            drawn_out += 1
                            if c.buffers is not None:   # every row was copied out: reusable
                                self._spare.put(c.buffers)
                    pool = [c for c in pool if len(c.rest)]
                    self._acquire(-drawn_out)
                    drained += drawn_out
                    need -= take
                if batch is None or (self.drop_last and need > 0):
                    break
                drained = 0
                yield {k: self._to_device(v[:filled] if filled < len(v) else v) for k, v in batch.items()}
        finally:
            stop.set()
            if threading.current_thread() is not owner:
                # an abandoned pass finalised by the garbage collector in another thread (zarr's
                # own I/O thread, say): waiting here for the producer, whose read may need that
                # very thread, would deadlock; the stopped producer exits by itself
                return
            leftover = len(pool)
            pool.clear()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    leftover += isinstance(q.get(timeout=0.05), tuple)
                except queue.Empty:
                    pass
            thread.join()
            while not q.empty():
                leftover += isinstance(q.get_nowait(), tuple)
            self._acquire(-leftover)

    def _new_batch(self, chunk: "_Chunk") -> dict[str, np.ndarray]:
        """Empty arrays for a whole batch, shaped after ``chunk``'s fields (one view of each
        per-view field)."""
        out = {"index": np.empty(self.batch_size, np.int64), "view_index": np.empty(self.batch_size, np.int64)}
        for name in self.fields:
            arr = chunk.data[name]
            out[name] = np.empty((self.batch_size, *arr.shape[2 if name in self._per_view else 1:]), arr.dtype)
        return out

    def _gather_into(self, batch: dict[str, np.ndarray], at: int, chunk: "_Chunk", rows: np.ndarray,
                     views: np.ndarray | None) -> int:
        """Copy ``chunk``'s ``rows`` (at each item's view) into ``batch`` from row ``at``; the
        next free row. One copy: gathering pieces and then concatenating them took a fifth of
        the reader's time (docs/SPEED.md, figure 4)."""
        idx = chunk.idx[rows]
        end = at + len(rows)
        vidx = views[idx].astype(np.int64) if views is not None else np.full(len(idx), int(self.view), np.int64)
        batch["index"][at:end], batch["view_index"][at:end] = idx, vidx
        for name in self.fields:
            arr = chunk.data[name]
            if name in self._per_view:    # item r at view v is row r * views + v of (items x views)
                flat = arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])
                np.take(flat, rows * arr.shape[1] + vidx, axis=0, out=batch[name][at:end], mode="clip")
            else:
                np.take(arr, rows, axis=0, out=batch[name][at:end], mode="clip")
        return end

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(arr)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t if self.device.type == "cpu" else t.to(self.device)


class _Chunk:
    """A chunk held by the shuffle pool: store indices, field arrays, rows not yet drawn, and
    the buffers the arrays are views of (None when they are copies)."""

    __slots__ = ("idx", "data", "rest", "buffers")

    def __init__(self, idx: np.ndarray, data: dict[str, np.ndarray], rest: np.ndarray,
                 buffers: dict[str, np.ndarray] | None):
        self.idx, self.data, self.rest, self.buffers = idx, data, rest, buffers
