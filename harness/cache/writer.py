"""Resumable, multi-process writing of a feature store, one chunk at a time.

``write_store`` is what ``cache-teachers`` calls: every process (one per GPU under torchrun,
or a single one) calls it with the same arguments; each takes the chunks ``rank, rank +
world_size, ...`` that are not yet marked done, produces and writes them, and returns. A
killed run is resumed by calling it again: finished chunks are skipped. Processes started
without ranks on one store share the work too: each chunk is claimed before it is computed
(``claim_chunk``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.dist import dist_env
from harness.cache.store import DEFAULT_IGNORE_KEYS, FeatureStore, FieldSpec, HDF5Store, StoreError
from harness.errors import naming_write_errors


def world_from_env(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the arguments when given, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""

    if rank is None or world_size is None:
        env_rank, env_world, _ = dist_env()
        rank = env_rank if rank is None else rank
        world_size = env_world if world_size is None else world_size
    rank, world = int(rank), int(world_size)
    if world < 1 or not 0 <= rank < world:
        raise StoreError(f"rank {rank} / world size {world}: need 0 <= rank < world_size")
    return rank, world


def owned_chunks(n_chunks: int, rank: int, world_size: int) -> list[int]:
    """The chunks one process writes: a stride, so the ranks' sets are disjoint and cover all,
    and slow regions of the dataset (long videos) are spread over every rank."""
    return list(range(rank, n_chunks, world_size))


def write_store(
    path: str | os.PathLike,
    fields: Sequence[FieldSpec],
    n_items: int,
    chunk_items: int,
    manifest: Mapping[str, Any],
    produce_chunk: Callable[[int], Mapping[str, Any]],
    format: str = "zarr",
    compression: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    ignore_keys: Iterable[str] = DEFAULT_IGNORE_KEYS,
) -> FeatureStore:
    """Create or resume the store at ``path`` and write this process's missing chunks.

    ``produce_chunk(i)`` returns ``{field: array}`` for items ``[i * chunk_items,
    min((i + 1) * chunk_items, n_items))``. An existing store with another manifest or layout
    raises :class:`~harness.cache.store.ManifestMismatch`. For HDF5, whichever process
    finishes the last chunk merges the parts into the single file. Returns the store (opened
    for writing); ``store.is_complete()`` tells whether the other ranks are done too.
    """
    from tqdm import tqdm

    rank, world_size = world_from_env(rank, world_size)
    store = FeatureStore.create(path, fields, n_items, chunk_items, manifest, format=format,
                                compression=compression, ignore_keys=ignore_keys)
    mine = owned_chunks(store.n_chunks, rank, world_size)
    done = set(store.completed_chunks())
    todo = [i for i in mine if i not in done]
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), disable=not progress, unit="chunk",
               desc=f"cache {Path(path).name}" + (f" rank {rank}/{world_size}" if world_size > 1 else ""))
    others = []   # chunks another live process claimed first: it writes them
    try:
        for i in todo:
            if _written(store, i):   # by another writer since this one listed the chunks
                bar.update(1)
                continue
            with claim_chunk(store, i) as mine_now:
                if not mine_now:
                    others.append(i)
                    continue
                if not _written(store, i):   # written between the check and the claim
                    store.write_chunk(i, produce_chunk(i))
            bar.update(1)
    finally:
        bar.close()
    for i in others:   # a claimant that died leaves its claim stale: take the chunk over
        while not _written(store, i):
            with claim_chunk(store, i) as mine_now:
                if mine_now and not _written(store, i):
                    store.write_chunk(i, produce_chunk(i))
                    break
            time.sleep(0.2)
    if isinstance(store, HDF5Store) and not store.finalized:
        store.finalize()
    return store


def _written(store: FeatureStore, i: int) -> bool:
    """Chunk ``i`` is marked done (an HDF5 store merged by another writer has every chunk)."""
    return i in set(store.completed_chunks())


@contextlib.contextmanager
def claim_chunk(store: FeatureStore, i: int):
    """Claim chunk ``i`` before computing it, so uncoordinated writers of one store share
    the work: yields True when this process holds the claim (created atomically, removed on
    exit), False while another live process on this machine holds it. A claim whose process
    has died is stale and taken over."""
    folder = store.claims_dir
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / f"chunk_{i:06d}.claim"
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _claimant_alive(claim):
                yield False
                return
            with contextlib.suppress(OSError):
                claim.unlink()   # stale: its process is gone
            continue
        try:
            with naming_write_errors(claim), os.fdopen(fd, "w") as fh:
                fh.write(me)
        except BaseException:
            claim.unlink(missing_ok=True)   # half a claim would block the chunk until it went stale
            raise
        try:
            yield True
        finally:
            with contextlib.suppress(OSError):
                claim.unlink()
        return
    yield False


def _claimant_alive(claim: Path) -> bool:
    try:
        host, pid = claim.read_text().split()
    except (OSError, ValueError):
        return True   # being written this instant: treat as held
    if host != socket.gethostname():
        return True   # another machine's process: cannot be checked, assume alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True
