"""Earth Mover (EM) distance between class histograms (Eq. 5 of Zhang & Peng 2018).

Histogram reading (default). For two histograms p, q on C classes and a ground cost
C (C x C), the EM / Wasserstein-1 distance is the optimal-transport cost

    EM(p, q) = min_{P >= 0, P 1 = p, P^T 1 = q} <P, C>.

It is solved by batched log-domain Sinkhorn on the entropic problem
``min <P, C> - eps * H(P)``; ``sinkhorn_log`` returns the transport cost <P_eps, C> of the
entropic plan (not the regularised objective), which tends to EM(p, q) as eps -> 0 and
iters -> infinity. Inputs get a tiny floor and are renormalised, so near-one-hot
histograms (softmax at low temperature) keep finite logs and gradients.

Ground costs:
- 0/1 cost (C_ij = 1 for i != j): EM(p, q) = 0.5 * ||p - q||_1 exactly (closed form:
  mass common to both stays, the rest moves at cost 1). ``cost=None`` means this cost.
- class cost (default of the method): ``class_ground_cost(prototypes)``,
  C_ij = 1 - cos(w_i, w_j), w_c the mean teacher logit vector of class c.

Batch-set ("WGAN") reading, a switch: the OT between the batch's set of teacher vectors
{mu(x_i)} and the batch's set of student vectors {eta(x_j)}, uniform weights 1/B, cost
||mu(x_i) - eta(x_j)||_2 (Arjovsky et al.'s primal on the empirical measures):
``em_batch_sets``. It gives one number per batch, not per example.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import LossInputError, check_choice, check_positive, check_shape

_WHERE = "harness/distill/losses/em.py"

EM_METHODS = ("sinkhorn", "closed_form_01")


def floor_renormalise(p: torch.Tensor, floor: float) -> torch.Tensor:
    """``(p + floor) / sum(p + floor)`` along the last dim: strictly positive histograms."""
    p = p.clamp_min(0.0) + floor
    return p / p.sum(-1, keepdim=True)


def zero_one_cost(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 0/1 ground cost: 0 on the diagonal, 1 elsewhere, (n, n)."""
    return 1.0 - torch.eye(n, dtype=dtype, device=device)


def sinkhorn_log(
    p: torch.Tensor,
    q: torch.Tensor,
    cost: torch.Tensor,
    eps: float = 0.02,
    iters: int = 100,
    floor: float = 1e-9,
    return_plan: bool = False,
    grad: str = "unroll",
):
    """Batched log-domain Sinkhorn: transport cost ``<P, C>`` of the entropic plan.

    p (B, n), q (B, m) histograms (rows sum to 1 after the floor); cost (n, m) shared by the
    batch or (B, n, m). Dual potentials f, g are updated alternately,
    ``f = eps (log p - LSE_j((g_j - C_ij)/eps))``, ``g = eps (log q - LSE_i((f_i - C_ij)/eps))``,
    and ``P_ij = exp((f_i + g_j - C_ij)/eps)`` (columns exact after the last update).
    Returns (B,) costs, and the (B, n, m) plan if ``return_plan``.

    ``grad``: "unroll" backpropagates through every iteration (the exact derivative of the
    returned cost; memory O(iters B n m)); "potentials" runs the iterations without autograd
    and gives the value <P, C> with the gradient of the entropic OT objective w.r.t. p, q and
    cost, i.e. (f, g, P) by Danskin's theorem (memory O(B n m); the usual choice at scale).
    """
    check_shape(_WHERE, "p", p, 2)
    check_shape(_WHERE, "q", q, 2)
    check_positive(_WHERE, "eps", eps)
    if int(iters) < 1:
        raise LossInputError(f"{_WHERE}: iters must be >= 1, got {iters}")
    if p.shape[0] != q.shape[0]:
        raise LossInputError(f"{_WHERE}: p has batch {p.shape[0]} but q has {q.shape[0]}")
    b, n = p.shape
    m = q.shape[1]
    if cost.dim() == 2:
        if tuple(cost.shape) != (n, m):
            raise LossInputError(f"{_WHERE}: cost shape {tuple(cost.shape)} != ({n}, {m})")
        c = cost.unsqueeze(0)
    elif cost.dim() == 3:
        if tuple(cost.shape) != (b, n, m):
            raise LossInputError(f"{_WHERE}: cost shape {tuple(cost.shape)} != ({b}, {n}, {m})")
        c = cost
    else:
        raise LossInputError(f"{_WHERE}: cost must be (n, m) or (B, n, m), got {tuple(cost.shape)}")
    check_choice(_WHERE, "grad", grad, ("unroll", "potentials"))
    c = c.to(p.dtype)
    a = floor_renormalise(p, floor)
    bq = floor_renormalise(q, floor)

    def iterate(log_a, log_b, cc):
        f = torch.zeros(b, n, dtype=p.dtype, device=p.device)
        g = torch.zeros(b, m, dtype=p.dtype, device=p.device)
        neg_c = -cc / eps
        for _ in range(int(iters)):
            f = eps * (log_a - torch.logsumexp(neg_c + g.unsqueeze(1) / eps, dim=2))
            g = eps * (log_b - torch.logsumexp(neg_c + f.unsqueeze(2) / eps, dim=1))
        return f, g, torch.exp(neg_c + (f.unsqueeze(2) + g.unsqueeze(1)) / eps)

    if grad == "unroll":
        f, g, plan = iterate(a.log(), bq.log(), c)
        value = (plan * c).sum((1, 2))
    else:
        with torch.no_grad():
            f, g, plan = iterate(a.log(), bq.log(), c)
            value = (plan * c).sum((1, 2))
        # Danskin: d OT_eps / d(a, b, C) = (f, g, P) at the optimum; the surrogate carries
        # that gradient while the forward value stays the transport cost <P, C>.
        # f, g, plan were built without autograd, so only a, bq and c carry gradient here.
        surrogate = (f * a).sum(1) + (g * bq).sum(1) + (plan * c).sum((1, 2))
        value = value + surrogate - surrogate.detach()
    return (value, plan) if return_plan else value


def em_distance(
    p: torch.Tensor,
    q: torch.Tensor,
    cost: torch.Tensor | None = None,
    method: str = "sinkhorn",
    eps: float = 0.02,
    iters: int = 100,
    floor: float = 1e-9,
    grad: str = "unroll",
) -> torch.Tensor:
    """EM distance per example between histograms p, q (B, C); returns (B,).

    ``cost=None`` is the 0/1 cost. ``method="closed_form_01"`` returns 0.5 * ||p - q||_1 and
    requires ``cost=None``; ``method="sinkhorn"`` runs ``sinkhorn_log`` on ``cost`` (or on the
    0/1 matrix when ``cost`` is None).
    """
    check_choice(_WHERE, "method", method, EM_METHODS)
    check_shape(_WHERE, "p", p, 2)
    check_shape(_WHERE, "q", q, 2)
    if p.shape != q.shape:
        raise LossInputError(f"{_WHERE}: p {tuple(p.shape)} and q {tuple(q.shape)} differ in shape")
    if method == "closed_form_01":
        if cost is not None:
            raise LossInputError(
                f"{_WHERE}: method='closed_form_01' is exact only for the 0/1 cost; pass cost=None "
                "or use method='sinkhorn'"
            )
        return 0.5 * (p - q).abs().sum(-1)
    if cost is None:
        cost = zero_one_cost(p.shape[1], dtype=p.dtype, device=p.device)
    return sinkhorn_log(p, q, cost, eps=eps, iters=iters, floor=floor, grad=grad)


def pairwise_euclidean(x: torch.Tensor, y: torch.Tensor, tiny: float = 1e-12) -> torch.Tensor:
    """||x_i - y_j||_2 for x (..., n, D), y (..., m, D) -> (..., n, m).

    Squared distances come from the expansion and are clamped at ``tiny`` before the square
    root, so coincident points give a finite (zero) gradient instead of NaN.
    """
    d2 = (x * x).sum(-1).unsqueeze(-1) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * x @ y.transpose(-1, -2)
    return d2.clamp_min(tiny).sqrt()


def em_batch_sets(
    mu: torch.Tensor,
    eta: torch.Tensor,
    eps: float = 0.02,
    iters: int = 200,
    floor: float = 0.0,
    return_plan: bool = False,
    grad: str = "unroll",
):
    """Batch-set ("WGAN") EM: OT between the point sets {mu_i} and {eta_j} (uniform weights).

    mu (B, C) teacher vectors, eta (B', C) student vectors; cost ||mu_i - eta_j||_2; solved by
    ``sinkhorn_log`` with eps. ``mu`` may also be (K, B, C) to get K set distances at once
    (one per teacher) against the same student set. Returns a scalar (or (K,)).
    """
    squeeze = mu.dim() == 2
    if squeeze:
        mu = mu.unsqueeze(0)
    check_shape(_WHERE, "mu", mu, 3)
    check_shape(_WHERE, "eta", eta, 2)
    if mu.shape[-1] != eta.shape[-1]:
        raise LossInputError(
            f"{_WHERE}: mu vectors have {mu.shape[-1]} entries but eta vectors {eta.shape[-1]}"
        )
    k, n, _ = mu.shape
    m = eta.shape[0]
    cost = pairwise_euclidean(mu, eta.unsqueeze(0).expand(k, m, -1))      # (K, n, m)
    a = torch.full((k, n), 1.0 / n, dtype=mu.dtype, device=mu.device)
    bb = torch.full((k, m), 1.0 / m, dtype=mu.dtype, device=mu.device)
    out = sinkhorn_log(a, bb, cost, eps=eps, iters=iters, floor=floor, return_plan=return_plan, grad=grad)
    if return_plan:
        value, plan = out
        return (value[0], plan[0]) if squeeze else (value, plan)
    return out[0] if squeeze else out


def class_ground_cost(prototypes: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Ground cost between classes: ``C_ij = 1 - cos(w_i, w_j)`` for prototypes (C, D).

    Clamped to [0, 2] against round-off; the diagonal is exactly 0. (1 - cos is not a metric,
    so the resulting OT value is a transport cost, not a true Wasserstein distance.)
    """
    check_shape(_WHERE, "prototypes", prototypes, 2)
    w = prototypes / prototypes.norm(dim=1, keepdim=True).clamp_min(eps)
    cost = (1.0 - w @ w.t()).clamp(0.0, 2.0)
    return cost * (1.0 - torch.eye(cost.shape[0], dtype=cost.dtype, device=cost.device))


def class_prototypes(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean logit vector per class: logits (N, D), labels (N,) ids or (N, C) multi-hot -> (C, D).

    Raises ``LossInputError`` if a class has no example (its prototype would be undefined).
    """
    check_shape(_WHERE, "logits", logits, 2)
    if labels.dim() == 1:
        onehot = F.one_hot(labels.long(), num_classes).to(logits.dtype)
    elif labels.dim() == 2 and labels.shape[1] == num_classes:
        onehot = labels.to(logits.dtype)
    else:
        raise LossInputError(f"{_WHERE}: labels must be (N,) ids or (N, {num_classes}) multi-hot")
    if onehot.shape[0] != logits.shape[0]:
        raise LossInputError(f"{_WHERE}: {onehot.shape[0]} labels for {logits.shape[0]} logit rows")
    counts = onehot.sum(0)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise LossInputError(f"{_WHERE}: classes {missing[:10]} have no example to build a prototype")
    return (onehot.t() @ logits) / counts.unsqueeze(1)
