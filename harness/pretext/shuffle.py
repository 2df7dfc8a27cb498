"""Shuffle & Learn (Misra et al. 2016): is a 3-frame tuple in temporal order?"""

from __future__ import annotations

import dataclasses

import numpy as np


from harness.pretext.base import (PretextError, PretextTask, classification_step, frame_features, fusion_head,
                                  high_motion_start, motion_box, pick_videos, register, spaced_indices, targets)


@register
class ShuffleTask(PretextTask):
    """Five frames a < b < c < d < e from a high-motion window; the tuple (b, c, d) is positive
    (target 1), (b, a, d) or (b, e, d) negative (target 0): the ends stay fixed, the middle frame
    comes from outside. Half of each batch is positive. Consecutive frames of a < ... < e are at
    least ``min_gap`` apart so that an out-of-place middle frame differs visibly.

    Head: ``fusion="conv4"`` stacks the three conv4 maps (in tuple order) and fuses them with
    :class:`~harness.pretext.base.ConvFusion` (whether the middle object lies between the two
    others is a question about positions, which the pooled embedding no longer holds);
    ``fusion="embedding"`` concatenates the three embeddings as Misra et al. do with fc7.
    """

    name = "shuffle"
    arch = "alexnet"
    reference = "Misra et al., ECCV 2016 (Shuffle & Learn)"
    chance_note = "0.5: balanced ordered/shuffled tuples"
    num_outputs = 2

    # 32 held-out batches (512 tuples, standard error 0.022 at chance): with 8 the metric's
    # margin over chance (0.66 vs 0.5) was under 4 standard errors, too coarse to read
    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 160, "eval_batches": 32}}
    knob_presets = {"smoke": {"window": 12, "min_gap": 1, "crop": 0}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        window: int = 20          # frames in the high-motion window the 5 frames come from
        min_gap: int = 4          # consecutive frames of a < b < c < d < e are at least min_gap apart
        top_fraction: float = 0.5  # share of windows (by motion) eligible
        crop: int = 40            # > 0: frames cropped to the crop x crop box with the most motion over a..e
        fusion: str = "conv4"     # "conv4": ConvFusion on the 3 stacked conv4 maps; "embedding": fc on [e1; e2; e3]
        hidden: int = 128         # head width: ConvFusion channels (conv4) or MLP hidden units (embedding)
        dropout: float = 0.0      # dropout p in the MLP head ("embedding" fusion only)

    def check_knobs(self) -> None:
        k = self.knobs
        if k.min_gap < 1 or k.window < 4 * k.min_gap + 1:
            raise PretextError(f"shuffle: the window must hold 5 frames min_gap apart (window >= 4 * min_gap + 1), "
                               f"got window={k.window} min_gap={k.min_gap}")
        if k.fusion not in ("conv4", "embedding"):
            raise PretextError(f"shuffle: fusion must be 'conv4' or 'embedding', got {k.fusion!r}")

    def min_frames(self) -> int:
        return self.knobs.window

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        picks = pick_videos(videos, batch_size, self.min_frames(), rng)
        positive = np.zeros(batch_size, bool)
        positive[: batch_size // 2] = True
        if batch_size % 2:
            positive[-1] = rng.random() < 0.5
        rng.shuffle(positive)
        frames, index = [], []
        for vi, pos in zip(picks, positive):
            v = videos[vi]
            start = high_motion_start(v, k.window, rng, k.top_fraction)
            a, b, c, d, e = start + spaced_indices(k.window, 5, k.min_gap, rng)
            if pos:
                tup = (b, c, d)
            else:
                tup = (b, a, d) if rng.random() < 0.5 else (b, e, d)
            if k.crop:
                y, x = motion_box(v[[a, b, c, d, e]], k.crop, rng, top_k=3)
                frames.append(v[list(tup), y:y + k.crop, x:x + k.crop])
            else:
                frames.append(v[list(tup)])
            index.append(tup)
        return {"frames": np.stack(frames), "target": positive.astype(np.int64), "frame_index": np.array(index)}

    def build_head(self, embedding_dim):
        k = self.knobs
        return fusion_head(k.fusion, embedding_dim, self.conv4_channels, 3, k.hidden, 2, k.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        feats = frame_features(backbone, batch["frames"], self.knobs.fusion, self.input_size, device)
        return classification_step(head(feats), targets(batch, device))
