"""Transformation between two frames, our interpretation of "Pose from action" (Purushwalkam &
Gupta 2016).

The original learns from human pose changes in action videos; synthetic and generic videos
carry no pose annotation, so this task keeps its idea, predicting the transformation that
links two frames of the same clip, as a classification: the dominant displacement of a tracked
patch between frames t and t+k, quantised into "static" + 8 directions.
"""

from __future__ import annotations

import dataclasses

import numpy as np


from harness.pretext.base import (PretextError, PretextTask, angle_class, classification_step, crop,
                                  frame_features, fusion_head, pick_videos, register, targets, video_shapes)
from harness.pretext.tracker import seed_box, track

DIRECTIONS = ("static", "right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
DIRECTIONS4 = ("static", "right", "down", "left", "up")

# The 8 symmetries of the square as (transpose, flip rows, flip columns), applied in that order.
SYMMETRIES = tuple((tr, fy, fx) for tr in (False, True) for fy in (False, True) for fx in (False, True))


def displacement_class(dy: float, dx: float, static_threshold: float, sectors: int = 8) -> int:
    """Class of a displacement: 0 static (shorter than the threshold), else 1 + direction sector
    (:data:`DIRECTIONS` for 8 sectors, :data:`DIRECTIONS4` for 4)."""
    return angle_class(dy, dx, static_threshold, sectors=sectors)


def apply_symmetry(frames: np.ndarray, dy: float, dx: float, sym: tuple[bool, bool, bool]):
    """Frames ``(..., S, S, C)`` of a square region and a displacement under one square symmetry.

    ``sym = (transpose, flip_rows, flip_cols)``: transposing swaps (dy, dx), flipping rows
    negates dy, flipping columns negates dx, so the displacement of the transformed frames is
    known exactly.
    """
    transpose, flip_rows, flip_cols = sym
    if transpose:
        frames = np.swapaxes(frames, -3, -2)
    if flip_rows:
        frames = frames[..., ::-1, :, :]
    if flip_cols:
        frames = frames[..., :, ::-1, :]
    return (np.ascontiguousarray(frames),) + moved(dy, dx, sym)


def moved(dy: float, dx: float, sym: tuple[bool, bool, bool]) -> tuple[float, float]:
    """The displacement (dy, dx) after the symmetry ``sym`` of :func:`apply_symmetry`."""
    transpose, flip_rows, flip_cols = sym
    if transpose:
        dy, dx = dx, dy
    return (-dy if flip_rows else dy), (-dx if flip_cols else dx)


@register
class PoseTask(PretextTask):
    """Two views of the same ``context`` x ``context`` region (centred on the patch seeded where
    frames t and t+1 differ most) at frames t and t+k; target = quantised displacement of the
    patch tracked from t to t+k ("static" + ``sectors`` directions).

    Classes are balanced by construction (``balance``): each item's class is drawn uniformly;
    candidates (video, t, seed) are tracked until one of the right kind (static, or moving along
    an axis / a diagonal sector) turns up (at most ``max_tries``), and a symmetry of the square
    (transpose / flips of both views, :func:`apply_symmetry`) turns its direction into the drawn
    one. Raw directions on the synthetic set are far from uniform (about half static).

    Head: ``fusion="conv4"`` fuses the two conv4 maps with :class:`~harness.pretext.base.ConvFusion`
    (a displacement is a question about positions); ``"embedding"`` concatenates the embeddings.
    """

    name = "pose"
    arch = "alexnet"
    reference = "Purushwalkam & Gupta, ECCV-W 2016 (interpretation: patch displacement, not human pose)"
    chance_note = ("majority-class rate of the evaluated pairs (1/(sectors+1) when every draw found its "
                   "class, which balance=True aims for)")
    metric_name = "accuracy"
    num_outputs = len(DIRECTIONS)

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 80}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        k: int = 3                    # frames between the two views
        patch: int = 16               # tracked patch side, pixels of the decoded frames
        context: int = 40             # side of the region both views show
        radius: int = 4               # tracker search radius per frame
        static_threshold: float = 1.5  # displacements shorter than this (pixels) are "static"
        seed_top_k: int = 3            # seed patch drawn among the top_k boxes with most frame change
        sectors: int = 8               # direction classes (4 or 8), plus "static"
        balance: bool = True           # classes uniform by construction (see the class docstring)
        max_tries: int = 40            # candidates tracked per item to find the drawn class's kind
        fusion: str = "conv4"          # "conv4": ConvFusion on the 2 conv4 maps; "embedding": fc on [e1; e2]
        hidden: int = 128              # head width: ConvFusion channels (conv4) or MLP hidden units (embedding)
        dropout: float = 0.0           # dropout p in the MLP head ("embedding" fusion only)

    knob_presets = {"smoke": {"patch": 8, "context": 24}}

    def check_knobs(self) -> None:
        k = self.knobs
        if k.k < 1 or k.patch < 4 or k.context < k.patch:
            raise PretextError(f"pose: need k >= 1, patch >= 4, context >= patch; got {k}")
        if k.sectors not in (4, 8) or k.max_tries < 1:
            raise PretextError(f"pose: sectors must be 4 or 8 and max_tries >= 1; got sectors={k.sectors} "
                               f"max_tries={k.max_tries}")
        if k.fusion not in ("conv4", "embedding"):
            raise PretextError(f"pose: fusion must be 'conv4' or 'embedding', got {k.fusion!r}")
        self.num_outputs = k.sectors + 1

    def min_frames(self) -> int:
        return self.knobs.k + 2

    def _kind(self, cls: int) -> int:
        """0 static, 1 a direction along an axis, 2 a diagonal one (8 sectors only)."""
        if cls == 0:
            return 0
        return 1 if self.knobs.sectors == 4 or (cls - 1) % 2 == 0 else 2

    def _candidate(self, videos, ok, rng):
        """One tracked region pair: (frames (2, C, C, 3), dy, dx, class)."""
        k = self.knobs
        v = videos[ok[int(rng.integers(0, len(ok)))]]
        t = int(rng.integers(0, len(v) - k.k))
        y, x = seed_box(v, t, k.patch, rng, k.seed_top_k)
        path = track(v, t, y, x, k.patch, k.k, k.radius)
        dy, dx = (path[-1] - path[0]).tolist()
        # the same region in both frames, centred on the seed patch and kept inside the frame
        cy = int(np.clip(y + k.patch // 2 - k.context // 2, 0, v.shape[1] - k.context))
        cx = int(np.clip(x + k.patch // 2 - k.context // 2, 0, v.shape[2] - k.context))
        pair = np.stack([crop(v[t], cy, cx, k.context), crop(v[t + k.k], cy, cx, k.context)])
        return pair, dy, dx, displacement_class(dy, dx, k.static_threshold, k.sectors)

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        shapes = video_shapes(videos)
        ok = [i for i, s in enumerate(shapes) if s[0] >= self.min_frames()]
        if not ok:
            pick_videos(videos, 1, self.min_frames(), rng)  # raises the shared "no video has ..." error
        small = [shapes[i] for i in ok if min(shapes[i][1:3]) < k.context]
        if small:
            raise PretextError(f"pose: frames {small[0][1]}x{small[0][2]} are smaller than the context {k.context}")
        frames, target, moves = [], [], []
        for _ in range(batch_size):
            wanted = int(rng.integers(0, self.num_outputs)) if k.balance else -1
            for _ in range(k.max_tries if k.balance else 1):
                pair, dy, dx, cls = self._candidate(videos, ok, rng)
                if not k.balance or self._kind(cls) == self._kind(wanted):
                    break
            if k.balance:
                # a random symmetry of the square among those giving the drawn class (any one when
                # no candidate of the right kind turned up)
                syms = [s for s in SYMMETRIES
                        if displacement_class(*moved(dy, dx, s), k.static_threshold, k.sectors) == wanted]
                syms = syms or list(SYMMETRIES)
                pair, dy, dx = apply_symmetry(pair, dy, dx, syms[int(rng.integers(0, len(syms)))])
            frames.append(pair)
            target.append(displacement_class(dy, dx, k.static_threshold, k.sectors))
            moves.append((dy, dx))
        return {"frames": np.stack(frames), "target": np.array(target, np.int64), "displacement": np.array(moves)}

    def build_head(self, embedding_dim):
        k = self.knobs
        return fusion_head(k.fusion, embedding_dim, self.conv4_channels, 2, k.hidden, self.num_outputs, k.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        feats = frame_features(backbone, batch["frames"], self.knobs.fusion, self.input_size, device)
        loss, stats = classification_step(head(feats), targets(batch, device))
        counts = np.bincount(batch["target"], minlength=self.num_outputs)
        stats.update({f"count_{c}": float(n) for c, n in enumerate(counts)})
        return loss, stats

    def chance(self, stats):
        counts = [stats.get(f"count_{c}", 0.0) for c in range(self.num_outputs)]
        return max(counts) / max(sum(counts), 1.0)
