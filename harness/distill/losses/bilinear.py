"""Compact bilinear pooling by count sketch (Gao et al. 2016; Eq. 7 of Zhang & Peng 2018).

Count sketch of x in R^n into R^d with a fixed hash h in {0..d-1}^n and signs s in {-1,+1}^n:

    Psi(x)_j = sum_{i : h_i = j} s_i x_i.

For x in R^n, y in R^m with independent sketches (h_x, s_x), (h_y, s_y), the circular
convolution of the two sketches is exactly the count sketch of the outer product x (x) y
with the hash (h_x(i) + h_y(k)) mod d and the sign s_x(i) s_y(k):

    Psi(x (x) y) = Psi_x(x) * Psi_y(y) = irfft(rfft(Psi_x(x)) . rfft(Psi_y(y)), n=d),

and E[<Psi(x (x) y), Psi(x' (x) y')>] = <x, x'> <y, y'> with variance O(1/d).
Applied per spatial location to (B, C, S) maps, giving (B, d, S). The signed square root
``sign(z) sqrt(|z|)`` and the l2 normalisation are separate helpers.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ._common import LossInputError, check_positive

_WHERE = "harness/distill/losses/bilinear.py"


class CountSketch(nn.Module):
    """Count-sketch projection R^in_dim -> R^d with fixed random (h, s) drawn from ``seed``.

    ``h`` (long, in_dim) and ``s`` (float, in_dim) are buffers, so they are saved in the
    state_dict of whatever module owns the sketch, and a reloaded run uses the same sketch.
    """

    def __init__(self, in_dim: int, d: int, seed: int):
        super().__init__()
        if int(in_dim) < 1 or int(d) < 1:
            raise LossInputError(f"{_WHERE}: CountSketch needs in_dim >= 1 and d >= 1, got {in_dim}, {d}")
        self.in_dim = int(in_dim)
        self.d = int(d)
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("h", torch.randint(0, self.d, (self.in_dim,), generator=gen))
        self.register_buffer(
            "s", torch.randint(0, 2, (self.in_dim,), generator=gen).to(torch.float32) * 2.0 - 1.0
        )

    def matrix(self, dtype=None, device=None) -> torch.Tensor:
        """The (in_dim, d) sketch matrix M with M[i, h_i] = s_i (Psi(x) = x @ M)."""
        dtype = dtype or self.s.dtype
        device = device or self.s.device
        m = torch.zeros(self.in_dim, self.d, dtype=dtype, device=device)
        m[torch.arange(self.in_dim, device=device), self.h.to(device)] = self.s.to(device, dtype)
        return m

    def forward(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Sketch ``x`` along ``dim`` (size in_dim) -> same shape with that dim of size d."""
        if x.shape[dim] != self.in_dim:
            raise LossInputError(
                f"{_WHERE}: CountSketch expects {self.in_dim} entries along dim {dim}, "
                f"got shape {tuple(x.shape)}"
            )
        # A dense matmul is deterministic on GPU (index_add uses atomics) and in_dim x d is small.
        xm = x.movedim(dim, -1)
        return (xm @ self.matrix(x.dtype, x.device)).movedim(-1, dim)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, d={self.d}"


def compact_bilinear(
    x: torch.Tensor,
    y: torch.Tensor,
    sketch_x: CountSketch,
    sketch_y: CountSketch,
    d: int | None = None,
    dim: int = 1,
) -> torch.Tensor:
    """Compact bilinear pooling ``Psi_x(x) * Psi_y(y)`` (circular convolution of length d).

    x (B, Cx, S), y (B, Cy, S) with channels on ``dim``: every location gets its own pooled
    d-vector, so the result is (B, d, S). Computed as ``irfft(rfft(.) * rfft(.), n=d)``.
    """
    if sketch_x.d != sketch_y.d or (d is not None and int(d) != sketch_x.d):
        raise LossInputError(
            f"{_WHERE}: sketch sizes disagree (sketch_x.d={sketch_x.d}, sketch_y.d={sketch_y.d}, d={d})"
        )
    n = sketch_x.d
    px = sketch_x(x, dim)
    py = sketch_y(y, dim)
    fx = torch.fft.rfft(px, n=n, dim=dim)
    fy = torch.fft.rfft(py, n=n, dim=dim)
    return torch.fft.irfft(fx * fy, n=n, dim=dim)


def signed_sqrt(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``sign(x) (sqrt(|x| + eps) - sqrt(eps))``: the signed square root with a finite slope at 0.

    The shift by sqrt(eps) keeps it continuous and odd; it differs from sign(x) sqrt(|x|) by at
    most sqrt(eps) and its gradient is at most 1 / (2 sqrt(eps)) instead of infinite at 0.
    """
    check_positive(_WHERE, "eps", eps)
    return torch.sign(x) * (torch.sqrt(x.abs() + eps) - eps**0.5)


def l2_normalise(x: torch.Tensor, dim=1, eps: float = 1e-12) -> torch.Tensor:
    """``x / max(||x||_2, eps)`` over ``dim`` (an int or a tuple of dims)."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(eps)
