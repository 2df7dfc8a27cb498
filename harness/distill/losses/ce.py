"""Hard-label classification losses: the (1 - lambda) * CE term of Eq. 2-3.

Single-label (UCF101, HMDB51): ``CE = -log softmax(z)_y`` per example.
Multi-label (CCV, multi-hot targets y in {0,1}^C):
``BCE = -(1/C) sum_c [y_c log sigmoid(z_c) + (1 - y_c) log(1 - sigmoid(z_c))]`` per example,
computed from logits in the numerically stable form.
Soft targets (staged-KD's refined labels, rows of a distribution r):
``CE_soft = -sum_c r_c log softmax(z)_c`` per example (= CE when r is one-hot).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import LossInputError, check_choice, check_shape

_WHERE = "harness/distill/losses/ce.py"
_REDUCTIONS = ("mean", "sum", "none")


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    check_choice(_WHERE, "reduction", reduction, _REDUCTIONS)
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Single-label cross-entropy ``-log softmax(logits)[y]``; logits (B, C), target (B,) int."""
    check_shape(_WHERE, "logits", logits, 2)
    check_shape(_WHERE, "target", target, 1)
    if target.shape[0] != logits.shape[0]:
        raise LossInputError(
            f"{_WHERE}: target has {target.shape[0]} items but logits has {logits.shape[0]}"
        )
    if target.dtype.is_floating_point:
        raise LossInputError(f"{_WHERE}: single-label target must be integer class ids, got {target.dtype}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
        raise LossInputError(
            f"{_WHERE}: target class ids must lie in [0, {logits.shape[1] - 1}], "
            f"got [{int(target.min())}, {int(target.max())}]"
        )
    per = F.cross_entropy(logits, target.long(), reduction="none")
    return _reduce(per, reduction)


def bce_multilabel(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-label BCE-with-logits averaged over classes; logits and multi-hot target (B, C)."""
    check_shape(_WHERE, "logits", logits, 2)
    check_shape(_WHERE, "target", target, 2)
    if target.shape != logits.shape:
        raise LossInputError(
            f"{_WHERE}: multi-hot target shape {tuple(target.shape)} != logits {tuple(logits.shape)}"
        )
    per = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none").mean(1)
    return _reduce(per, reduction)


def classification_loss(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Dispatch on the target: (B,) int -> ``cross_entropy``; (B, C) multi-hot -> ``bce_multilabel``."""
    if isinstance(target, torch.Tensor) and target.dim() == 2:
        return bce_multilabel(logits, target, reduction)
    return cross_entropy(logits, target, reduction)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy against a soft target: ``-(target * log_softmax(logits)).sum(-1)``.

    logits and target (B, C); each target row is a distribution (not checked: callers build it).
    """
    check_shape(_WHERE, "logits", logits, 2)
    check_shape(_WHERE, "target", target, 2)
    if target.shape != logits.shape:
        raise LossInputError(
            f"{_WHERE}: soft target shape {tuple(target.shape)} != logits {tuple(logits.shape)}"
        )
    per = -(target.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(-1)
    return _reduce(per, reduction)
