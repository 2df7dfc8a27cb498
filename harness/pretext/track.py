"""Tracking (Wang & Gupta 2015): a patch and its tracked self k frames later must embed closer
than other patches (triplet ranking with in-batch hard negatives)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.pretext.base import EmbeddingNorm, PretextError, PretextTask, crop, embed, pick_videos, register, to_input
from harness.pretext.tracker import seed_box, track


@register
class TrackTask(PretextTask):
    """Query patch at frame t (seeded where frames change), positive = the same patch tracked
    ``k`` frames on (:mod:`harness.pretext.tracker`), negatives = every other item's patches in
    the batch. Distance D = 1 - cos on the backbone embeddings, each feature standardised
    over the batch by a parameter-free batch norm (batch statistics at evaluation too). Loss: per query
    the mean over its ``hard_negatives`` closest negatives of max(0, D(q, p) - D(q, n) + margin).

    Metric: the fraction of (query, negative) pairs with D(q, p) < D(q, n), over all in-batch
    negatives (both the other queries and the other positives).
    """

    name = "track"
    arch = "vgg19_teacher"
    reference = "Wang & Gupta, ICCV 2015 (tracking; simple NCC tracker instead of KCF)"
    chance_note = ("0.5: for an embedding that carries no information about which patch was tracked, "
                   "D(q,p) and D(q,n) are exchangeable, so each pair is ranked right with probability 1/2")
    metric_name = "triplet ranking accuracy"

    train_presets = {"tiny": {"epochs": 5, "iters_per_epoch": 60}}

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        k: int = 4               # frames between query and tracked patch
        patch: int = 24          # patch side in pixels of the decoded frames
        radius: int = 4          # tracker search radius per frame, pixels
        seed_top_k: int = 5      # seed drawn among the 5 boxes with most frame change
        margin: float = 0.5      # triplet loss margin on the cosine distance 1 - cos
        hard_negatives: int = 4  # per query, the closest negatives used in the loss (Wang & Gupta: top-K)
        backbone_dropout: float = 0.0  # p of the backbone's Dropout layers while pretraining (see bind_model)

    knob_presets = {"smoke": {"patch": 16, "k": 3}}

    def check_knobs(self) -> None:
        k = self.knobs
        if k.k < 1 or k.patch < 4 or k.radius < 1 or k.hard_negatives < 1 or not 0 <= k.backbone_dropout < 1:
            raise PretextError(f"track: need k >= 1, patch >= 4, radius >= 1, hard_negatives >= 1, "
                               f"0 <= backbone_dropout < 1; got {k}")

    def bind_model(self, model):
        """Set the backbone's dropout to ``backbone_dropout`` for pretraining.

        The embedding is fc7, behind dropout on fc6: with p = 0.5 the query and its positive go
        through two different random thinnings of the network, and their distance is mostly that
        noise. Dropout layers hold no weights, so the checkpoint is unchanged and fine-tuning
        rebuilds the model with its preset's dropout.
        """
        super().bind_model(model)
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = self.knobs.backbone_dropout

    def min_frames(self) -> int:
        return self.knobs.k + 2

    def sample(self, videos, batch_size, rng):
        k = self.knobs
        picks = pick_videos(videos, batch_size, self.min_frames(), rng)
        frames, boxes = [], []
        for vi in picks:
            v = videos[vi]
            if min(v.shape[1:3]) < k.patch:
                raise PretextError(f"track: frames {v.shape[1]}x{v.shape[2]} are smaller than the patch {k.patch}")
            t = int(rng.integers(0, len(v) - k.k))
            y, x = seed_box(v, t, k.patch, rng, k.seed_top_k)
            path = track(v, t, y, x, k.patch, k.k, k.radius)
            (y1, x1) = path[-1]
            frames.append(np.stack([crop(v[t], y, x, k.patch), crop(v[t + k.k], y1, x1, k.patch)]))
            boxes.append([t, y, x, t + k.k, y1, x1])
        return {"frames": np.stack(frames), "target": np.zeros(batch_size, np.int64), "boxes": np.array(boxes)}

    def build_head(self, embedding_dim):
        # no learned head: a parameter-free standardisation of each embedding feature (see
        # EmbeddingNorm), so the cosine is not swamped by the large shared mean of fresh ReLU features
        return EmbeddingNorm(embedding_dim, affine=False, running=False)

    def chance(self, stats):
        return 0.5

    def step(self, backbone, head, batch, device="cpu"):
        frames = batch["frames"]
        b = frames.shape[0]
        if b < 2:
            raise PretextError("track: in-batch negatives need a batch of at least 2")
        emb = head(embed(backbone, to_input(frames, self.input_size, device))).view(b, 2, -1)
        return triplet_step(emb[:, 0], emb[:, 1], self.knobs.margin, self.knobs.hard_negatives)


def triplet_step(query: torch.Tensor, positive: torch.Tensor, margin: float, hard_negatives: int):
    """Triplet ranking loss with in-batch hard negatives, and ranking statistics.

    ``query``, ``positive``: ``(B, D)``. Negatives of query i: every query and positive of the
    other items (2(B-1) candidates). D = 1 - cosine similarity.
    """
    b = query.shape[0]
    q = F.normalize(query, dim=1)
    cand = F.normalize(torch.cat([query, positive]), dim=1)        # (2B, D)
    d_pos = 1 - (q * F.normalize(positive, dim=1)).sum(1)          # (B,)
    d_neg = 1 - q @ cand.T                                         # (B, 2B)
    own = torch.arange(b, device=query.device)
    mask = torch.ones_like(d_neg, dtype=torch.bool)
    mask[own, own] = False
    mask[own, own + b] = False
    d_neg = d_neg[mask].view(b, 2 * b - 2)
    kh = min(hard_negatives, 2 * b - 2)
    hardest = d_neg.topk(kh, dim=1, largest=False).values
    loss = F.relu(d_pos[:, None] - hardest + margin).mean()
    correct = (d_pos[:, None] < d_neg).sum().item()
    return loss, {"correct": float(correct), "n": float(d_neg.numel())}
