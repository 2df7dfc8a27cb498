"""Staged KD, our interpretation of Wang & Tang 2023 from its abstract only: the substage
feature-distribution losses and the progressive-cascade schedule.

The method itself (``StagedKD``, registered as ``staged-kd``) is in ``methods.py``; every
choice is a ``staged_*`` switch of ``MethodSettings``, documented in docs/DISTILL.md.

Substage loss (j = 1..P, the student's conv blocks conv1..conv4; K teachers):

    L_j = (1/K) sum_k feature_kl(A_jk(pool(s_j)), t_k)

s_j the student's block-j map, pool = adaptive average pooling to the teacher map's (h, w),
A_jk a learned 1x1 conv from block j's channels to teacher k's, t_k teacher k's cached conv4
map, feature_kl = T^2 (1/C) sum_c KL(softmax_positions(t_kc / T) || softmax_positions(. / T)),
mean over the batch. The store caches one teacher stage (conv4), so every substage is paired
with it: that pairing is our adaptation, not the paper's (which pairs "corresponding
substages").
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from harness.distill.graphs import adaptive_pool_to
from harness.distill.losses.feature_kl import feature_kl

STAGE_NAMES = ("conv1", "conv2", "conv3", "conv4")


def cascade_phase(epoch: int, epochs: int, num_stages: int, phase_epochs: int) -> int:
    """The phase of 0-based ``epoch`` in a run of ``epochs``: 1..P is cascade phase p (only
    the substage losses 1..p train), P + 1 is the whole student (P = ``num_stages``).

    The cascade takes A = min(P * phase_epochs, epochs - 1) epochs (never below 0), so at
    least one whole-student epoch remains; epoch e < A is in phase ceil((e + 1) P / A). With
    the full budget that is ceil((e + 1) / phase_epochs): P phases of ``phase_epochs`` epochs.
    A shorter run shortens the phases evenly; with A < P some phases get no epoch, but the
    last cascade epoch is always phase P (all substages). A depends only on the epoch
    numbers, so a resumed run sees the same schedule. ``phase_epochs=0`` turns the cascade off.
    """
    budget = max(0, min(num_stages * phase_epochs, epochs - 1))
    if epoch >= budget:
        return num_stages + 1
    return ((epoch + 1) * num_stages + budget - 1) // budget      # ceil((e + 1) P / A) in integers


class SubstageDistill(nn.Module):
    """The substage losses L_j (module docstring) with one 1x1 adapter per (substage, teacher).

    ``forward(stage_maps, teacher_maps, upto)`` returns [L_1, ..., L_upto] (batch means); the
    substages after ``upto`` are not computed, so their adapters get no gradient.
    """

    def __init__(self, stage_channels: Sequence[int], teacher_channels: Sequence[int], temperature: float = 1.0,
                 channel_reduction: str = "mean"):
        super().__init__()
        # adapters[j][k]: block j's channels -> teacher k's channels (pooling and a 1x1 conv
        # commute, so pooling first is the same map at a fraction of the cost)
        self.adapters = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(c_s, c_t, 1) for c_t in teacher_channels) for c_s in stage_channels)
        self.temperature = temperature
        self.channel_reduction = channel_reduction

    def forward(self, stage_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor],
                upto: int) -> list[torch.Tensor]:
        losses = []
        for s, adapters in zip(stage_maps[:upto], self.adapters[:upto]):
            per_teacher = [
                feature_kl(adapter(adaptive_pool_to(s, t.shape[-2:])).float(), t.float(), self.temperature,
                           self.channel_reduction).mean()
                for adapter, t in zip(adapters, teacher_maps)
            ]
            losses.append(torch.stack(per_teacher).mean())
        return losses
