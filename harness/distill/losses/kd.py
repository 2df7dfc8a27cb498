"""Hinton knowledge distillation (Hinton et al. 2015) and its uniform multi-teacher average.

Per example, for teacher logits t and student logits s (C classes) at temperature T:

    KD_T(s, t) = T^2 * KL(softmax(t / T) || softmax(s / T))
               = T^2 * sum_c p_c (log p_c - log q_c),   p = softmax(t/T), q = softmax(s/T)

The T^2 factor keeps the gradient scale independent of T (Hinton et al., Sec. 2).
"KD (uniform)" of Table 2: ``(1/K) sum_k KD_{T_k}(s, t_k)`` with one temperature per teacher.
``kd_to_distribution(s, p, T) = T^2 KL(p || softmax(s / T))`` takes the target distribution p
itself (staged KD: the teachers' consensus, already softened at T).
Teachers are frozen targets: their logits are used as given (detach them upstream if needed).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ._common import LossInputError, check_choice, check_positive, check_shape

_WHERE = "harness/distill/losses/kd.py"


def _as_temperatures(temperature, k: int, like: torch.Tensor) -> torch.Tensor:
    """Return a (k,) tensor of temperatures from a float, a sequence or a tensor."""
    if isinstance(temperature, torch.Tensor):
        t = temperature.to(like.dtype).reshape(-1)
    elif isinstance(temperature, (int, float)):
        check_positive(_WHERE, "temperature", temperature)
        t = torch.full((1,), float(temperature), dtype=like.dtype, device=like.device)
    else:
        vals = [float(v) for v in temperature]
        for v in vals:
            check_positive(_WHERE, "temperature", v)
        t = torch.tensor(vals, dtype=like.dtype, device=like.device)
    if t.numel() == 1:
        t = t.expand(k)
    if t.numel() != k:
        raise LossInputError(f"{_WHERE}: got {t.numel()} temperatures for {k} teachers")
    return t


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float | torch.Tensor = 4.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` per example; both (B, C).

    ``reduction``: "mean" over the batch (a scalar) or "none" (B,).
    """
    check_shape(_WHERE, "student_logits", student_logits, 2)
    check_shape(_WHERE, "teacher_logits", teacher_logits, 2)
    if student_logits.shape != teacher_logits.shape:
        raise LossInputError(
            f"{_WHERE}: student {tuple(student_logits.shape)} and teacher "
            f"{tuple(teacher_logits.shape)} logits differ in shape"
        )
    per = kd_multi(student_logits, teacher_logits.unsqueeze(1), temperature, reduction="none")
    return per.mean() if reduction == "mean" else per


def kd_multi(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperatures: float | Sequence[float] | torch.Tensor = 4.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Uniform multi-teacher KD: ``(1/K) sum_k T_k^2 KL(softmax(t_k/T_k) || softmax(s/T_k))``.

    student_logits (B, C), teacher_logits (B, K, C), temperatures a float or K values.
    ``reduction``: "mean" over the batch, or "none" (B,).
    """
    check_shape(_WHERE, "student_logits", student_logits, 2)
    check_shape(_WHERE, "teacher_logits", teacher_logits, 3)
    b, k, c = teacher_logits.shape
    if student_logits.shape != (b, c):
        raise LossInputError(
            f"{_WHERE}: student logits {tuple(student_logits.shape)} do not match teacher logits "
            f"(B, K, C)={tuple(teacher_logits.shape)}"
        )
    check_choice(_WHERE, "reduction", reduction, ("mean", "none"))
    t = _as_temperatures(temperatures, k, student_logits).view(1, k, 1)
    log_p = F.log_softmax(teacher_logits / t, dim=-1)          # (B, K, C)
    log_q = F.log_softmax(student_logits.unsqueeze(1) / t, dim=-1)
    # p * (log p - log q); exp(log_p) keeps exact zeros harmless (0 * finite = 0).
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)                # (B, K)
    per = (t.view(1, k) ** 2 * kl).mean(1)                       # (B,)
    return per.mean() if reduction == "mean" else per


def kd_to_distribution(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    temperature: float = 4.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """``T^2 * KL(p || softmax(s/T))`` per example for a given target distribution p (B, C).

    The target is used as given: soften it at the same T upstream (e.g. the mean of the
    teachers' ``softmax(t_k / T)``). ``reduction``: "mean" over the batch or "none" (B,).
    """
    check_positive(_WHERE, "temperature", temperature)
    check_shape(_WHERE, "student_logits", student_logits, 2)
    check_shape(_WHERE, "target_probs", target_probs, 2)
    if student_logits.shape != target_probs.shape:
        raise LossInputError(
            f"{_WHERE}: student logits {tuple(student_logits.shape)} and target distribution "
            f"{tuple(target_probs.shape)} differ in shape"
        )
    check_choice(_WHERE, "reduction", reduction, ("mean", "none"))
    p = target_probs.to(student_logits.dtype)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    # xlogy gives 0 * log 0 = 0 where the target has exact zeros.
    per = temperature**2 * (torch.xlogy(p, p) - p * log_q).sum(-1)
    return per.mean() if reduction == "mean" else per
