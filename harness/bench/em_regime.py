"""The EM distance in the regime training uses, measured against POT's exact LP (``ot.emd2``).

Shared by ``test_bench_em.py`` (the accuracy and cost table of docs/LOSSES.md) and the EM
accuracy tests. A regime is (B, C, T, near/far):

- teacher logits z_t = 3 * N(0, 1) per class (a confident fine-tuned teacher), p = softmax(z_t / T);
- "near": the student's logits are z_t / T + 0.1 * N(0, 1) (a student that already imitates
  the softened teacher, where training spends most of its steps); "far": independent
  3 * N(0, 1) logits;
- ground cost: ``class_ground_cost`` of class prototypes built like the store's (each class's
  mean logit vector over K = 4 teachers: a peak at the class plus noise), C x C in [0, 2].

Errors are relative to the exact EM; the gradient is checked with respect to the student's
logits (the softmax removes the simplex's free constant) against central finite differences
of the exact EM, one cosine per example.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.distill.losses.em import class_ground_cost

K_TEACHERS = 4


def regime(b: int, c: int, temperature: float, near: bool, seed: int = 0):
    """(p (B, C) float64, student logits (B, C) float64, cost (C, C) float64)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.cat([3.0 * torch.eye(c, dtype=torch.float64) + torch.randn(c, c, generator=g, dtype=torch.float64)
                        for _ in range(K_TEACHERS)], 1)
    cost = class_ground_cost(protos)
    z_t = 3.0 * torch.randn(b, c, generator=g, dtype=torch.float64)
    p = torch.softmax(z_t / temperature, 1)
    if near:
        z_s = z_t / temperature + 0.1 * torch.randn(b, c, generator=g, dtype=torch.float64)
    else:
        z_s = 3.0 * torch.randn(b, c, generator=g, dtype=torch.float64)
    return p, z_s, cost


def exact_em(p: torch.Tensor, q: torch.Tensor, cost: torch.Tensor) -> np.ndarray:
    """Per-row exact EM by POT's network simplex, float64."""
    import ot

    pn = p.detach().double().numpy()
    qn = q.detach().double().numpy()
    cn = np.ascontiguousarray(cost.detach().double().numpy())
    out = np.empty(len(pn))
    for i in range(len(pn)):
        a = pn[i] / pn[i].sum()
        bb = qn[i] / qn[i].sum()
        out[i] = ot.emd2(a, bb, cn)
    return out


def fd_gradient(p: torch.Tensor, z_s: torch.Tensor, cost: torch.Tensor, rows: int, h: float = 1e-5) -> np.ndarray:
    """Central finite differences of exact EM(p, softmax(z_s)) w.r.t. z_s, first ``rows`` rows."""
    z = z_s[:rows].detach().double()
    c = z.shape[1]
    grad = np.zeros((rows, c))
    for j in range(c):
        e = torch.zeros_like(z)
        e[:, j] = h
        up = exact_em(p[:rows], torch.softmax(z + e, 1), cost)
        down = exact_em(p[:rows], torch.softmax(z - e, 1), cost)
        grad[:, j] = (up - down) / (2 * h)
    return grad


def measure(em_fn, b: int, c: int, temperature: float, near: bool, grad_rows: int = 16, seed: int = 0,
            dtype=torch.float32) -> dict:
    """Accuracy of ``em_fn(p, q, cost) -> (B,)`` in one regime against the exact LP."""
    p, z_s, cost = regime(b, c, temperature, near, seed)
    exact = exact_em(p, torch.softmax(z_s, 1), cost)
    z = z_s.to(dtype).clone().requires_grad_(True)
    value = em_fn(p.to(dtype), torch.softmax(z, 1), cost.to(dtype))
    value.sum().backward()
    v = value.detach().double().numpy()
    rel = np.abs(v - exact) / np.maximum(exact, 1e-12)
    fd = fd_gradient(p, z_s, cost, grad_rows)
    g = z.grad[:grad_rows].double().numpy()
    cos = (g * fd).sum(1) / np.maximum(np.linalg.norm(g, axis=1) * np.linalg.norm(fd, axis=1), 1e-30)
    return {"B": b, "C": c, "T": temperature, "regime": "near" if near else "far",
            "exact_median": float(np.median(exact)), "rel_err_median": float(np.median(rel)),
            "rel_err_max": float(rel.max()), "grad_cos_mean": float(cos.mean()), "grad_cos_min": float(cos.min())}


REGIMES = [(c, t, near) for c in (10, 101) for t in (1.0, 2.0, 4.0, 10.0) for near in (True, False)]


def table(em_fn, b: int = 128, grad_rows: int = 16) -> list[dict]:
    return [measure(em_fn, b, c, t, near, grad_rows) for c, t, near in REGIMES]


def markdown(rows: list[dict]) -> str:
    lines = ["| C | T | student | exact EM (median) | rel. error median | rel. error max | grad cos mean | grad cos min |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['C']} | {r['T']:g} | {r['regime']} | {r['exact_median']:.4f} | {100 * r['rel_err_median']:.2f}% "
                     f"| {100 * r['rel_err_max']:.2f}% | {r['grad_cos_mean']:.3f} | {r['grad_cos_min']:.3f} |")
    return "\n".join(lines)
