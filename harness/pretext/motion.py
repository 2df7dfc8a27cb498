"""Temporal closeness (slowness reading of Agrawal et al. 2015): are two frames close in time?"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.pretext.base import (PretextError, PretextTask, classification_step, frame_features, fusion_head,
                                  pick_videos, register, targets)


@register
class MotionTask(PretextTask):
    """Siamese pair of frames of one video: close (gap <= k1, target 1) or far (gap >= k2, target 0).

    Agrawal et al. learn from the camera's ego-motion between two frames; videos carry no
    odometry, so the paper's "captures camera transformation between two adjacent frames ...
    determine whether two given frames are temporally close" is read as this slowness task.
    The pair is fused as the paper's T_M does (a base CNN per frame, a top CNN on the pair of
    base outputs): the two conv4 maps go through :class:`~harness.pretext.base.ConvFusion` (``fusion="conv4"``); the
    alternative ``fusion="embedding"`` classifies the concatenated embeddings. Each batch is
    exactly half close, half far, and the earlier frame comes first or second at random, so
    neither the class prior nor the slot order gives the answer.
    """

    name = "motion"
    arch = "vgg19_teacher"
    reference = "Agrawal et al., ICCV 2015 (slowness / temporal-closeness reading)"
    chance_note = "0.5: balanced close/far pairs"
    num_outputs = 2

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 100}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        k1: int = 2    # close: 1 <= gap <= k1
        k2: int = 10   # far: gap >= k2
        fusion: str = "conv4"  # "conv4": top CNN on the stacked conv4 maps (BCNN/TCNN); "embedding": fc on [e1; e2]
        hidden: int = 64        # head width: ConvFusion channels (conv4) or MLP hidden units (embedding)
        dropout: float = 0.0    # dropout p in the MLP head ("embedding" fusion only)

    def check_knobs(self) -> None:
        k = self.knobs
        self.conv4_channels = 0
        if k.fusion not in ("conv4", "embedding"):
            raise PretextError(f"motion: fusion must be 'conv4' or 'embedding', got {k.fusion!r}")
        if not 1 <= k.k1 < k.k2:
            raise PretextError(f"motion: need 1 <= k1 < k2, got k1={k.k1} k2={k.k2}")

    def min_frames(self) -> int:
        return self.knobs.k2 + 1

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        picks = pick_videos(videos, batch_size, self.min_frames(), rng)
        close = np.zeros(batch_size, bool)
        close[: batch_size // 2] = True
        if batch_size % 2:
            close[-1] = rng.random() < 0.5
        rng.shuffle(close)
        frames, pairs = [], []
        for vi, is_close in zip(picks, close):
            v = videos[vi]
            t = len(v)
            gap = int(rng.integers(1, k.k1 + 1)) if is_close else int(rng.integers(k.k2, t))
            a = int(rng.integers(0, t - gap))
            pair = (a, a + gap) if rng.random() < 0.5 else (a + gap, a)
            frames.append(v[list(pair)])
            pairs.append(pair)
        return {"frames": np.stack(frames), "target": close.astype(np.int64), "frame_index": np.array(pairs)}

    def build_head(self, embedding_dim):
        k = self.knobs
        return fusion_head(k.fusion, embedding_dim, self.conv4_channels, 2, k.hidden, 2, k.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        feats = frame_features(backbone, batch["frames"], self.knobs.fusion, self.input_size, device)
        return classification_step(head(feats), targets(batch, device))

