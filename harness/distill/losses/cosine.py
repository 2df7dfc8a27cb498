"""Cosine distance, the MMGD imitation metric (Luo et al. 2017).

Per example: ``d(a, b) = 1 - <a, b> / (max(||a||, eps) * max(||b||, eps))``, in [0, 2].
"""

from __future__ import annotations

import torch

from ._common import check_same_shape

_WHERE = "harness/distill/losses/cosine.py"


def cosine_distance(a: torch.Tensor, b: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """``1 - cos(a, b)`` along ``dim`` (no reduction over the batch); a, b same shape.

    Norms are floored at ``eps`` so an all-zero vector gives distance 1 and a finite gradient.
    """
    check_same_shape(_WHERE, ("a", "b"), a, b)
    na = a.norm(dim=dim).clamp_min(eps)
    nb = b.norm(dim=dim).clamp_min(eps)
    return 1.0 - (a * b).sum(dim) / (na * nb)
