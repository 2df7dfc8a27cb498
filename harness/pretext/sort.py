"""Frame sorting, OPN (Lee et al. 2017): which of the n!/2 orders are the shuffled frames in?"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch
from torch import nn

from harness.pretext.base import (ConvFusion, EmbeddingNorm, MLPHead, PretextError, PretextTask, channel_split,
                                  classification_step, frame_features, high_motion_start, motion_box, order_class,
                                  order_classes, pick_videos, register, spaced_indices, targets)


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


def shown_order_class(perm) -> int:
    """Order class of a shown tuple whose input position p holds the ``perm[p]``-th earliest frame.

    The class is that of the *visiting order* ``argsort(perm)`` (the input positions listed from
    earliest to latest frame) up to reversal, i.e. of the shown frames up to playing the video
    backwards (OPN: "forward and backward permutations are the same class"): ``perm`` and
    ``n - 1 - perm`` share a class. (``perm`` and ``perm[::-1]``, the same frames in mirrored
    input positions, generally do not: that pairing would put a tuple and its time reverse,
    which look alike on reversible motion, in different classes.)
    """
    return order_class(np.argsort(np.asarray(perm)))


def adjacency_matrix(n_frames: int) -> torch.Tensor:
    """``(n!/2, n(n-1)/2)`` 0/1 matrix: entry (c, e) is 1 when the two input positions of pair e
    (``itertools.combinations`` order) hold temporally consecutive frames in order class c.

    Order class c is the visiting order ``order_classes(n)[c]`` up to reversal
    (:func:`shown_order_class`), i.e. an undirected path through the n positions, given by its
    n-1 consecutive pairs; so the rows are distinct.
    """
    pairs = {p: e for e, p in enumerate(itertools.combinations(range(n_frames), 2))}
    rows = []
    for visit in order_classes(n_frames):
        row = torch.zeros(len(pairs))
        for r in range(n_frames - 1):
            row[pairs[tuple(sorted((visit[r], visit[r + 1])))]] = 1.0
        rows.append(row)
    return torch.stack(rows)


class PairwiseAdjacencyOrderHead(nn.Module):
    """OPN's pairwise head with its last fc tied to the structure of the classes.

    Every pair (i < j) of the n frames gets one score s_ij = "how likely the two are
    consecutive in time", from a shared :class:`ConvFusion` on their conv4 maps followed by
    ``Linear(pair_dim, 1)``, made symmetric by averaging the (i, j) and (j, i) stackings (the
    question does not depend on which comes first). The logit of order class c is the sum of
    the scores of its n-1 consecutive pairs (:func:`adjacency_matrix`): the most likely class is
    the best-scoring path through the frames. This is OPN's ``concat -> fc`` with the fc's
    weights fixed to that 0/1 matrix: the pair network only has to learn temporal closeness
    (the ``motion`` task's question), not also the combinatorics of 12 classes.
    Input ``(B, n, C, h, w)``.
    """

    def __init__(self, conv4_channels: int, n_frames: int, pair_dim: int):
        super().__init__()
        self.pairs = list(itertools.combinations(range(n_frames), 2))
        self.fuse = ConvFusion(conv4_channels, 2, pair_dim)
        self.score = nn.Linear(pair_dim, 1)
        self.register_buffer("adjacency", adjacency_matrix(n_frames), persistent=False)

    def pair_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` symmetric closeness scores of the n(n-1)/2 pairs."""
        b = maps.shape[0]
        fwd = torch.stack([maps[:, [i, j]] for i, j in self.pairs], dim=1)   # (B, P, 2, C, h, w)
        both = torch.cat([fwd, fwd.flip(2)], dim=1).flatten(0, 1)             # (i, j) and (j, i)
        s = self.score(self.fuse(both)).view(b, 2, len(self.pairs))
        return s.mean(1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.pair_scores(maps) @ self.adjacency.t()


@register
class SortTask(PretextTask):
    """OPN: ``n_frames`` frames from a high-motion window, shown shuffled; predict the order class.

    A shown order and the same tuple played backwards share a class (n!/2 = 12 classes for 4
    frames; :func:`shown_order_class`), so the class is visible on time-reversible motion. The tuple's
    frames are at least ``min_gap`` apart in the window (order must be visible), all cropped to
    the ``crop`` x ``crop`` box with the most motion across them (OPN's motion-aware patch
    selection; 0 = whole frames), and shown in one random colour channel (channel splitting).

    Two readings differ from OPN (both knobs, measured in docs/PRETEXT.md): the channel is drawn
    once per tuple, not per frame (``channel_split="tuple"``; per frame, the synthetic videos'
    per-channel gains make frames differ more between channels than between times), and the
    last fc is tied to the class structure (``head="adjacency"``,
    :class:`PairwiseAdjacencyOrderHead`; OPN's free fc, ``head="fc"``, stayed at chance on the
    tiny preset's budget).
    """

    name = "sort"
    arch = "vgg19_teacher"
    reference = "Lee et al., ICCV 2017 (OPN)"
    chance_note = "uniform guess over the n!/2 order classes (classes are drawn uniformly)"

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 50, "lr": 1e-3}}
    knob_presets = {"smoke": {"window": 10, "min_gap": 1, "crop": 0}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        n_frames: int = 4         # frames per tuple (>= 3); n!/2 order classes
        window: int = 16          # frames in the high-motion window the tuple is drawn from
        min_gap: int = 4          # frames between consecutive tuple frames: at least min_gap
        top_fraction: float = 0.5  # share of windows (by motion) eligible
        crop: int = 40            # > 0: every frame cropped to the crop x crop box with the most motion (OPN)
        channel_split: str = "tuple"  # "tuple": one random channel for all frames; "frame": one per frame (OPN); "none"
        fusion: str = "conv4"     # "conv4": pairs fused on conv4 maps; "embedding": fc on [e_i; e_j]
        head: str = "adjacency"   # conv4 fusion only: "adjacency" (last fc tied to the classes) or "fc" (OPN: concat -> fc -> fc)
        pair_dim: int = 64        # width of each frame pair's feature (pair fc units or ConvFusion channels)
        hidden: int = 128         # hidden units of the classifier on the pair features (not "adjacency")
        dropout: float = 0.0      # dropout p in that classifier (not "adjacency")

    def check_knobs(self) -> None:
        k = self.knobs
        if k.n_frames < 3 or k.min_gap < 1 or k.window < (k.n_frames - 1) * k.min_gap + 1:
            raise PretextError(f"sort: need n_frames >= 3, min_gap >= 1 and window >= (n_frames - 1) * min_gap + 1, "
                               f"got n_frames={k.n_frames} min_gap={k.min_gap} window={k.window}")
        if k.fusion not in ("conv4", "embedding"):
            raise PretextError(f"sort: fusion must be 'conv4' or 'embedding', got {k.fusion!r}")
        if k.channel_split not in ("frame", "tuple", "none"):
            raise PretextError(f"sort: channel_split must be 'frame', 'tuple' or 'none', got {k.channel_split!r}")
        if k.head not in ("fc", "adjacency"):
            raise PretextError(f"sort: head must be 'fc' or 'adjacency', got {k.head!r}")
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
            visit = np.array(self.classes[cls])  # input positions from earliest to latest frame
            if rng.random() < 0.5:  # the same tuple played backwards: same class
                visit = visit[::-1]
            perm = np.argsort(visit)  # perm[p] = temporal rank of the frame at input position p
            if k.crop:
                y, x = motion_box(v[idx], k.crop, rng, top_k=3)
                clip = v[idx[perm], y:y + k.crop, x:x + k.crop]
            else:
                clip = v[idx[perm]]
            if k.channel_split == "frame":
                clip, _ = channel_split(clip, rng)
            elif k.channel_split == "tuple":
                # one channel for the whole tuple: frames stay comparable pixel by pixel
                c = int(rng.integers(0, 3))
                clip = np.ascontiguousarray(np.repeat(clip[..., c:c + 1], 3, axis=-1))
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
        if k.head == "adjacency":
            return PairwiseAdjacencyOrderHead(self.conv4_channels, k.n_frames, k.pair_dim)
        return PairwiseConvOrderHead(self.conv4_channels, k.n_frames, k.pair_dim, k.hidden, self.num_outputs,
                                     k.dropout)

    def step(self, backbone, head, batch, device="cpu"):
        feats = frame_features(backbone, batch["frames"], self.knobs.fusion, self.input_size, device)
        return classification_step(head(feats), targets(batch, device))
