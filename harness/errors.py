"""Errors meant for the user: the CLI prints their message as one line and exits 2 (130 for
Ctrl-C, the shell's code for SIGINT)."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator


class HarnessError(RuntimeError):
    """Base class; the message must name the file (or option) and the problem."""

    user_facing = True


class WriteError(HarnessError):
    """A file that could not be written: a full disk, a read-only folder, a denied permission."""


# errno values that mean "the disk is full" and "this folder cannot be written"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)   # a file where a folder is made, or in the path


def no_space_error(path: str | os.PathLike | None) -> WriteError:
    where = f"{path}: " if path is not None else ""
    return WriteError(f"{where}no space left on device; free some space and run the same command again")


def write_error(exc: OSError, path: str | os.PathLike | None = None) -> WriteError | None:
    """The one-line error for ``exc``, raised while writing ``path`` (default: the file the
    system call named); None when ``exc`` is none of a full disk, a write refused, or a file
    standing where a folder is needed."""
    path = path if path is not None else exc.filename
    if exc.errno in NO_SPACE:
        return no_space_error(path)
    if exc.errno in NOT_WRITABLE:
        reason = os.strerror(exc.errno).lower()
        where = f"{path}: " if path is not None else ""
        # the folder the file (or the folder being made) would be created in is the one to fix
        folder = Path(exc.filename).parent if exc.filename else (Path(path).parent if path is not None else None)
        fix = f"make {folder} writable" if folder is not None else "make the folder writable"
        return WriteError(f"{where}{reason}; {fix} or choose another path")
    if exc.errno in NOT_A_FOLDER and path is not None:
        return not_a_folder_error(Path(path))   # None: EEXIST for other reasons (a name taken)
    return None


def not_a_folder_error(path: Path) -> WriteError | None:
    """The one-line error when ``path`` or one of its parents is a file, else None."""
    blocker = _file_in_the_way(path)
    if blocker is None:
        return None
    what = "is a file" if blocker == path else f"lies under {blocker}, a file"
    return WriteError(f"{path}: {what}, not a folder; choose another path")


def _file_in_the_way(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists and is not a folder."""
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            return None if part.is_dir() else part
    return None


@contextlib.contextmanager
def naming_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """A full disk or a refused write inside the block becomes a :class:`WriteError` naming
    ``path`` (a failing ``write`` or ``fsync`` names no file of its own)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        err = write_error(exc, path)
        if err is None:
            raise
        raise err from exc


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a resumable job was writing ``path``: the CLI says where it resumes from."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(str(path))
        self.path = Path(path)


@contextlib.contextmanager
def resumable(path: str | os.PathLike) -> Iterator[None]:
    """Ctrl-C inside the block is an :class:`Interrupted` naming ``path`` (the innermost
    block's: a store built while a distillation waits names the store)."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(path) from None
