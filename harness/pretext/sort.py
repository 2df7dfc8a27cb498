"""Frame sorting, OPN (Lee et al. 2017): which of the n!/2 orders are the shuffled frames in?"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch
from torch import nn

from harness.pretext.base import (ConvFusion, EmbeddingNorm, MLPHead, conv4_maps, PretextError, PretextTask, channel_split, classification_step, embed,
                                  high_motion_start, motion_box, order_class, order_classes, pick_videos, register, spaced_indices, targets,
                                  to_input)


class PairwiseOrderHead(nn.Module):
    """OPN's head: a shared fc on every pair of frame embeddings, then an fc classifier.

    ``forward`` takes the per-frame embeddings ``(B, n, D)`` (normalised by a shared
    :class:`EmbeddingNorm`); the n(n-1)/2 pairs (i < j, in input
    position order) each go through ``Linear(2D, pair_dim) + ReLU`` (shared weights), and their
    concatenation through ``Linear -> ReLU -> Linear`` to the order classes.
    """

    def __init__(self, embedding_dim: int, n_frames: int, pair_dim: int, hidden: int, n_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        self.pairs = list(itertools.combinations(range(n_frames), 2))
        self.norm = EmbeddingNorm(embedding_dim)
        self.pair_fc = nn.Sequential(nn.Linear(2 * embedding_dim, pair_dim), nn.ReLU(inplace=True))
        self.classifier = MLPHead(len(self.pairs) * pair_dim, hidden, n_classes, dropout)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        emb = self.norm(emb)
        i = [a for a, _ in self.pairs]
        j = [b for _, b in self.pairs]
        pairs = torch.cat([emb[:, i], emb[:, j]], dim=-1)  # (B, P, 2D)
        return self.classifier(self.pair_fc(pairs).flatten(1))


class PairwiseConvOrderHead(nn.Module):
    """OPN's pairwise head on convolutional features: for every pair (i < j) of the n frames,
    the two conv4 maps are fused by a shared :class:`ConvFusion`; the n(n-1)/2 pair vectors are
    concatenated and classified by ``Linear -> ReLU -> Linear``. Input ``(B, n, C, h, w)``."""

    def __init__(self, conv4_channels: int, n_frames: int, pair_dim: int, hidden: int, n_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        self.pairs = list(itertools.combinations(range(n_frames), 2))
        self.fuse = ConvFusion(conv4_channels, 2, pair_dim)
        self.classifier = MLPHead(len(self.pairs) * pair_dim, hidden, n_classes, dropout)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        b = maps.shape[0]
        pairs = torch.stack([maps[:, [i, j]] for i, j in self.pairs], dim=1)  # (B, P, 2, C, h, w)
        fused = self.fuse(pairs.flatten(0, 1)).view(b, -1)                    # (B, P * pair_dim)
        return self.classifier(fused)


@register
class SortTask(PretextTask):
    """OPN: ``n_frames`` frames from a high-motion window, shown shuffled; predict the order class.

    A permutation and its reverse share a class (n!/2 = 12 classes for 4 frames). The tuple's
    frames are at least ``min_gap`` apart in the window (order must be visible), all cropped to
    the ``crop`` x ``crop`` box with the most motion across them (OPN's motion-aware patch
    selection; 0 = whole frames), and each keeps one random colour channel (channel splitting).
    """

    name = "sort"
    arch = "vgg19_teacher"
    reference = "Lee et al., ICCV 2017 (OPN)"
    chance_note = "uniform guess over the n!/2 order classes (classes are drawn uniformly)"

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 50}}
    knob_presets = {"smoke": {"window": 10, "min_gap": 1, "crop": 0}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        n_frames: int = 4
        window: int = 16          # frames in the high-motion window the tuple is drawn from
        min_gap: int = 4          # frames between consecutive tuple frames: at least min_gap
        top_fraction: float = 0.5  # share of windows (by motion) eligible
        crop: int = 40            # > 0: every frame cropped to the crop x crop box with the most motion (OPN)
        channel_split: bool = True
        fusion: str = "conv4"     # "conv4": pairs fused on conv4 maps; "embedding": fc on [e_i; e_j]
        pair_dim: int = 64
        hidden: int = 128
        dropout: float = 0.0

    def check_knobs(self) -> None:
        k = self.knobs
        if k.n_frames < 3 or k.min_gap < 1 or k.window < (k.n_frames - 1) * k.min_gap + 1:
            raise PretextError(f"sort: need n_frames >= 3, min_gap >= 1 and window >= (n_frames - 1) * min_gap + 1, "
                               f"got n_frames={k.n_frames} min_gap={k.min_gap} window={k.window}")
        if k.fusion not in ("conv4", "embedding"):
            raise PretextError(f"sort: fusion must be 'conv4' or 'embedding', got {k.fusion!r}")
        self.classes = order_classes(k.n_frames)
        self.num_outputs = len(self.classes)

    def min_frames(self) -> int:
        return self.knobs.window

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        picks = pick_videos(videos, batch_size, self.min_frames(), rng)
        frames, target, perms, order = [], [], [], []
        for vi in picks:
            v = videos[vi]
            start = high_motion_start(v, k.window, rng, k.top_fraction)
            idx = start + spaced_indices(k.window, k.n_frames, k.min_gap, rng)
            cls = int(rng.integers(0, self.num_outputs))
            perm = np.array(self.classes[cls])
            if rng.random() < 0.5:  # the reverse shows the same class
                perm = perm[::-1].copy()
            if k.crop:
                y, x = motion_box(v[idx], k.crop, rng, top_k=3)
                clip = v[idx[perm], y:y + k.crop, x:x + k.crop]
            else:
                clip = v[idx[perm]]
            if k.channel_split:
                clip, _ = channel_split(clip, rng)
            frames.append(clip)
            target.append(cls)
            perms.append(perm)
            order.append(idx[perm])
        return {"frames": np.stack(frames), "target": np.array(target, np.int64),
                "perm": np.stack(perms), "frame_index": np.stack(order)}

    def build_head(self, embedding_dim):
        k = self.knobs
        if k.fusion == "embedding":
            return PairwiseOrderHead(embedding_dim, k.n_frames, k.pair_dim, k.hidden, self.num_outputs, k.dropout)
        return PairwiseConvOrderHead(self.conv4_channels, k.n_frames, k.pair_dim, k.hidden, self.num_outputs,
                                     k.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        frames = batch["frames"]
        b, n = frames.shape[:2]
        x = to_input(frames, self.input_size, device)
        feats = embed(backbone, x).view(b, n, -1) if self.knobs.fusion == "embedding" else conv4_maps(backbone, x, n)
        return classification_step(head(feats), targets(batch, device))
