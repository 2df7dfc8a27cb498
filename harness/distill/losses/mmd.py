"""Gaussian-kernel Maximum Mean Discrepancy between two point sets (Eq. 9 of Zhang & Peng 2018).

Per batch item, for sets X = {x_p} (n points) and Y = {y_q} (m points) in R^S, the biased
(V-statistic) estimator of MMD^2:

    MMD^2(X, Y) = 1/n^2 sum_{p,p'} k(x_p, x_p') + 1/m^2 sum_{q,q'} k(y_q, y_q')
                  - 2/(n m) sum_{p,q} k(x_p, y_q),      k(a, b) = exp(-||a - b||^2 / (2 sigma^2)).

Bandwidth (``bandwidth``):
- "mean" (default): sigma^2 = mean squared distance over all pairs i != j of the pooled set
  Z = X u Y, per batch item, detached (a constant for the gradient). It is computed in closed
  form, sum_{i,j} ||z_i - z_j||^2 = 2 N sum_i ||z_i||^2 - 2 ||sum_i z_i||^2, and floored at
  ``sigma2_floor`` so identical sets do not divide by zero.
- a float ``sigma``: fixed bandwidth sigma (sigma^2 = sigma ** 2).
- ``multipliers``: multi-bandwidth kernel, the mean of Gaussian kernels with
  sigma_r^2 = multiplier_r * sigma^2 (e.g. (0.25, 0.5, 1, 2, 4)); (1.0,) is a single kernel.
Squared distances come from the expansion ||a||^2 + ||b||^2 - 2<a,b> (clamped at 0), so there
is no square root and coincident points have finite gradients. No Python loop over points.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ._common import LossInputError, check_positive, check_shape

_WHERE = "harness/distill/losses/mmd.py"


def pairwise_sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x_i - y_j||^2 for x (B, n, S), y (B, m, S) -> (B, n, m), clamped at 0."""
    d2 = (x * x).sum(-1).unsqueeze(-1) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * x @ y.transpose(-1, -2)
    return d2.clamp_min(0.0)


def mean_pairwise_sq_dist(z: torch.Tensor) -> torch.Tensor:
    """Mean of ||z_i - z_j||^2 over pairs i != j of z (B, N, S) -> (B,), in O(N S)."""
    n = z.shape[1]
    if n < 2:
        raise LossInputError(f"{_WHERE}: the pooled set needs at least 2 points, got {n}")
    total = 2.0 * n * (z * z).sum((1, 2)) - 2.0 * (z.sum(1) ** 2).sum(-1)
    return total.clamp_min(0.0) / (n * (n - 1))


def gaussian_mmd(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float | None = None,
    multipliers: Sequence[float] = (1.0,),
    sigma2_floor: float = 1e-12,
    return_sigma2: bool = False,
):
    """Biased Gaussian-kernel MMD^2 per batch item between x (B, n, S) and y (B, m, S) -> (B,).

    ``sigma=None`` uses the detached mean-pairwise-squared-distance rule on the pooled set;
    a float fixes sigma. ``multipliers`` scale sigma^2 for a multi-bandwidth kernel (averaged).
    With ``return_sigma2`` also returns the (B,) base sigma^2 used.
    """
    check_shape(_WHERE, "x", x, 3)
    check_shape(_WHERE, "y", y, 3)
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise LossInputError(
            f"{_WHERE}: x {tuple(x.shape)} and y {tuple(y.shape)} must share batch and point size"
        )
    mult = [float(v) for v in multipliers]
    if not mult:
        raise LossInputError(f"{_WHERE}: multipliers must not be empty")
    for v in mult:
        check_positive(_WHERE, "multiplier", v)
    if sigma is None:
        with torch.no_grad():
            sigma2 = mean_pairwise_sq_dist(torch.cat([x, y], 1)).clamp_min(sigma2_floor)
    else:
        check_positive(_WHERE, "sigma", sigma)
        sigma2 = torch.full((x.shape[0],), float(sigma) ** 2, dtype=x.dtype, device=x.device)
    sigma2 = sigma2.detach()
    scales = torch.tensor(mult, dtype=x.dtype, device=x.device)
    # (B, R): one denominator -2 sigma_r^2 per bandwidth. The sign sits on the small denominator,
    # not on the (B, n, m) distances: IEEE division is sign-symmetric, so d2 / (-den) has the bits
    # of -(d2 / den) and of (-d2) / den, one full-size pass (and its backward) fewer.
    neg_denom = (-2.0 * sigma2.unsqueeze(1) * scales.unsqueeze(0)).view(x.shape[0], -1, 1, 1)

    def kmean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = pairwise_sq_dists(a, b).unsqueeze(1)          # (B, 1, n, m)
        return torch.exp(d2 / neg_denom).mean((1, 2, 3))   # mean over bandwidths and pairs

    value = kmean(x, x) + kmean(y, y) - 2.0 * kmean(x, y)
    return (value, sigma2) if return_sigma2 else value
