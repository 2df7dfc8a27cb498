"""Feature store of cached teacher outputs: schema, Zarr/HDF5 backends, resumable writer,
streaming reader. See docs/CACHE.md."""

from harness.cache.store import (
    FeatureStore,
    FieldSpec,
    HDF5Store,
    RemoteZarrStore,
    ManifestMismatch,
    StoreError,
    ZarrStore,
    is_url,
    suggest_chunk_items,
    teacher_schema,
)
from harness.cache.writer import owned_chunks, world_from_env, write_store

__all__ = [
    "FeatureStore", "FieldSpec", "HDF5Store", "ManifestMismatch", "RemoteZarrStore", "StoreError", "StreamingReader",
    "ZarrStore", "is_url", "owned_chunks", "suggest_chunk_items", "teacher_schema", "world_from_env", "write_store",
]


def __getattr__(name):
    # The reader needs torch; writer processes (and their start-up time) do not.
    if name == "StreamingReader":
        from harness.cache.reader import StreamingReader

        return StreamingReader
    raise AttributeError(f"module 'harness.cache' has no attribute {name!r}")
