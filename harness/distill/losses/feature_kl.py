"""Channel-wise feature-distribution KL for the staged-KD interpretation (``staged-kd``).

For a student map s and a teacher map t, both (B, C, S) (or (B, C, H, W), flattened to S),
each channel becomes a distribution over the S positions, p_c = softmax(t_c / T),
q_c = softmax(s_c / T), and per example

    L = T^2 * (1/C) sum_c KL(p_c || q_c)            (channel_reduction="mean", default)
    L = T^2 * sum_c KL(p_c || q_c)                  (channel_reduction="sum")

The T^2 factor follows Hinton KD (switch ``t2_scale``). Only the abstract of the staged-KD
paper is available, so this loss is our interpretation of "a loss based on feature
distribution". Channel counts and spatial sizes must match; adapt them upstream
(1x1 projection, ``harness.distill.graphs.adaptive_pool_to``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import LossInputError, check_choice, check_positive

_WHERE = "harness/distill/losses/feature_kl.py"


def feature_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    channel_reduction: str = "mean",
    t2_scale: bool = True,
) -> torch.Tensor:
    """Per-example channel-wise KL(teacher || student) over positions -> (B,)."""
    check_positive(_WHERE, "temperature", temperature)
    check_choice(_WHERE, "channel_reduction", channel_reduction, ("mean", "sum"))
    if student.dim() < 3 or student.shape != teacher.shape:
        raise LossInputError(
            f"{_WHERE}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} maps must "
            "both be (B, C, S) or (B, C, H, W) of the same shape"
        )
    s = student.flatten(2) / temperature
    t = teacher.flatten(2) / temperature
    log_p = F.log_softmax(t, dim=-1)
    log_q = F.log_softmax(s, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)            # (B, C)
    per = kl.mean(1) if channel_reduction == "mean" else kl.sum(1)
    return per * (temperature**2) if t2_scale else per
