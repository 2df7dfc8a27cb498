"""Frame-level datasets over a :class:`~harness.data.index.VideoIndex`, and video-level metrics.

Frame-level training and evaluation (the paper's protocol): each video contributes
``frames_per_video`` frames; a frame is one item. Training items are a random frame in
each of ``frames_per_video`` equal segments (TSN style) seen through a random view;
test items are evenly spaced frames seen through the centre view (optionally also a few
fixed crops, :func:`fixed_crops`). With ``clip_length`` > 1 an item is the clip of
``clip_length`` frames ending at the sampled frame, all seen through the same view (what
PredNet takes). The video-level
prediction is the mean of the frames' softmax outputs (:func:`video_level_predict`),
scored by :func:`evaluate` (accuracy, or mAP for multi-label sets such as CCV).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data.index import VideoIndex
from harness.data.transforms import View, apply_view, center_view, sample_view, to_tensor
from harness.data.video import count_frames, evenly_spaced, random_frames, read_video


FIXED_CROP_COUNTS = (1, 5, 10)


def fixed_crops(n: int, scale: float = 0.875, aspect: float = 1.0) -> list[View]:
    """``n`` fixed test-time views: 1 = :func:`center_view`; 5 = it and the same-sized square
    crop in each corner (top-left, top-right, bottom-left, bottom-right); 10 = those five
    and their mirror images (the classic ten-crop). ``aspect`` = frame width / height."""
    if n not in FIXED_CROP_COUNTS:
        raise ValueError(f"number of fixed crops must be one of {FIXED_CROP_COUNTS}, got {n}")
    c = center_view(scale, aspect)
    if n == 1:
        return [c]
    h, w = c.h, c.w
    five = [c] + [View(y0, x0, h, w, False) for y0 in (0.0, 1.0 - h) for x0 in (0.0, 1.0 - w)]
    if n == 5:
        return five
    return five + [View(v.y0, v.x0, v.h, v.w, True) for v in five]


def _hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    return int(size[0]), int(size[1])


class FrameDataset(Dataset):
    """A torch Dataset of ``len(index) * frames_per_video`` (video, frame) items.

    ``train=True``: per video and epoch, random frames (one per segment) and a random view
    per frame (:func:`sample_view`, scale/ratio from ``view_scale``/``view_ratio``);
    ``train=False``: evenly spaced frames and :func:`center_view` (``center_scale``). Frames
    are decoded at ``decode_size`` ((h, w) or int; None = native) and cropped/resized to
    ``size`` (``resize``: ``"squash"`` or the aspect-preserving ``"crop"``, :func:`read_video`).
    With ``cache_decoded`` each video is decoded once and kept in memory (meant
    for small sets such as the tiny preset; every DataLoader worker keeps its own copy).
    Without it, a training item seeks to its own frames; in test mode the frames every item
    of a video needs are fetched together, once, when its first item is asked for, and kept
    until an item of another video is (test items are read in order, video by video): one
    video's test frames in memory, each video decoded once per evaluation pass.

    Item ``i`` is video ``i // frames_per_video``, slot ``i % frames_per_video``. The frames
    and views chosen depend only on ``(seed, epoch, video)``; change epoch with
    :meth:`set_epoch`. With DataLoader workers, keep ``persistent_workers=False`` so each
    epoch's workers see the new epoch, and call :meth:`preload` first so the workers inherit
    the decoded frames (fork) instead of each decoding every video again. An item is ``dict(frames=(3, H, W) float32 normalised, label=int
    (-1 when unlabeled) or multi-hot float32 (C,), video=int, frame=int, crop=int)``.

    ``shared_cache``: a dict shared by several datasets (keyed by video path, mtime, size and
    ``decode_size``), so the train and test sets of several runs in one process decode each
    video once; used only with ``cache_decoded``.

    ``clip_length`` > 1: ``frames`` is ``(clip_length, 3, H, W)``, the frames
    ``frame - clip_length + 1 .. frame`` (indices below 0 clamped to 0, so early frames repeat
    the first one), every one cropped by the item's view. ``test_crops`` (test mode only):
    each test frame is seen through ``test_crops`` fixed views (:func:`fixed_crops`: 1 = the
    centre view, 5 = centre + four corners, 10 = those and their mirrors); item ``i`` is then
    video ``i // (frames_per_video * test_crops)``, frame slot and ``crop`` from the
    remainder (crop varying fastest).
    """

    def __init__(self, index: VideoIndex, frames_per_video: int, train: bool, size: int | Sequence[int],
                 seed: int, decode_size: int | Sequence[int] | None = None, cache_decoded: bool = True,
                 view_scale: tuple[float, float] = (0.5, 1.0), view_ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 center_scale: float = 0.875, clip_length: int = 1, test_crops: int = 1,
                 shared_cache: MutableMapping | None = None, resize: str = "squash"):
        if frames_per_video < 1:
            raise ValueError(f"frames_per_video must be >= 1, got {frames_per_video}")
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        if test_crops not in FIXED_CROP_COUNTS:
            raise ValueError(f"test_crops must be one of {FIXED_CROP_COUNTS}, got {test_crops}")
        self.index = index
        self.frames_per_video = int(frames_per_video)
        self.train = bool(train)
        self.size = _hw(size)
        self.seed = int(seed)
        self.decode_size = _hw(decode_size)
        self.resize = resize
        self.cache_decoded = bool(cache_decoded)
        self.view_scale, self.view_ratio, self.center_scale = view_scale, view_ratio, center_scale
        self.clip_length = int(clip_length)
        self.test_crops = int(test_crops)
        self.epoch = 0
        self._decoded: dict[int, np.ndarray] = {}
        self._shared = shared_cache
        self._num_frames: dict[int, int] = {}
        self._frame_hw: dict[int, tuple[int, int]] = {}
        self._targets = index.targets()
        self._test_window: tuple[int, dict[int, np.ndarray]] | None = None   # (video, frames by number)
        # plan() of the current epoch per video: every item of a video needs the same plan, and
        # drawing it once instead of once per item took a third of the loading time
        self._plans: dict[tuple[int, int], tuple[np.ndarray, list[View]]] = {}

    def set_epoch(self, epoch: int) -> None:
        """Select the random frames/views of ``epoch`` (train mode; test items never change)."""
        self.epoch = int(epoch)

    @property
    def items_per_video(self) -> int:
        """Items each video contributes: ``frames_per_video`` (times ``test_crops`` in test mode)."""
        return self.frames_per_video * (1 if self.train else self.test_crops)

    def __len__(self) -> int:
        return len(self.index) * self.items_per_video

    # -- decoding ---------------------------------------------------------------------

    def _video(self, v: int) -> np.ndarray:
        if v in self._decoded:
            return self._decoded[v]
        key = None
        if self._shared is not None:
            # mtime and size in the key: a video rewritten in place is decoded again
            st = os.stat(self.index[v].path)
            key = (str(self.index[v].path), st.st_mtime_ns, st.st_size, self.decode_size, self.resize)
        if self._shared is not None and key in self._shared:
            frames = self._shared[key]
        else:
            frames = read_video(self.index[v].path, size=self.decode_size, resize=self.resize)
            if self._shared is not None and self.cache_decoded:
                self._shared[key] = frames
        self._num_frames[v] = len(frames)
        self._frame_hw[v] = frames.shape[1:3]
        if self.cache_decoded:
            self._decoded[v] = frames
        return frames

    def _test_frames(self, v: int) -> dict[int, np.ndarray]:
        """Every frame the test items of video ``v`` read, by frame number (decoded in one
        seeking pass; the previous video's frames are dropped)."""
        if self._test_window is None or self._test_window[0] != v:
            self._test_window = None
            frame_ids, _ = self.plan(v)
            ids = sorted({int(i) for f in frame_ids for i in self.clip_indices(int(f))})
            imgs = read_video(self.index[v].path, indices=ids, size=self.decode_size, resize=self.resize)
            self._test_window = (v, dict(zip(ids, imgs)))
        return self._test_window[1]

    def preload(self) -> "FrameDataset":
        """Decode every video now (``cache_decoded`` only), e.g. before DataLoader workers fork."""
        if self.cache_decoded:
            for v in range(len(self.index)):
                self._video(v)
        return self

    def num_frames(self, v: int) -> int:
        """Decodable frame count of video ``v`` (decoding it once; cached)."""
        if v not in self._num_frames:
            if self.cache_decoded:
                self._video(v)
            else:
                self._num_frames[v] = count_frames(self.index[v].path)
        return self._num_frames[v]

    def _aspect(self, v: int) -> float:
        if self.decode_size is not None:
            return self.decode_size[1] / self.decode_size[0]
        if v not in self._frame_hw:
            self._frame_hw[v] = read_video(self.index[v].path, indices=[0]).shape[1:3]
        h, w = self._frame_hw[v]
        return w / h

    # -- sampling ---------------------------------------------------------------------

    def plan(self, v: int, epoch: int | None = None) -> tuple[np.ndarray, list[View]]:
        """The frame indices and views of video ``v`` for ``epoch`` (default: current one)."""
        n = self.num_frames(v)
        if not self.train:
            view = center_view(self.center_scale, self._aspect(v))
            return evenly_spaced(n, self.frames_per_video), [view] * self.frames_per_video
        epoch = self.epoch if epoch is None else int(epoch)
        if (v, epoch) in self._plans:
            return self._plans[(v, epoch)]
        if epoch == self.epoch and self._plans and next(iter(self._plans))[1] != epoch:
            self._plans.clear()  # keep one epoch's plans only
        # one stream per (seed, epoch, video): independent of access order and of workers
        rng = np.random.default_rng([self.seed, epoch, v])
        frames = random_frames(n, self.frames_per_video, rng)
        aspect = self._aspect(v)
        views = [sample_view(rng, self.view_scale, self.view_ratio, aspect) for _ in range(self.frames_per_video)]
        if epoch == self.epoch:
            self._plans[(v, epoch)] = (frames, views)
        return frames, views

    def test_views(self, v: int) -> list[View]:
        """The fixed views every test frame of video ``v`` is seen through (``test_crops`` of them)."""
        return fixed_crops(self.test_crops, self.center_scale, self._aspect(v))

    def clip_indices(self, frame: int) -> np.ndarray:
        """The ``clip_length`` frame indices of the clip ending at ``frame`` (clamped at 0)."""
        return np.maximum(np.arange(frame - self.clip_length + 1, frame + 1), 0)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        v, rem = divmod(int(i), self.items_per_video)
        k, c = divmod(rem, 1 if self.train else self.test_crops)
        frame_ids, views = self.plan(v)
        f = int(frame_ids[k])
        view = views[k] if self.train or self.test_crops == 1 else self.test_views(v)[c]
        ids = self.clip_indices(f)
        if self.cache_decoded:
            imgs = self._video(v)[ids]
        elif not self.train:
            window = self._test_frames(v)
            imgs = np.stack([window[int(i)] for i in ids])
        else:
            imgs = read_video(self.index[v].path, indices=ids, size=self.decode_size, resize=self.resize)
        x = to_tensor(apply_view(imgs, view, self.size))
        if self.clip_length == 1:
            x = x[0]
        if self.index.multilabel:
            label = torch.as_tensor(self._targets[v], dtype=torch.float32)
        else:
            label = int(self._targets[v])
        return {"frames": x, "label": label, "video": v, "frame": f, "crop": c}


# ---- video-level prediction and metrics ---------------------------------------------------

def video_level_predict(probs: np.ndarray | torch.Tensor, video_ids: Sequence[int] | np.ndarray | torch.Tensor,
                        num_videos: int | None = None) -> np.ndarray:
    """Mean of the frame-level ``probs`` (N, C) over each video's frames -> (num_videos, C)
    float64, row v = video v (``video_ids`` are indices into the VideoIndex). ``num_videos``
    defaults to ``max(video_ids) + 1``; a video with no frames gets a row of NaN."""
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    ids = video_ids.detach().cpu().numpy() if isinstance(video_ids, torch.Tensor) else np.asarray(video_ids)
    p = p.astype(np.float64)
    ids = ids.astype(np.int64).reshape(-1)
    if p.ndim != 2 or len(p) != len(ids):
        raise ValueError(f"probs must be (N, C) with N = len(video_ids) = {len(ids)}, got {p.shape}")
    if len(ids) and ids.min() < 0:
        raise ValueError("video ids must be >= 0")
    nv = int(ids.max()) + 1 if num_videos is None else int(num_videos)
    if len(ids) and ids.max() >= nv:
        raise ValueError(f"video id {ids.max()} >= num_videos {nv}")
    sums = np.zeros((nv, p.shape[1]))
    np.add.at(sums, ids, p)
    counts = np.bincount(ids, minlength=nv).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


PREDICTIONS = "predictions.npz"


def save_predictions(folder, scores, targets, video_ids) -> None:
    """Write a run's video-level test scores as ``<folder>/predictions.npz``: ``scores``
    (V, C) float32, ``targets`` (V,) class or (V, C) multi-hot, ``video_ids`` (V,) positions in
    the test split's index (the same for every run on that split, so two runs pair video by
    video). What the paired intervals of the tables resample."""
    import io

    from harness.atomic import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(buf, scores=np.asarray(scores, dtype=np.float32), targets=np.asarray(targets),
                        video_ids=np.asarray(video_ids, dtype=np.int64))
    write_bytes_atomic(Path(folder) / PREDICTIONS, buf.getvalue(), durable=False)


def load_predictions(folder) -> dict[str, np.ndarray] | None:
    """The arrays :func:`save_predictions` wrote, or None when the run has none."""
    path = Path(folder) / PREDICTIONS
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in ("scores", "targets", "video_ids")}


def evaluate(scores: np.ndarray | torch.Tensor, index: VideoIndex) -> dict:
    """Video-level metrics of ``scores`` (len(index), C) against the index's labels.

    Single-label: ``accuracy`` (fraction of videos whose arg-max is the label: the paper's
    "mean accuracy", averaged over splits by the caller) and ``mean_class_accuracy``.
    Multi-label: ``mAP``, the mean over classes with at least one positive of sklearn's
    ``average_precision_score``. ``value`` / ``metric`` give the headline number and its name.
    """
    from sklearn.metrics import average_precision_score

    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    s = s.astype(np.float64)
    if s.shape != (len(index), index.num_classes):
        raise ValueError(f"scores must be ({len(index)}, {index.num_classes}), got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN/inf (a video without frames?)")
    y = index.targets()
    if index.multilabel:
        present = np.flatnonzero(y.sum(0) > 0)
        ap = {index.classes[c]: float(average_precision_score(y[:, c], s[:, c])) for c in present}
        m = float(np.mean(list(ap.values()))) if ap else float("nan")
        return {"metric": "mAP", "value": m, "mAP": m, "per_class_ap": ap,
                "n_classes_scored": len(ap), "n_videos": len(index)}
    if (y < 0).any():
        raise ValueError("cannot evaluate an unlabeled index")
    pred = s.argmax(1)
    correct = pred == y
    per_class = [float(correct[y == c].mean()) for c in range(index.num_classes) if (y == c).any()]
    acc = float(correct.mean())
    return {"metric": "accuracy", "value": acc, "accuracy": acc,
            "mean_class_accuracy": float(np.mean(per_class)), "n_videos": len(index)}
