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

from harness.pretext.base import (SiameseHead, PretextError, PretextTask, angle_class, classification_step, crop,
                                  embed, pick_videos, register, targets, to_input)
from harness.pretext.tracker import seed_box, track

DIRECTIONS = ("static", "right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def displacement_class(dy: float, dx: float, static_threshold: float) -> int:
    """Class of a displacement: 0 static (shorter than the threshold), 1..8 = :data:`DIRECTIONS`."""
    return angle_class(dy, dx, static_threshold, sectors=8)


@register
class PoseTask(PretextTask):
    """Two views of the same ``context`` x ``context`` region (centred on the patch seeded where
    frames t and t+1 differ most) at frames t and t+k; target = quantised displacement of the
    patch tracked from t to t+k. The two embeddings are concatenated and classified 9-way.
    """

    name = "pose"
    arch = "alexnet"
    reference = "Purushwalkam & Gupta, ECCV-W 2016 (interpretation: patch displacement, not human pose)"
    chance_note = ("majority-class rate of the evaluated pairs (directions are not balanced by "
                   "construction; uniform guessing would give 1/9)")
    metric_name = "accuracy"
    num_outputs = len(DIRECTIONS)

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 100}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        k: int = 3                    # frames between the two views
        patch: int = 16               # tracked patch side, pixels of the decoded frames
        context: int = 40             # side of the region both views show
        radius: int = 4               # tracker search radius per frame
        static_threshold: float = 1.5  # displacements shorter than this (pixels) are "static"
        seed_top_k: int = 3
        hidden: int = 128
        dropout: float = 0.0

    knob_presets = {"smoke": {"patch": 8, "context": 24}}

    def check_knobs(self) -> None:
        k = self.knobs
        if k.k < 1 or k.patch < 4 or k.context < k.patch:
            raise PretextError(f"pose: need k >= 1, patch >= 4, context >= patch; got {k}")

    def min_frames(self) -> int:
        return self.knobs.k + 2

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        picks = pick_videos(videos, batch_size, self.min_frames(), rng)
        frames, target, moves = [], [], []
        for vi in picks:
            v = videos[vi]
            if min(v.shape[1:3]) < k.context:
                raise PretextError(f"pose: frames {v.shape[1]}x{v.shape[2]} are smaller than the context {k.context}")
            t = int(rng.integers(0, len(v) - k.k))
            y, x = seed_box(v, t, k.patch, rng, k.seed_top_k)
            path = track(v, t, y, x, k.patch, k.k, k.radius)
            dy, dx = (path[-1] - path[0]).tolist()
            # the same region in both frames, centred on the seed patch and kept inside the frame
            cy = int(np.clip(y + k.patch // 2 - k.context // 2, 0, v.shape[1] - k.context))
            cx = int(np.clip(x + k.patch // 2 - k.context // 2, 0, v.shape[2] - k.context))
            frames.append(np.stack([crop(v[t], cy, cx, k.context), crop(v[t + k.k], cy, cx, k.context)]))
            target.append(displacement_class(dy, dx, k.static_threshold))
            moves.append((dy, dx))
        return {"frames": np.stack(frames), "target": np.array(target, np.int64), "displacement": np.array(moves)}

    def build_head(self, embedding_dim):
        return SiameseHead(embedding_dim, 2, self.knobs.hidden, self.num_outputs, self.knobs.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        frames = batch["frames"]
        b = frames.shape[0]
        emb = embed(backbone, to_input(frames, self.input_size, device)).view(b, 2, -1)
        loss, stats = classification_step(head(emb), targets(batch, device))
        counts = np.bincount(batch["target"], minlength=self.num_outputs)
        stats.update({f"count_{c}": float(n) for c, n in enumerate(counts)})
        return loss, stats

    def chance(self, stats):
        counts = [stats.get(f"count_{c}", 0.0) for c in range(self.num_outputs)]
        return max(counts) / max(sum(counts), 1.0)
