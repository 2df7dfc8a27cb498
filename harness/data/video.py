"""PyAV video writing and decoding, and the frame samplers every consumer uses.

Frames are always ``uint8`` arrays of shape ``(T, H, W, 3)`` in RGB order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from harness.atomic import atomic_path
from harness.errors import HarnessError


class VideoError(HarnessError):
    """A video file that is missing or cannot be decoded; the message names the file."""


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4",
                quality: int = 4) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB to ``path``.

    ``mpeg4`` in an ``.avi`` container is what UCF101 ships (xvid); ``quality`` is the
    encoder's qscale (2 = near lossless, 31 = worst). Written to a temporary name and
    renamed, so an interrupted write never leaves a truncated video behind.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        _, height, width, _ = frames.shape
        with av.open(str(tmp), "w", format=_container_for(path)) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "mpeg4":
                # fixed quantiser: reproducible quality whatever the content
                stream.codec_context.qscale = quality
                stream.codec_context.flags |= av.codec.context.Flags.qscale
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def _container_for(path: Path) -> str | None:
    return {".avi": "avi", ".mp4": "mp4", ".mkv": "matroska", ".webm": "webm"}.get(path.suffix.lower())


def read_video(path: str | os.PathLike, indices: Sequence[int] | None = None,
               size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a video to (T, H, W, 3) uint8; optionally only ``indices`` and resized to ``size`` (H, W).

    Decoding goes frame by frame from the start (seeking in xvid AVI files is not
    frame-accurate), keeping only the requested frames, so memory stays at one clip.
    Indices past the end are clamped to the last frame.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    kept: dict[int, np.ndarray] = {}
    last = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if wanted is None or i in wanted:
                    kept[i] = _to_rgb(frame, size)
                last = (i, frame)
                if wanted is not None and i >= wanted[-1]:
                    break
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot decode video ({exc.__class__.__name__}: {exc})") from exc
    if last is None:
        raise VideoError(f"{path}: video has no decodable frames")
    if wanted is None:
        return np.stack([kept[i] for i in sorted(kept)])
    n_decoded = last[0] + 1
    if wanted[-1] >= n_decoded and (n_decoded - 1) not in kept:
        kept[n_decoded - 1] = _to_rgb(last[1], size)
    return np.stack([kept[min(int(i), n_decoded - 1)] for i in indices])


def _to_rgb(frame: "av.VideoFrame", size: tuple[int, int] | None) -> np.ndarray:
    if size is not None and (frame.height, frame.width) != tuple(size):
        frame = frame.reformat(width=size[1], height=size[0])
    return frame.to_ndarray(format="rgb24")


def count_frames(path: str | os.PathLike) -> int:
    """Number of decodable frames (container metadata is unreliable for AVI, so decode)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for _ in container.demux(stream) if _.size > 0) or 0
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot read video ({exc})") from exc


# ---- frame samplers --------------------------------------------------------------------

def evenly_spaced(num_frames: int, n: int) -> np.ndarray:
    """``n`` frame indices spread over the video, centred in ``n`` equal segments (TSN test style)."""
    if num_frames <= 0:
        raise ValueError("video has no frames")
    seg = num_frames / n
    return np.minimum((np.arange(n) * seg + seg / 2).astype(np.int64), num_frames - 1)


def random_frames(num_frames: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` frame indices, one uniformly at random in each of ``n`` equal segments (TSN train style)."""
    if num_frames <= 0:
        raise ValueError("video has no frames")
    edges = np.linspace(0, num_frames, n + 1)
    lo, hi = np.floor(edges[:-1]).astype(np.int64), np.maximum(np.floor(edges[1:]).astype(np.int64), np.floor(edges[:-1]).astype(np.int64) + 1)
    return np.minimum(rng.integers(lo, hi), num_frames - 1)


def clip_window(num_frames: int, length: int, stride: int = 1, start: int | None = None,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """``length`` indices ``start, start+stride, ...``; a random start when ``rng`` is given,
    the centred one otherwise. Short videos repeat their last frame."""
    span = (length - 1) * stride + 1
    if start is None:
        room = max(num_frames - span, 0)
        start = int(rng.integers(0, room + 1)) if rng is not None else room // 2
    return np.minimum(start + np.arange(length) * stride, num_frames - 1)
