"""Resumable, multi-process writing of a feature store, one chunk at a time.

``write_store`` is what ``cache-teachers`` calls: every process (one per GPU under torchrun,
or a single one) calls it with the same arguments; each takes the chunks ``rank, rank +
world_size, ...`` that are not yet marked done, produces and writes them, and returns. A
killed run is resumed by calling it again: finished chunks are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.dist import dist_env
from harness.cache.store import DEFAULT_IGNORE_KEYS, FeatureStore, FieldSpec, HDF5Store, StoreError


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
    try:
        for i in todo:
            store.write_chunk(i, produce_chunk(i))
            bar.update(1)
    finally:
        bar.close()
    if isinstance(store, HDF5Store):
        store.finalize()
    return store
