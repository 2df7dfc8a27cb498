"""The feature store: aligned per-item arrays on disk, written chunk by chunk, resumable.

One store holds ``n_items`` items (an item = one (video, frame) of the train or test split);
every item field is an array ``(n_items, *item_shape)`` chunked along axis 0 by
``chunk_items``. The schema is a list of :class:`FieldSpec` given by the caller;
:func:`teacher_schema` builds the one ``cache-teachers`` writes. Arrays that are not on the
item axis (class prototypes) are "extras" (:meth:`FeatureStore.put_extra`).

Two backends share the interface (layouts in ``docs/CACHE.md``):

- ``zarr`` (default): a Zarr v3 directory, one array per field, chunk = ``(chunk_items,
  *item_shape)``; progress markers ``<store>/_progress/chunk_000012.done``.
- ``hdf5``: while being written, every chunk is its own small HDF5 file
  ``<path>.parts/chunk_000012.h5`` renamed into place when complete (the file *is* the
  progress marker); :meth:`HDF5Store.finalize` copies the compressed chunks verbatim into the
  single file ``<path>`` and removes the parts. HDF5 has no safe concurrent writers, and a
  process killed while it holds an HDF5 file open for writing can leave the whole file
  unreadable, so the shared file is never open for writing while chunks are produced.

The manifest (teacher checkpoints, preprocessing, view seed, dataset fingerprint, code
version, ...) is the caller's dict; the store records it beside its own layout and refuses
to reopen or resume with a different one (:class:`ManifestMismatch`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from harness.atomic import atomic_path, fsync_path, write_bytes_atomic
from harness.cache.schema import teacher_field
from harness.errors import HarnessError, naming_write_errors

FORMATS = ("zarr", "hdf5")
#: Compression per backend; the defaults were chosen by the measurement in docs/CACHE.md.
COMPRESSIONS = {"zarr": ("zstd", "zstd-bitshuffle", "lz4", "none"), "hdf5": ("gzip", "lzf", "none")}
DEFAULT_COMPRESSION = {"zarr": "lz4", "hdf5": "none"}
LAYOUT_VERSION = 1
STORE_JSON = "harness_store.json"
DEFAULT_IGNORE_KEYS = ("code_version",)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*$")


class StoreError(HarnessError):
    """A store that cannot be created, opened, written or read as asked."""


class ManifestMismatch(StoreError):
    """The store on disk was made with a different manifest or layout than expected."""


class StoreVersionError(StoreError):
    """A store written by a harness of another layout version (or whose record is damaged)."""


REBUILD = "delete it and rebuild it with `harness cache-teachers` (or pass another --store)"
_LAYOUT_KEYS = ("n_items", "chunk_items", "compression", "fields", "format")


def check_record(path: Path, record: Any) -> None:
    """Refuse a store record this harness cannot read: another ``layout_version`` (an older
    harness's store), or one that lacks what every store records."""
    layout = record.get("layout") if isinstance(record, dict) else None
    version = layout.get("layout_version") if isinstance(layout, dict) else None
    if version != LAYOUT_VERSION:
        shown = "unknown (none recorded)" if version is None else repr(version)
        raise StoreVersionError(f"{path}: store layout version {shown}, this harness reads version {LAYOUT_VERSION}; "
                                f"{REBUILD}")
    missing = [f"layout.{k}" for k in _LAYOUT_KEYS if k not in layout]
    missing += [k for k in ("manifest",) if not isinstance(record.get(k), dict)]
    if missing:
        raise StoreVersionError(f"{path}: store record (layout version {version}) lacks {', '.join(missing)}; "
                                f"{REBUILD}")
    try:
        fields = [FieldSpec.from_json(f) for f in layout["fields"]]
        sizes = int(layout["n_items"]), int(layout["chunk_items"])
    except (KeyError, TypeError, ValueError, StoreError) as exc:
        raise StoreVersionError(f"{path}: store record (layout version {version}) is damaged "
                                f"({type(exc).__name__}: {exc}); {REBUILD}") from None
    if min(sizes) <= 0 or not fields:
        raise StoreVersionError(f"{path}: store record (layout version {version}) is damaged (n_items, chunk_items "
                                f"{sizes}, {len(fields)} fields); {REBUILD}")


# ---- schema ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One per-item array: ``name`` (``/`` nests), the shape of one item, its dtype.

    ``per_view`` marks fields whose first item axis is the augmentation view (``(K, ...)``):
    the streaming reader gathers one view per item from them.
    """

    name: str
    item_shape: tuple[int, ...]
    dtype: str
    per_view: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name) or self.name.split("/")[0] == "extra":
            raise StoreError(f"field name {self.name!r}: use letters, digits, _ . - and '/' (not starting with 'extra/' or '_')")
        shape = tuple(int(s) for s in self.item_shape)
        if any(s <= 0 for s in shape):
            raise StoreError(f"field {self.name!r}: item_shape {shape} has a non-positive dimension")
        if self.per_view and not shape:
            raise StoreError(f"field {self.name!r}: per_view needs a view axis in item_shape")
        object.__setattr__(self, "item_shape", shape)
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @property
    def item_nbytes(self) -> int:
        return int(np.prod(self.item_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_json(self) -> dict:
        return {"name": self.name, "item_shape": list(self.item_shape), "dtype": self.dtype, "per_view": self.per_view}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FieldSpec":
        return cls(d["name"], tuple(d["item_shape"]), d["dtype"], bool(d.get("per_view", False)))


def teacher_schema(
    frame_size: int | tuple[int, int],
    num_views: int,
    teachers: Mapping[str, tuple[int, int, int]],
    num_classes: int,
    multilabel: bool = False,
    conv4_dtype: str = "float16",
    logits_dtype: str = "float32",
) -> list[FieldSpec]:
    """The fields ``cache-teachers`` writes.

    ``teachers`` maps a teacher name to its conv4 shape ``(C, h, w)``. Fields: ``frames``
    (H, W, 3) uint8; ``views`` (K, 5) float32 = normalised crop y0, x0, h, w and flip;
    ``teachers/<name>/conv4`` (K, C, h, w) and ``teachers/<name>/logits`` (K, num_classes);
    ``video``, ``frame`` int64; ``label`` int64 or (num_classes,) uint8 multi-hot; ``split``
    uint8 (0 train, 1 test).
    """
    h, w = (frame_size, frame_size) if isinstance(frame_size, int) else tuple(frame_size)
    k = int(num_views)
    fields = [
        FieldSpec("frames", (h, w, 3), "uint8"),
        FieldSpec("views", (k, 5), "float32", per_view=True),
    ]
    for name, (c, fh, fw) in teachers.items():
        fields.append(FieldSpec(teacher_field(name, "conv4"), (k, c, fh, fw), conv4_dtype, per_view=True))
        fields.append(FieldSpec(teacher_field(name, "logits"), (k, num_classes), logits_dtype, per_view=True))
    fields += [
        FieldSpec("video", (), "int64"),
        FieldSpec("frame", (), "int64"),
        FieldSpec("label", (num_classes,), "uint8") if multilabel else FieldSpec("label", (), "int64"),
        FieldSpec("split", (), "uint8"),
    ]
    return fields


def suggest_chunk_items(fields: Sequence[FieldSpec], target_bytes: int = 32 << 20) -> int:
    """Items per chunk so one chunk of every field together is about ``target_bytes`` raw."""
    per_item = sum(f.item_nbytes for f in fields)
    return max(1, int(target_bytes // max(per_item, 1)))


# ---- small file helpers ------------------------------------------------------------------


try:   # ISA-L's crc32: the same CRC-32 as zlib's, ten times faster here (docs/SPEED.md, figure 4)
    from isal.isal_zlib import crc32 as _crc32
except ImportError:   # pragma: no cover - isal is a dependency; zlib's gives the same numbers
    from zlib import crc32 as _crc32


def chunk_checksum(arr: np.ndarray) -> int:
    """crc32 of an array's bytes (C order): what a chunk's marker records per field."""
    return _crc32(memoryview(np.ascontiguousarray(arr)).cast("B"))


def _norm(obj: Any) -> Any:
    # Compare manifests as JSON would store them (tuples become lists, keys strings).
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def manifest_diff(expected: Mapping[str, Any], recorded: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Top-level keys whose values differ (or that only one side has), minus ``ignore``."""
    e, r, skip = _norm(dict(expected)), _norm(dict(recorded)), set(ignore)
    return sorted(k for k in set(e) | set(r) if k not in skip and e.get(k, _MISSING) != r.get(k, _MISSING))


_MISSING = object()


@contextlib.contextmanager
def store_lock(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[None]:
    """An exclusive ``flock`` on ``<path>.lock`` (a sibling file, so it exists before the store)."""
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(f"{lock_path}: timed out after {timeout:.0f}s waiting for the store lock") from None
                time.sleep(0.02)
        yield
    finally:
        fh.close()  # closing releases the flock


# ---- the interface -------------------------------------------------------------------------


class FeatureStore(ABC):
    """Aligned per-item arrays on disk with a manifest and per-chunk progress.

    Make one with :meth:`create` (creates, or reopens and checks an existing one, so it is
    the entry point for resuming) or open one with :meth:`open`.
    """

    format: str = ""

    def __init__(self, path: Path, record: dict, mode: str):
        check_record(path, record)
        self.path = path if is_url(path) else Path(path)
        self.mode = mode
        self._record = record
        layout = record["layout"]
        self._fields = [FieldSpec.from_json(f) for f in layout["fields"]]
        self._by_name = {f.name: f for f in self._fields}
        self.n_items = int(layout["n_items"])
        self.chunk_items = int(layout["chunk_items"])
        self.compression = layout["compression"]

    # -- construction --------------------------------------------------------------------

    @staticmethod
    def layout(fields: Sequence[FieldSpec], n_items: int, chunk_items: int, format: str, compression: str | None) -> dict:
        """The store's own description of itself, recorded beside the caller's manifest."""
        if format not in FORMATS:
            raise StoreError(f"unknown store format {format!r}; choose one of {', '.join(FORMATS)}")
        compression = DEFAULT_COMPRESSION[format] if compression is None else compression
        if compression not in COMPRESSIONS[format]:
            raise StoreError(f"compression {compression!r} is not available for {format}; choose one of {', '.join(COMPRESSIONS[format])}")
        fields = [f if isinstance(f, FieldSpec) else FieldSpec(*f) for f in fields]
        names = [f.name for f in fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise StoreError(f"duplicate field names: {', '.join(dup)}")
        for a in names:  # 'a' and 'a/b' cannot both be arrays (a would be a group)
            if any(b.startswith(a + "/") for b in names):
                raise StoreError(f"field {a!r} is also a prefix of another field's name")
        if int(n_items) <= 0 or int(chunk_items) <= 0:
            raise StoreError(f"n_items ({n_items}) and chunk_items ({chunk_items}) must be positive")
        return {
            "layout_version": LAYOUT_VERSION,
            "format": format,
            "compression": compression,
            "n_items": int(n_items),
            "chunk_items": int(chunk_items),
            "fields": [f.to_json() for f in fields],
        }

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        fields: Sequence[FieldSpec],
        n_items: int,
        chunk_items: int,
        manifest: Mapping[str, Any],
        format: str = "zarr",
        compression: str | None = None,
        ignore_keys: Iterable[str] = DEFAULT_IGNORE_KEYS,
    ) -> "FeatureStore":
        """Create the store, or reopen it for writing when it exists with the same manifest.

        Safe when several processes call it at once (creation runs under a file lock and is
        idempotent). An existing store whose manifest (minus ``ignore_keys``) or layout
        differs raises :class:`ManifestMismatch`; nothing is overwritten.
        """
        layout = cls.layout(fields, n_items, chunk_items, format, compression)
        if is_url(path):
            raise StoreError(f"{path}: stores are written to a local folder; copy the finished store to object "
                             f"storage and read it from there")
        backend = _BACKENDS[format]
        path = Path(path)
        with store_lock(path):
            if backend.exists(path):
                store = backend._open(path, "r+")
                store.check(manifest, ignore_keys, layout)
                return store
            record = {
                "layout": layout,
                "manifest": _norm(dict(manifest)),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            with naming_write_errors(path):   # a creation cut short is redone on the next call
                backend._create(path, record)
            return backend._open(path, "r+")

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        mode: str = "r",
        expect_manifest: Mapping[str, Any] | None = None,
        ignore_keys: Iterable[str] = DEFAULT_IGNORE_KEYS,
    ) -> "FeatureStore":
        """Open an existing store (``mode`` "r" or "r+"), checking the manifest if given."""
        if mode not in ("r", "r+"):
            raise StoreError(f"{path}: mode must be 'r' or 'r+', got {mode!r}")
        if is_url(path):
            store = RemoteZarrStore.open_url(str(path), mode)
            if expect_manifest is not None:
                store.check(expect_manifest, ignore_keys)
            return store
        path = Path(path)
        if path.suffix == ".zarr" and path.is_file():
            raise StoreError(f"{path}: is a file, not a Zarr store folder; pass the store's folder")
        for backend in _BACKENDS.values():
            if backend.exists(path):
                store = backend._open(path, mode)
                if expect_manifest is not None:
                    store.check(expect_manifest, ignore_keys)
                return store
        raise StoreError(f"{path}: no feature store here (expected a Zarr folder with {STORE_JSON} or an HDF5 store)")

    def check(self, expect_manifest: Mapping[str, Any], ignore_keys: Iterable[str] = DEFAULT_IGNORE_KEYS, layout: dict | None = None) -> None:
        """Raise :class:`ManifestMismatch` naming the differing keys, if any."""
        diff = manifest_diff(expect_manifest, self.manifest, ignore_keys)
        if layout is not None:
            diff += [f"layout.{k}" for k in manifest_diff(layout, self._record["layout"])]
        if diff:
            raise ManifestMismatch(
                f"{self.path}: store was written with a different manifest (differing keys: {', '.join(diff)}); "
                f"use another --store path or delete this one"
            )

    # -- description -----------------------------------------------------------------------

    @property
    def fields(self) -> list[FieldSpec]:
        return list(self._fields)

    def field(self, name: str) -> FieldSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise StoreError(f"{self.path}: no field {name!r}; fields: {', '.join(self._by_name)}") from None

    @property
    def manifest(self) -> dict:
        return json.loads(json.dumps(self._record["manifest"]))

    @property
    def record(self) -> dict:
        """Layout, manifest and creation time as stored."""
        return json.loads(json.dumps(self._record))

    @property
    def n_chunks(self) -> int:
        return -(-self.n_items // self.chunk_items)

    def chunk_range(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.n_chunks:
            raise StoreError(f"{self.path}: chunk {i} out of range (store has {self.n_chunks})")
        start = i * self.chunk_items
        return start, min(start + self.chunk_items, self.n_items)

    def raw_bytes(self) -> dict[str, int]:
        """Uncompressed bytes per field."""
        return {f.name: f.item_nbytes * self.n_items for f in self._fields}

    @abstractmethod
    def stored_bytes(self) -> dict[str, int]:
        """Bytes on disk per field (chunk data only)."""

    def is_complete(self) -> bool:
        return len(self.completed_chunks()) == self.n_chunks

    def info(self) -> str:
        """A readable summary: manifest, fields (shape, dtype, chunks), compression ratio."""
        done = len(self.completed_chunks())
        stored, raw = self.stored_bytes(), self.raw_bytes()
        lines = [
            f"store: {self.path} ({self.format}, compression {self.compression})",
            f"items: {self.n_items} in {self.n_chunks} chunks of {self.chunk_items}; "
            f"complete: {done}/{self.n_chunks} chunks",
            "manifest:",
        ]
        lines += [f"  {k}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(self.manifest.items())]
        lines.append("fields (shape, dtype, chunk, stored/raw):")
        for f in self._fields:
            shape = (self.n_items, *f.item_shape)
            ratio = stored[f.name] / raw[f.name] if raw[f.name] else 0.0
            lines.append(
                f"  {f.name}: {shape} {f.dtype} chunk {(self.chunk_items, *f.item_shape)}"
                f"{' per-view' if f.per_view else ''}  {_mb(stored[f.name])}/{_mb(raw[f.name])} = {ratio:.3f}"
            )
        tot_s, tot_r = sum(stored.values()), sum(raw.values())
        lines.append(f"total: stored {_mb(tot_s)} / raw {_mb(tot_r)} = compression ratio {tot_s / max(tot_r, 1):.3f}")
        extras = self.extras()
        if extras:
            lines.append("extras: " + ", ".join(f"{n} {self.get_extra(n).shape}" for n in extras))
        return "\n".join(lines)

    # -- data --------------------------------------------------------------------------------

    def _check_chunk_data(self, i: int, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        start, stop = self.chunk_range(i)
        missing = [n for n in self._by_name if n not in data]
        unknown = [n for n in data if n not in self._by_name]
        if missing or unknown:
            raise StoreError(
                f"{self.path}: chunk {i}: every field must be written together"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        out = {}
        for name, value in data.items():
            spec = self._by_name[name]
            arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
            want = (stop - start, *spec.item_shape)
            if arr.shape != want:
                raise StoreError(f"{self.path}: chunk {i} field {name!r} has shape {arr.shape}, expected {want}")
            if not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
                raise StoreError(f"{self.path}: chunk {i} field {name!r} has dtype {arr.dtype}, cannot store as {spec.dtype}")
            out[name] = np.ascontiguousarray(arr, dtype=spec.dtype)
        return out

    def write_chunk(self, i: int, data: Mapping[str, Any]) -> None:
        """Write every field of chunk ``i``, make it durable, then mark it done (atomically)."""
        if self.mode == "r":
            raise StoreError(f"{self.path}: opened read-only; open with mode='r+' to write")
        data = self._check_chunk_data(i, data)
        self._write_chunk(i, data, {n: chunk_checksum(a) for n, a in data.items()})

    def read_chunk(self, i: int, names: Sequence[str] | None = None, verify: bool = True,
                   buffers: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The items of chunk ``i`` for ``names`` (default: every field), each checked against
        the checksum recorded when it was written (``verify``; chunks written before checksums
        were recorded are not checked). ``buffers`` (from :meth:`chunk_buffers`) may receive the
        data, which is then returned as views of them: a reader that reuses them spares fresh
        memory, whose first touch costs more than decoding into it."""
        names = list(self._by_name) if names is None else list(names)
        for n in names:
            self.field(n)
        start, stop = self.chunk_range(i)
        out = {}
        for n in names:
            try:
                out[n] = self._read_whole_chunk(n, i, start, stop, None if buffers is None else buffers.get(n))
            except StoreError:
                raise
            except Exception as exc:  # a codec or file error from the backend: the chunk is damaged
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise StoreError(f"{self.path}: chunk {i}, field {n!r}: cannot be read ({type(exc).__name__}"
                                 f"{': ' + first if first else ''}); the store is damaged, rebuild it") from exc
        if verify:
            sums = self.chunk_checksums(i) or {}
            for n in names:
                if n in sums and chunk_checksum(out[n]) != sums[n]:
                    raise StoreError(f"{self.path}: chunk {i}, field {n!r}: the data does not match the checksum "
                                     f"recorded when it was written (a chunk file damaged or missing); rebuild the "
                                     f"store")
        return out

    def verify(self) -> list[str]:
        """Every problem found by reading every chunk: one line each (empty when sound)."""
        problems = []
        done = set(self.completed_chunks())
        for i in range(self.n_chunks):
            if i not in done:
                problems.append(f"{self.path}: chunk {i}: not written")
                continue
            if self.chunk_checksums(i) is None:
                problems.append(f"{self.path}: chunk {i}: no checksums recorded (written by an older harness)")
                continue
            try:
                self.read_chunk(i)
            except StoreError as exc:
                problems.append(str(exc))
        return problems

    @abstractmethod
    def chunk_checksums(self, i: int) -> dict[str, int] | None:
        """``{field: crc32}`` recorded with chunk ``i``, or None when none were."""

    def read(self, name: str, sel: slice | Sequence[int] | np.ndarray = slice(None)) -> np.ndarray:
        """Items ``sel`` (a slice, or sorted/unsorted indices) of field ``name``."""
        self.field(name)
        if isinstance(sel, slice):
            start, stop, step = sel.indices(self.n_items)
            if step == 1:
                return self._read(name, slice(start, max(start, stop)))
            sel = np.arange(start, stop, step)
        idx = np.asarray(sel, dtype=np.int64)
        if idx.size == 0:
            spec = self.field(name)
            return np.empty((0, *spec.item_shape), spec.dtype)
        if idx.min() < 0 or idx.max() >= self.n_items:
            raise StoreError(f"{self.path}: index out of range for {self.n_items} items")
        lo, hi = int(idx.min()), int(idx.max()) + 1
        return self._read(name, slice(lo, hi))[idx - lo]

    @abstractmethod
    def _write_chunk(self, i: int, data: dict[str, np.ndarray], checksums: dict[str, int]) -> None: ...

    @abstractmethod
    def _read(self, name: str, sel: slice) -> np.ndarray: ...

    def chunk_buffers(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Uninitialised arrays a whole chunk of those of ``names`` fits in that read_chunk
        decodes into (none here; a backend that can says which)."""
        return {}

    def will_read_chunk(self, i: int, names: Sequence[str]) -> None:
        """A hint that chunk ``i`` of ``names`` is read next, so a backend that can starts
        loading it from disk now (none here). Only a hint: it changes no byte read."""

    def _read_whole_chunk(self, name: str, i: int, start: int, stop: int, out: np.ndarray | None) -> np.ndarray:
        """Items ``start:stop`` (all of chunk ``i``) of field ``name``, into ``out`` if the
        backend can; a backend may do better than a general slice."""
        return self._read(name, slice(start, stop))

    @abstractmethod
    def completed_chunks(self) -> list[int]:
        """Sorted indices of chunks marked done."""

    def put_extra(self, name: str, array: np.ndarray) -> None:
        """Store a small array that is not on the item axis (e.g. ``class_prototypes/<t>``)."""
        if self.mode == "r":
            raise StoreError(f"{self.path}: opened read-only; open with mode='r+' to write")
        self._check_extra_name(name)
        with naming_write_errors(f"{self.path}/extra/{name}"):
            self._put_extra(name, np.ascontiguousarray(array))

    def get_extra(self, name: str) -> np.ndarray:
        if name not in self.extras():
            raise StoreError(f"{self.path}: no extra array {name!r}; extras: {', '.join(self.extras()) or 'none'}")
        return self._get_extra(name)

    @abstractmethod
    def _put_extra(self, name: str, array: np.ndarray) -> None: ...

    @abstractmethod
    def _get_extra(self, name: str) -> np.ndarray: ...

    @abstractmethod
    def extras(self) -> list[str]: ...

    def _check_extra_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise StoreError(f"{self.path}: extra name {name!r}: use letters, digits, _ . - and '/'")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.path} {self.n_items} items, {len(self._fields)} fields>"

    # -- backend hooks ---------------------------------------------------------------------

    @staticmethod
    @abstractmethod
    def exists(path: Path) -> bool: ...

    @classmethod
    @abstractmethod
    def _create(cls, path: Path, record: dict) -> None: ...

    @classmethod
    @abstractmethod
    def _open(cls, path: Path, mode: str) -> "FeatureStore": ...


def _mb(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the store record ({exc})") from None


# ---- Zarr v3 -----------------------------------------------------------------------------------


def _zarr_compressors(compression: str, dtype: np.dtype) -> list:
    import zarr.codecs as zc

    if compression == "none":
        return []
    cname, _, shuffle = compression.partition("-")
    # Byte shuffle groups the bytes of multi-byte numbers (exponents together); it does
    # nothing for uint8, where bit shuffle is the only reordering that can help.
    shuffle = shuffle or ("shuffle" if dtype.itemsize > 1 else "noshuffle")
    return [zc.BloscCodec(cname=cname, clevel=3 if cname == "zstd" else 5, shuffle=shuffle, typesize=dtype.itemsize)]


def _direct_codec(arr, spec: FieldSpec, chunk_items: int) -> str | None:
    """``"blosc"`` or ``"raw"`` when every chunk of the zarr array ``arr`` is one file at the
    default ``c/i/0/...`` key holding the whole chunk's little-endian bytes, blosc-compressed or
    not, with zeros as the fill: the layout :class:`ZarrStore` writes, whose chunks it can
    decode without zarr. None for anything else (sharding, other codecs or keys)."""
    from zarr.codecs import BloscCodec, BytesCodec
    from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding

    meta = arr.metadata
    if getattr(meta, "zarr_format", None) != 3 or getattr(meta, "storage_transformers", ()):
        return None
    grid = getattr(meta.chunk_grid, "chunk_shape", None)
    if grid is None or tuple(grid) != (chunk_items, *spec.item_shape):
        return None
    key = meta.chunk_key_encoding
    if not isinstance(key, DefaultChunkKeyEncoding) or key.separator != "/":
        return None
    dtype = np.dtype(spec.dtype)
    if arr.dtype != dtype or meta.fill_value != 0 or (dtype.itemsize > 1 and sys.byteorder != "little"):
        return None
    codecs = tuple(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)
    if dtype.itemsize > 1 and endian != "little":
        return None
    if len(codecs) == 1:
        return "raw"
    return "blosc" if len(codecs) == 2 and isinstance(codecs[1], BloscCodec) else None


class ZarrStore(FeatureStore):
    """Zarr v3 directory store: ``<path>/<field>`` arrays, ``<path>/extra/<name>`` extras,
    ``<path>/harness_store.json`` (written last at creation, so its presence means "created"),
    ``<path>/_progress/chunk_NNNNNN.done`` markers."""

    format = "zarr"
    _CREATING = ".harness_creating"

    def __init__(self, path: Path, record: dict, mode: str):
        super().__init__(path, record, mode)
        import zarr

        self._open_arrays(zarr.open_group(str(path), mode="r+" if mode == "r+" else "r"))

    def _open_arrays(self, group) -> None:
        """The fields' arrays in ``group``, and which of them :meth:`_read_whole_chunk` decodes itself."""
        self._group = group
        self._arrays = {f.name: group[f.name] for f in self._fields}
        self._direct = {f.name: _direct_codec(self._arrays[f.name], f, self.chunk_items) for f in self._fields}

    @staticmethod
    def exists(path: Path) -> bool:
        return (path / STORE_JSON).is_file()

    @classmethod
    def _create(cls, path: Path, record: dict) -> None:
        import zarr

        if path.exists():
            contents = {p.name for p in path.iterdir()} if path.is_dir() else {"?"}
            # Only wipe what an interrupted creation of ours left; never somebody's folder.
            if contents and cls._CREATING not in contents:
                raise StoreError(f"{path}: exists and is not a harness feature store (no {STORE_JSON}); remove it or pick another path")
            shutil.rmtree(path)
        path.mkdir(parents=True)
        (path / cls._CREATING).touch()
        layout = record["layout"]
        group = zarr.open_group(str(path), mode="a")
        n, c = layout["n_items"], layout["chunk_items"]
        for fj in layout["fields"]:
            f = FieldSpec.from_json(fj)
            group.create_array(
                f.name,
                shape=(n, *f.item_shape),
                chunks=(c, *f.item_shape),
                dtype=f.dtype,
                compressors=_zarr_compressors(layout["compression"], np.dtype(f.dtype)),
                fill_value=0,
                # Fixed key encoding so chunk files have a known path (fsync after writing).
                chunk_key_encoding={"name": "default", "separator": "/"},
            )
        (path / "_progress").mkdir()
        write_bytes_atomic(path / STORE_JSON, json.dumps(record, indent=2, sort_keys=True).encode())
        (path / cls._CREATING).unlink()

    @classmethod
    def _open(cls, path: Path, mode: str) -> "ZarrStore":
        return cls(path, _read_record(path / STORE_JSON), mode)

    def _marker(self, i: int) -> Path:
        return self.path / "_progress" / f"chunk_{i:06d}.done"

    @property
    def claims_dir(self) -> Path:
        return self.path / "_progress"

    def _chunk_key(self, name: str, i: int) -> list[str]:
        """The parts of chunk ``i``'s file of ``name`` below the store's folder (the fixed key
        encoding: ``<field>/c/<i>/0/...``, one 0 per item axis)."""
        return [*name.split("/"), "c", str(i), *["0"] * len(self._by_name[name].item_shape)]

    def _chunk_files(self, name: str, i: int) -> Path:
        return self.path.joinpath(*self._chunk_key(name, i))

    def _write_chunk(self, i: int, data: dict[str, np.ndarray], checksums: dict[str, int]) -> None:
        start, stop = self.chunk_range(i)
        for name, arr in data.items():
            chunk_file = self._chunk_files(name, i)
            try:
                with naming_write_errors(chunk_file):
                    self._arrays[name][start:stop] = arr
                    # zarr writes each chunk file atomically but does not fsync it; do it so
                    # the marker below never outlives the data on a power cut. An all-zero
                    # chunk is not written at all (write_empty_chunks=False): it reads as zeros.
                    if chunk_file.exists():
                        fsync_path(chunk_file)
            except BaseException:
                # zarr removes its temporary on an error but not on Ctrl-C; the chunk has no
                # marker, so it is written again on resume
                for partial in chunk_file.parent.glob(f"{chunk_file.name}.*.partial"):
                    partial.unlink(missing_ok=True)
                raise
        # the marker holds the chunk's checksums: its presence says "done", its content "what"
        write_bytes_atomic(self._marker(i), json.dumps({"checksums": checksums}, sort_keys=True).encode())

    def _marker_text(self, i: int) -> str | None:
        try:
            return self._marker(i).read_text()
        except OSError:
            return None

    def chunk_checksums(self, i: int) -> dict[str, int] | None:
        text = self._marker_text(i)
        if text is None or not text.strip():
            return None
        try:
            return {k: int(v) for k, v in json.loads(text)["checksums"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(f"{self._marker(i)}: unreadable chunk marker (damaged); rebuild the store") from None

    def _read(self, name: str, sel: slice) -> np.ndarray:
        return np.asarray(self._arrays[name][sel])

    def will_read_chunk(self, i: int, names: Sequence[str]) -> None:
        # posix_fadvise(WILLNEED): the kernel reads the files in the background, so a reader
        # that hints the chunk after the one it decodes overlaps the disk with the decoding
        # (docs/SPEED.md, figure 4 cold). A file that cannot be opened is left to the read,
        # which names it.
        if not hasattr(os, "posix_fadvise"):
            return
        for n in names:
            if self._direct.get(n) is None:
                continue
            try:
                fd = os.open(self._chunk_files(n, i), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def chunk_buffers(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        # the fields decoded here directly; zarr's own path allocates its arrays itself
        return {n: np.empty((self.chunk_items, *self.field(n).item_shape), dtype=self.field(n).dtype)
                for n in names if self._direct[self.field(n).name] is not None}

    def _read_whole_chunk(self, name: str, i: int, start: int, stop: int, out: np.ndarray | None) -> np.ndarray:
        # A whole chunk is one file in a layout this store wrote: decoded here directly, since
        # zarr's own path costs about 0.7 ms of Python per call, most of a tiny chunk's read
        # (docs/SPEED.md, figure 4). Any other layout goes through zarr.
        codec = self._direct[name]
        if codec is None:
            return self._read(name, slice(start, stop))
        spec = self._by_name[name]
        full = (self.chunk_items, *spec.item_shape)     # a file holds the whole chunk
        if out is None or out.shape != full or out.dtype != np.dtype(spec.dtype) or not out.flags.c_contiguous:
            out = np.empty(full, dtype=spec.dtype)
        data = self._chunk_file_bytes(name, i)
        if data is None:   # never written: zarr skips an all-fill chunk; it reads as the fill, zeros
            out[: stop - start] = 0
            return out[: stop - start]
        if codec == "blosc":
            import numcodecs.blosc

            numcodecs.blosc.decompress(data, out)
        else:
            if len(data) != out.nbytes:
                raise ValueError(f"chunk file holds {len(data)} bytes, expected {out.nbytes}")
            out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)
        return out[: stop - start]

    def _chunk_file_bytes(self, name: str, i: int) -> bytes | None:
        """The bytes of chunk ``i``'s file of field ``name``, None when there is none."""
        try:
            return self._chunk_files(name, i).read_bytes()
        except FileNotFoundError:
            return None

    def _marker_names(self) -> list[str]:
        return [p.name for p in (self.path / "_progress").glob("chunk_*.done")]

    def completed_chunks(self) -> list[int]:
        return sorted(i for i in (int(name[6:12]) for name in self._marker_names()) if i < self.n_chunks)

    def stored_bytes(self) -> dict[str, int]:
        out = {}
        for f in self._fields:
            root = self.path.joinpath(*f.name.split("/"), "c")
            out[f.name] = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.name.endswith(".partial")) if root.exists() else 0
        return out

    def _put_extra(self, name: str, array: np.ndarray) -> None:
        # Under the lock: ranks that finish together may both write the same extra.
        # Each node is written on its own: made from the root group, zarr writes the parent
        # groups' metadata concurrently with the array's, and when one write fails (a full disk)
        # the others are still running, leaving a temporary file behind after the error.
        import zarr

        with store_lock(self.path):
            parts = ["extra", *name.split("/")]
            for k in range(1, len(parts)):
                folder = self.path.joinpath(*parts[:k])
                if not (folder / "zarr.json").exists():
                    zarr.open_group(str(folder), mode="a")
            arr = zarr.create_array(str(self.path.joinpath(*parts)), shape=array.shape, dtype=array.dtype,
                                    chunks=array.shape or None, compressors=[], overwrite=True)
            arr[...] = array

    def _get_extra(self, name: str) -> np.ndarray:
        return np.asarray(self._group[f"extra/{name}"][...])

    def extras(self) -> list[str]:
        root = self.path / "extra"
        if not root.is_dir():
            return []
        out = []
        for meta in root.rglob("zarr.json"):
            if json.loads(meta.read_text()).get("node_type") == "array":
                out.append(meta.parent.relative_to(root).as_posix())
        return sorted(out)


# ---- HDF5 ----------------------------------------------------------------------------------------


def _h5_filters(compression: str, dtype: np.dtype) -> dict:
    if compression == "none":
        return {}
    # Shuffle (byte transposition) helps multi-byte numbers; pointless for uint8.
    return {"compression": compression, "compression_opts": 4 if compression == "gzip" else None,
            "shuffle": dtype.itemsize > 1}


class HDF5Store(FeatureStore):
    """HDF5 backend. Being written: ``<path>.parts/harness_store.json`` plus one file per
    finished chunk ``chunk_NNNNNN.h5`` (written under a temp name, fsynced and renamed, so a
    part that exists is complete: it is the progress marker) and extras as ``extra/*.npy``.
    Finished: the single file ``<path>`` (see :meth:`finalize`), record in its attributes."""

    format = "hdf5"

    def __init__(self, path: Path, record: dict, mode: str):
        super().__init__(path, record, mode)
        self._h5 = None
        self._h5_lock = threading.Lock()

    @property
    def parts(self) -> Path:
        return Path(str(self.path) + ".parts")

    @property
    def finalized(self) -> bool:
        return self.path.is_file()

    @staticmethod
    def exists(path: Path) -> bool:
        return path.is_file() or (Path(str(path) + ".parts") / STORE_JSON).is_file()

    @classmethod
    def _create(cls, path: Path, record: dict) -> None:
        parts = Path(str(path) + ".parts")
        parts.mkdir(parents=True, exist_ok=True)
        (parts / "extra").mkdir(exist_ok=True)
        write_bytes_atomic(parts / STORE_JSON, json.dumps(record, indent=2, sort_keys=True).encode())

    @classmethod
    def _open(cls, path: Path, mode: str) -> "HDF5Store":
        if path.is_file():
            import h5py

            try:
                with h5py.File(path, "r") as f:
                    record = json.loads(f.attrs["harness_store"])
            except (OSError, KeyError, json.JSONDecodeError) as exc:
                raise StoreError(f"{path}: not a readable harness HDF5 store ({exc})") from None
            return cls(path, record, mode)
        return cls(path, _read_record(Path(str(path) + ".parts") / STORE_JSON), mode)

    def _file(self):
        # One read handle per store object, opened lazily (h5py serialises access itself); the
        # lock keeps two of the reader's decoding threads from both opening it.
        with self._h5_lock:
            if self._h5 is None:
                import h5py

                self._h5 = h5py.File(self.path, "r")
            return self._h5

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    @property
    def claims_dir(self) -> Path:
        return Path(str(self.path) + ".claims")

    def _part(self, i: int) -> Path:
        return self.parts / f"chunk_{i:06d}.h5"

    def _create_dataset(self, f, spec: FieldSpec, n: int):
        # maxshape None on axis 0 lets a short last part carry a full-size chunk, so every
        # part's stored chunk is byte-identical to the final file's (copied verbatim).
        return f.create_dataset(
            spec.name, shape=(n, *spec.item_shape), dtype=spec.dtype,
            chunks=(self.chunk_items, *spec.item_shape), maxshape=(None, *spec.item_shape),
            fillvalue=0, **_h5_filters(self.compression, np.dtype(spec.dtype)),
        )

    def _write_chunk(self, i: int, data: dict[str, np.ndarray], checksums: dict[str, int]) -> None:
        import h5py

        if self.finalized:
            raise StoreError(f"{self.path}: store is finalized; it cannot be written again")
        with atomic_path(self._part(i), durable=True) as tmp, h5py.File(tmp, "w") as f:
            for name, arr in data.items():
                self._create_dataset(f, self._by_name[name], len(arr))[...] = arr
            f.attrs["harness_checksums"] = json.dumps(checksums, sort_keys=True)

    def chunk_checksums(self, i: int) -> dict[str, int] | None:
        import h5py

        if self.finalized:
            text = self._file().attrs.get("harness_chunk_checksums")
            sums = json.loads(text).get(str(i)) if text else None
        elif self._part(i).is_file():
            with h5py.File(self._part(i), "r") as f:
                text = f.attrs.get("harness_checksums")
            sums = json.loads(text) if text else None
        else:
            sums = None
        return None if sums is None else {k: int(v) for k, v in sums.items()}

    def finalize(self) -> bool:
        """Merge every part into ``<path>`` (under the store lock) and remove the parts.

        Returns False, doing nothing, while chunks are missing; True once the store is
        finalized (by this call or an earlier one, possibly in another process).
        """
        import h5py

        with store_lock(self.path):
            if self.finalized:
                return True
            if len(self.completed_chunks()) != self.n_chunks:
                return False
            record = dict(self._record, finalized=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
            with atomic_path(self.path, durable=True) as tmp:
                with h5py.File(tmp, "w") as out:
                    dsets = {f.name: self._create_dataset(out, f, self.n_items) for f in self._fields}
                    sums = {}
                    for i in range(self.n_chunks):
                        start, _ = self.chunk_range(i)
                        with h5py.File(self._part(i), "r") as part:
                            if "harness_checksums" in part.attrs:
                                sums[str(i)] = json.loads(part.attrs["harness_checksums"])
                            for f in self._fields:
                                zero = (0,) * (1 + len(f.item_shape))
                                src = part[f.name]
                                if src.chunks is not None and src.id.get_chunk_info_by_coord(zero).size:
                                    mask, raw = src.id.read_direct_chunk(zero)
                                    dsets[f.name].id.write_direct_chunk((start,) + zero[1:], raw, mask)
                                else:  # an unstored (all-fill) chunk stays unstored
                                    pass
                    for npy in sorted((self.parts / "extra").glob("*.npy")):
                        out.create_dataset("extra/" + npy.stem.replace("%", "/"), data=np.load(npy))
                    out.attrs["harness_store"] = json.dumps(record, sort_keys=True)
                    out.attrs["harness_chunk_checksums"] = json.dumps(sums, sort_keys=True)
            self._record = record
            shutil.rmtree(self.parts, ignore_errors=True)
            shutil.rmtree(self.claims_dir, ignore_errors=True)
            return True

    def _read(self, name: str, sel: slice) -> np.ndarray:
        if self.finalized:
            return self._file()[name][sel]
        # Reading an unfinished store: stitch the requested items from the part files.
        start, stop, _ = sel.indices(self.n_items)
        spec = self._by_name[name]
        out = np.zeros((max(stop - start, 0), *spec.item_shape), spec.dtype)
        import h5py

        for i in range(start // self.chunk_items, -(-stop // self.chunk_items)):
            c0, c1 = self.chunk_range(i)
            lo, hi = max(c0, start), min(c1, stop)
            if hi > lo and self._part(i).is_file():
                with h5py.File(self._part(i), "r") as f:
                    out[lo - start:hi - start] = f[name][lo - c0:hi - c0]
        return out

    def completed_chunks(self) -> list[int]:
        if self.finalized:
            return list(range(self.n_chunks))
        if not self.parts.is_dir():
            return []
        return sorted(i for i in (int(p.name[6:12]) for p in self.parts.glob("chunk_??????.h5")) if i < self.n_chunks)

    def stored_bytes(self) -> dict[str, int]:
        if self.finalized:
            f = self._file()
            return {s.name: int(f[s.name].id.get_storage_size()) for s in self._fields}
        import h5py

        out = dict.fromkeys(self._by_name, 0)
        for i in self.completed_chunks():
            with h5py.File(self._part(i), "r") as f:
                for n in out:
                    out[n] += int(f[n].id.get_storage_size())
        return out

    def _put_extra(self, name: str, array: np.ndarray) -> None:
        if not self.finalized:
            with atomic_path(self.parts / "extra" / (name.replace("/", "%") + ".npy"), durable=True) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, array)
            return
        import h5py

        # After finalizing: a short exclusive write to the single file, under the lock.
        self.close()
        with store_lock(self.path), h5py.File(self.path, "r+") as f:
            key = "extra/" + name
            if key in f:
                del f[key]
            f.create_dataset(key, data=array)

    def _get_extra(self, name: str) -> np.ndarray:
        if self.finalized:
            return self._file()["extra/" + name][...]
        return np.load(self.parts / "extra" / (name.replace("/", "%") + ".npy"))

    def extras(self) -> list[str]:
        if self.finalized:
            f = self._file()
            if "extra" not in f:
                return []
            names: list[str] = []
            f["extra"].visititems(lambda n, o: names.append(n) if hasattr(o, "shape") else None)
            return sorted(names)
        d = self.parts / "extra"
        return sorted(p.stem.replace("%", "/") for p in d.glob("*.npy")) if d.is_dir() else []


_BACKENDS: dict[str, type[FeatureStore]] = {"zarr": ZarrStore, "hdf5": HDF5Store}


# ---- a Zarr store at an fsspec URL (read-only) ------------------------------------------------------


def is_url(path: str | os.PathLike) -> bool:
    """``s3://bucket/store.zarr``, ``gs://...``, ``memory://...``: a store read through fsspec."""
    return isinstance(path, str) and "://" in path


class RemoteZarrStore(ZarrStore):
    """A finished Zarr store read from an fsspec URL (object storage such as ``s3://``, or
    ``memory://`` in the tests), so every rank of a multi-node job streams one shared copy. The
    layout is the local one; only the file access goes through fsspec. Read-only: stores are
    written locally (their markers, locks and fsyncs need a local disk) and copied up whole."""

    def __init__(self, url: str, record: dict, mode: str):
        FeatureStore.__init__(self, url, record, mode)
        import zarr
        from zarr.storage import FsspecStore

        self._fs, self._root = self.filesystem(url)
        try:
            self._open_arrays(zarr.open_group(store=FsspecStore.from_url(url, read_only=True), mode="r"))
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise StoreError(f"{url}: the store's arrays cannot be opened ({type(exc).__name__}: {exc}); "
                             f"copy the whole store folder") from None

    @staticmethod
    def filesystem(url: str):
        """``(filesystem, root path)`` of ``url``; one line naming what is missing otherwise."""
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StoreError(f"{url}: cannot open this URL through fsspec ({exc})") from None
        return fs, root.rstrip("/")

    @classmethod
    def open_url(cls, url: str, mode: str) -> "RemoteZarrStore":
        if mode != "r":
            raise StoreError(f"{url}: a store at a URL opens read-only; write it locally and copy it up")
        fs, root = cls.filesystem(url)
        try:
            text = fs.cat_file(f"{root}/{STORE_JSON}")
        except FileNotFoundError:
            raise StoreError(f"{url}: no feature store here (expected a Zarr folder with {STORE_JSON})") from None
        except OSError as exc:
            raise StoreError(f"{url}: cannot read the store record ({exc})") from None
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{url}/{STORE_JSON}: cannot read the store record ({exc})") from None
        return cls(url, record, mode)

    def will_read_chunk(self, i: int, names: Sequence[str]) -> None:
        # no page cache to warm: the reader's prefetch queue already overlaps remote reads
        return None

    def _chunk_file_bytes(self, name: str, i: int) -> bytes | None:
        try:
            return self._fs.cat_file("/".join([self._root, *self._chunk_key(name, i)]))
        except FileNotFoundError:
            return None

    def _marker_names(self) -> list[str]:
        return [p.rsplit("/", 1)[-1] for p in self._fs.glob(f"{self._root}/_progress/chunk_*.done")]

    def _marker(self, i: int) -> str:
        return f"{self.path}/_progress/chunk_{i:06d}.done"

    def _marker_text(self, i: int) -> str | None:
        try:
            return self._fs.cat_file(f"{self._root}/_progress/chunk_{i:06d}.done").decode()
        except (OSError, UnicodeDecodeError):
            return None

    def stored_bytes(self) -> dict[str, int]:
        out = {}
        for f in self._fields:
            root = f"{self._root}/{f.name}/c"
            out[f.name] = int(self._fs.du(root)) if self._fs.exists(root) else 0
        return out

    def extras(self) -> list[str]:
        root = f"{self._root}/extra"
        if not self._fs.exists(root):
            return []
        out = []
        for meta in self._fs.glob(f"{root}/**/zarr.json"):
            if json.loads(self._fs.cat_file(meta)).get("node_type") == "array":
                out.append(meta[len(root) + 1:].rsplit("/", 1)[0])
        return sorted(n for n in out if n != "zarr.json")

    def _put_extra(self, name: str, array: np.ndarray) -> None:
        raise StoreError(f"{self.path}: a store at a URL is read-only")

    def _write_chunk(self, i, data, checksums) -> None:
        raise StoreError(f"{self.path}: a store at a URL is read-only")
