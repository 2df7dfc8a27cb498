"""PyAV video writing and decoding, and the frame samplers every consumer uses.

Frames are always ``uint8`` arrays of shape ``(T, H, W, 3)`` in RGB order.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from harness.atomic import atomic_path
from harness.errors import HarnessError


class VideoError(HarnessError):
    """A video file that is missing or cannot be decoded; the message names the file."""


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int | Fraction = 25, codec: str = "mpeg4",
                quality: int = 4, keyframe_every: int | None = None, b_frames: int | None = None) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB to ``path``.

    ``mpeg4`` in an ``.avi`` container is what UCF101 ships (xvid); ``quality`` is the
    encoder's qscale (2 = near lossless, 31 = worst). ``keyframe_every`` (the GOP size) and
    ``b_frames`` (most B-frames in a row) default to the encoder's. Written to a temporary
    name and renamed, so an interrupted write never leaves a truncated video behind.
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
            if keyframe_every is not None:
                stream.codec_context.gop_size = int(keyframe_every)
            if b_frames is not None:
                stream.codec_context.max_b_frames = int(b_frames)
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


RESIZE_MODES = ("squash", "crop")


class TruncatedVideo(VideoError):
    """A video whose container promises more frames than can be decoded (a cut or damaged file)."""


def read_video(path: str | os.PathLike, indices: Sequence[int] | None = None,
               size: tuple[int, int] | None = None, resize: str = "squash") -> np.ndarray:
    """Decode a video to (T, H, W, 3) uint8; optionally only ``indices`` and resized to ``size`` (H, W).

    ``resize="squash"`` scales each frame to ``size`` whatever its aspect ratio;
    ``resize="crop"`` scales it, keeping the aspect ratio, to the smallest size covering
    ``size`` and cuts the centre ``size`` out of it.

    With ``indices``, decoding seeks to the keyframe before the first wanted frame and
    decodes forward from there (:func:`_seek_decode`); frames are numbered by their
    presentation time, and a video whose timestamps do not give whole, consecutive frame
    numbers is decoded from its start instead, so the frames are those of a full decode.
    Memory stays at the requested frames. Indices past the end are clamped to the last frame.
    A video that decodes fewer frames than its container declares raises :class:`TruncatedVideo`
    (when the decoding reaches its end).
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    if wanted is not None and not wanted:
        raise ValueError(f"{path}: no frame indices requested")
    convert = _converter(size, resize)
    try:
        kept, n_decoded, declared = None, 0, 0
        if wanted is not None and wanted[0] > 0:
            kept, n_decoded, declared = _seek_decode(path, wanted, convert)
        if kept is None:
            kept, n_decoded, declared = _linear_decode(path, wanted, convert)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot decode video ({exc.__class__.__name__}: {exc})") from exc
    if n_decoded == 0:
        raise VideoError(f"{path}: video has no decodable frames")
    reached_end = wanted is None or wanted[-1] >= n_decoded
    if reached_end and declared > n_decoded:
        raise TruncatedVideo(f"{path}: truncated video: {n_decoded} of the {declared} frames its container "
                             f"declares decode")
    if wanted is None:
        return np.stack([kept[i] for i in range(n_decoded)])
    return np.stack([kept[min(int(i), n_decoded - 1)] for i in indices])


def _open_stream(container) -> "av.VideoStream":
    if not container.streams.video:
        raise av.error.InvalidDataError(0, "file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _declared_frames(stream) -> int:
    """The frame count the container header states (0 when it states none)."""
    return max(int(stream.frames or 0), 0)


def _linear_decode(path: Path, wanted: list[int] | None, convert) -> tuple[dict, int, int]:
    """Decode from the first frame, keeping ``wanted`` (all when None) until the last wanted one;
    also keeps the last decoded frame, the clamp target of indices past the end.
    Returns the kept frames by number, the frames decoded, and the declared count."""
    kept: dict[int, np.ndarray] = {}
    wanted_set = None if wanted is None else set(wanted)
    last = None
    n = 0
    with av.open(str(path)) as container:
        stream = _open_stream(container)
        declared = _declared_frames(stream)
        first_pts = None
        try:
            for i, frame in enumerate(container.decode(stream)):
                if wanted_set is None or i in wanted_set:
                    kept[i] = convert(frame)
                last, n = frame, i + 1
                first_pts = frame.pts if i == 0 else first_pts
                if wanted is not None and i >= wanted[-1]:
                    break
            if last is not None and _spanned_frames(stream, first_pts, last.pts) >= declared:
                # the timeline reaches the declared end: frames were dropped inside (xvid's
                # empty placeholder frames), the file is not cut
                declared = min(declared, n)
        except av.error.FFmpegError:
            if n == 0:
                raise
            declared = max(declared, n + 1)   # an error after some frames: the file is cut or damaged
    if n and n - 1 not in kept:
        kept[n - 1] = convert(last)
    return kept, n, declared


def _spanned_frames(stream, first_pts: int | None, last_pts: int | None) -> int:
    """Frame periods from the first to the last decoded frame, plus one (0 when unknown)."""
    fps, tb = stream.average_rate or stream.guessed_rate, stream.time_base
    if first_pts is None or last_pts is None or not fps or not tb:
        return 0
    return int(round((last_pts - first_pts) * tb * fps)) + 1


def _seek_decode(path: Path, wanted: list[int], convert) -> tuple[dict | None, int, int]:
    """Seek to the keyframe at or before frame ``wanted[0]``, decode forward to ``wanted[-1]``.

    A frame's number is ``(pts - start) * time_base * fps``. Returns ``(None, 0, 0)`` (the
    caller then decodes from the start) when that is not safe: no timestamps or no frame rate,
    a number that is not whole, a gap between consecutive frames, or a seek that landed after
    the first wanted frame."""
    wanted_set = set(wanted)
    kept: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = _open_stream(container)
        declared = _declared_frames(stream)
        fps, tb = stream.average_rate or stream.guessed_rate, stream.time_base
        if not fps or not tb:
            return None, 0, 0
        start = _first_pts(container, stream)
        if start is None:
            return None, 0, 0
        # half a frame before the wanted one: rounding of the container's timestamps cannot
        # land the seek just after it
        target = start + int((Fraction(wanted[0]) - Fraction(1, 2)) / (fps * tb))
        container.seek(max(target, start), stream=stream, backward=True, any_frame=False)
        last, prev = None, None
        for frame in container.decode(stream):
            if frame.pts is None:
                return None, 0, 0
            exact = (frame.pts - start) * tb * fps
            i = round(exact)
            if abs(exact - i) > Fraction(1, 4) or (prev is None and i > wanted[0]) or (
                    prev is not None and i != prev + 1):
                return None, 0, 0
            if i in wanted_set:
                kept[i] = convert(frame)
            last, prev = frame, i
            if i >= wanted[-1]:
                break
        if last is None:
            return None, 0, 0
    if prev not in kept:
        kept[prev] = convert(last)
    return kept, prev + 1, declared


def _first_pts(container, stream) -> int | None:
    """The timestamp of frame 0: that of the first decoded frame, not the stream's start time
    (AVI stores decode times, so with B-frames the first frame comes out one tick late)."""
    for frame in container.decode(stream):
        return frame.pts
    return None


def _converter(size: tuple[int, int] | None, resize: str):
    """The function turning a decoded frame into a uint8 RGB array of ``size`` (None = native)."""
    def convert(frame: "av.VideoFrame") -> np.ndarray:
        if size is None or (frame.height, frame.width) == tuple(size):
            return frame.to_ndarray(format="rgb24")
        if resize == "squash":
            return frame.reformat(width=size[1], height=size[0]).to_ndarray(format="rgb24")
        h, w = cover_size(frame.height, frame.width, size)
        rgb = frame.reformat(width=w, height=h).to_ndarray(format="rgb24")
        top, left = (h - size[0]) // 2, (w - size[1]) // 2
        return np.ascontiguousarray(rgb[top:top + size[0], left:left + size[1]])
    return convert


def cover_size(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of a ``height`` x ``width`` frame scaled, aspect kept, to just cover ``size``."""
    scale = max(size[0] / height, size[1] / width)
    return max(size[0], round(height * scale)), max(size[1], round(width * scale))


def video_fps(path: str | os.PathLike) -> Fraction:
    """The video's frame rate (the container's average rate, else the codec's guess)."""
    try:
        with av.open(str(path)) as container:
            stream = _open_stream(container)
            rate = stream.average_rate or stream.guessed_rate
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot read video ({exc})") from exc
    if not rate:
        raise VideoError(f"{path}: the container states no frame rate (needed to resample it in time)")
    return Fraction(rate)


def resampled_indices(path: str | os.PathLike, fps: float) -> np.ndarray:
    """Frame numbers that resample the video to ``fps``: for each time k / fps within the video,
    the frame shown then (the last one starting at or before it)."""
    n, native = count_frames(path), video_fps(path)
    ratio = Fraction(native) / Fraction(fps).limit_denominator(1000)
    count = max(1, int(n / ratio))
    return np.array([min(int(k * ratio), n - 1) for k in range(count)], dtype=np.int64)


def count_frames(path: str | os.PathLike) -> int:
    """Number of video packets (container metadata is unreliable for AVI, so demux); a file
    with fewer than its header declares raises :class:`TruncatedVideo`."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            stream = _open_stream(container)
            declared = _declared_frames(stream)
            n, first_dts, last_dts = 0, None, None
            for packet in container.demux(stream):
                if packet.size > 0:
                    n += 1
                    first_dts = packet.dts if first_dts is None else first_dts
                    last_dts = packet.dts
            # the timeline, not the packet count, tells a cut file: dropped frames (empty
            # placeholders in xvid AVIs) leave gaps in it but reach the declared end
            spanned = _spanned_frames(stream, first_dts, last_dts)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: cannot read video ({exc})") from exc
    if n == 0:
        raise VideoError(f"{path}: video has no frames")
    if declared > max(n, spanned):
        raise TruncatedVideo(f"{path}: truncated video: {n} of the {declared} frames its container declares")
    return n


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
