"""Pseudo-label refinement for the staged-KD interpretation (``staged-kd``).

The staged-KD abstract (Wang & Tang 2023) names "a pseudo-label optimization strategy to
improve the initial data label" without giving it; this is our reading. With K teachers'
logits z_k, temperature T, the true class y, mixing weight alpha and confidence tau:

    q      = (1/K) sum_k softmax(z_k / T)                         (the teachers' consensus)
    y'     = argmax q   if max q >= tau and argmax q != y          (a confident, disagreeing
             y          otherwise                                   consensus replaces the label)
    target = (1 - alpha) * onehot(y') + alpha * q

Each target row is a distribution (sums to 1). Single-label targets only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._common import LossInputError, check_positive, check_shape

_WHERE = "harness/distill/losses/pseudo_label.py"


class RefinedLabels(NamedTuple):
    target: torch.Tensor       # (B, C) soft target, rows sum to 1
    consensus: torch.Tensor    # (B, C) q, the mean softened teacher distribution
    replaced: torch.Tensor     # (B,) bool, True where the label was replaced by argmax q


def teacher_consensus(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``q = (1/K) sum_k softmax(z_k / T)`` from teacher logits (B, K, C) -> (B, C)."""
    check_shape(_WHERE, "teacher_logits", teacher_logits, 3)
    check_positive(_WHERE, "temperature", temperature)
    return torch.softmax(teacher_logits / temperature, dim=-1).mean(1)


def refine_labels(teacher_logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.3, tau: float = 0.9,
                  temperature: float = 4.0) -> RefinedLabels:
    """Soft targets mixed with the teachers' consensus; labels replaced where the consensus is
    confident (``max q >= tau``) and disagrees (``argmax q != y``). See the module docstring.

    teacher_logits (B, K, C); target (B,) integer class ids. Nothing here is differentiated
    (the teachers are frozen), so the result carries no gradient.
    """
    q = teacher_consensus(teacher_logits.detach(), temperature)
    if target.dim() != 1 or target.dtype.is_floating_point or target.shape[0] != q.shape[0]:
        raise LossInputError(f"{_WHERE}: target must be {q.shape[0]} integer class ids (single-label), "
                             f"got {tuple(target.shape)} {target.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise LossInputError(f"{_WHERE}: alpha must lie in [0, 1], got {alpha!r}")
    conf, top = q.max(-1)
    replaced = (conf >= tau) & (top != target)
    label = torch.where(replaced, top, target.long())
    onehot = torch.nn.functional.one_hot(label, q.shape[-1]).to(q.dtype)
    return RefinedLabels((1.0 - alpha) * onehot + alpha * q, q, replaced)
