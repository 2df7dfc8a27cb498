"""Atomic file writes, in one place: a file is written beside its target under a temporary
name and renamed over it, so a crash or a full disk never leaves half a file (and the
temporary is removed when writing fails). A full disk or a folder that cannot be written is
a :class:`~harness.errors.WriteError` naming the target."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import IO, Iterator

from harness.errors import naming_write_errors


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it over ``path``.
    ``durable`` fsyncs the file before and its folder after the rename (store chunks and
    markers, whose presence means "done"). The name carries the pid, so concurrent writers of
    one target never share a temporary."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with naming_write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            if durable:
                fsync_path(tmp)
            os.replace(tmp, path)
            if durable:
                fsync_path(path.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", durable: bool = False, **kwargs) -> Iterator[IO]:
    """``open(tmp, mode, **kwargs)`` of :func:`atomic_path`'s temporary: every writer of
    the harness goes through this one ``open``."""
    with atomic_path(path, durable) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    with atomic_file(path, "wb", durable) as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    with atomic_file(path, "w", durable) as fh:
        fh.write(text)
