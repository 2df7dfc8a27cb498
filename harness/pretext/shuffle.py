"""Shuffle & Learn (Misra et al. 2016): is a 3-frame tuple in temporal order?"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.pretext.base import (SiameseHead, PretextError, PretextTask, classification_step, embed,
                                  high_motion_start, pick_videos, register, targets, to_input)


@register
class ShuffleTask(PretextTask):
    """Five frames a < b < c < d < e from a high-motion window; the tuple (b, c, d) is positive
    (target 1), (b, a, d) or (b, e, d) negative (target 0): the ends stay fixed, the middle frame
    comes from outside. Half of each batch is positive. The three embeddings are concatenated
    and classified (Misra et al. concatenate fc7 of a triplet siamese AlexNet).
    """

    name = "shuffle"
    arch = "alexnet"
    reference = "Misra et al., ECCV 2016 (Shuffle & Learn)"
    chance_note = "0.5: balanced ordered/shuffled tuples"
    num_outputs = 2

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 100}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        window: int = 12          # frames in the high-motion window the 5 frames come from
        top_fraction: float = 0.5
        hidden: int = 128
        dropout: float = 0.0

    def check_knobs(self) -> None:
        if self.knobs.window < 5:
            raise PretextError(f"shuffle: window must hold 5 frames, got window={self.knobs.window}")

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
            a, b, c, d, e = start + np.sort(rng.choice(k.window, size=5, replace=False))
            if pos:
                tup = (b, c, d)
            else:
                tup = (b, a, d) if rng.random() < 0.5 else (b, e, d)
            frames.append(v[list(tup)])
            index.append(tup)
        return {"frames": np.stack(frames), "target": positive.astype(np.int64), "frame_index": np.array(index)}

    def build_head(self, embedding_dim):
        return SiameseHead(embedding_dim, 3, self.knobs.hidden, 2, self.knobs.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        frames = batch["frames"]
        b = frames.shape[0]
        emb = embed(backbone, to_input(frames, self.input_size, device)).view(b, 3, -1)
        return classification_step(head(emb), targets(batch, device))
