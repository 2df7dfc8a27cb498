"""The on-disk frame cache: videos decoded once into uint8 ``.npy`` files and read back as
memory maps, so a step that samples frames from many whole videos (pretraining) holds one
video's frames in RAM at a time, whatever the dataset size, instead of every video.

A cached video is ``<root>/<key>.npy``, ``(T, H, W, 3)`` uint8, the exact array
:func:`harness.data.video.read_video` returns; ``key`` hashes the video's absolute path,
modification time and size and the decoding settings, so a rewritten video or another
decode size is decoded again. Files are written under a temporary name and renamed, so a
killed process never leaves a partial one. ``root`` is ``$HARNESS_FRAME_CACHE`` or
``cache/frames``; the folder can be deleted at any time (it is refilled on the next run).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.atomic import atomic_path
from harness.errors import HarnessError, WriteError
from harness.provenance import fingerprint

FRAME_CACHE_ENV = "HARNESS_FRAME_CACHE"


class FrameCacheError(HarnessError):
    """The frame cache folder cannot be written (full disk, not a folder, no permission)."""

FORMAT_VERSION = 1


def frame_cache_root() -> Path:
    """``$HARNESS_FRAME_CACHE`` or ``cache/frames``."""
    return Path(os.environ.get(FRAME_CACHE_ENV, Path("cache") / "frames"))


def cache_file(video: Path, settings: dict, root: Path) -> Path:
    """Where the frames of ``video`` decoded with ``settings`` are cached."""
    st = os.stat(video)
    key = fingerprint({"video": str(Path(video).resolve()), "mtime_ns": st.st_mtime_ns, "bytes": st.st_size,
                       "settings": settings, "format": FORMAT_VERSION})
    return root / key[:2] / f"{key[:32]}.npy"


def cached_shape(path: Path) -> tuple[int, ...] | None:
    """The array shape of a complete cache file, or None when there is none (or it is unreadable)."""
    try:
        return tuple(np.load(path, mmap_mode="r").shape)
    except (OSError, ValueError):
        return None


def decode_once(video: Path, settings: dict, decode: Callable[[Path], np.ndarray], root: Path) -> tuple[Path, tuple]:
    """The cache file of ``video`` (written with ``decode(video)`` if missing) and its shape."""
    path = cache_file(video, settings, root)
    shape = cached_shape(path)
    if shape is None:
        frames = np.ascontiguousarray(decode(video), dtype=np.uint8)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, frames)
        except (OSError, WriteError) as exc:   # the atomic writer names full disks and blocked folders
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise FrameCacheError(f"{root}: cannot write the frame cache ({reason}); free space "
                                  f"or point ${FRAME_CACHE_ENV} at another folder") from exc
        shape = frames.shape
    return path, tuple(shape)


class DiskVideos(Sequence):
    """Cached videos as a sequence of read-only ``(T, H, W, 3)`` uint8 memory maps (opened on
    access), with their ``shapes`` known without opening them. ``pad_to`` > 0: a video with
    fewer frames is returned with its last frame repeated up to ``pad_to`` (a copy in RAM)."""

    def __init__(self, files: Sequence[Path], shapes: Sequence[tuple], pad_to: int = 0):
        self.files = list(files)
        self.pad_to = int(pad_to)
        self.shapes = [(max(s[0], self.pad_to), *s[1:]) for s in shapes]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        frames = np.load(self.files[i], mmap_mode="r")
        if len(frames) < self.pad_to:
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.pad_to - len(frames), axis=0)])
        return frames

    def select(self, indices: Sequence[int]) -> "DiskVideos":
        """The videos at ``indices``, in that order."""
        out = DiskVideos([self.files[int(i)] for i in indices], [], self.pad_to)
        out.shapes = [self.shapes[int(i)] for i in indices]
        return out
