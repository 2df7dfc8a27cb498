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

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ._common import LossInputError, check_choice, check_positive, check_shape

_WHERE = "harness/distill/losses/em.py"

EM_METHODS = ("exact", "sinkhorn", "closed_form_01")


def floor_renormalise(p: torch.Tensor, floor: float) -> torch.Tensor:
    """``(p + floor) / sum(p + floor)`` along the last dim: strictly positive histograms."""
    p = p.clamp_min(0.0) + floor
    return p / p.sum(-1, keepdim=True)


def zero_one_cost(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 0/1 ground cost: 0 on the diagonal, 1 elsewhere, (n, n)."""
    return 1.0 - torch.eye(n, dtype=dtype, device=device)


@dataclass(frozen=True)
class SinkhornDefaults:
    """The EM solver's defaults, in one place: ``em_distance``, ``em_batch_sets``,
    ``LogitsGraph`` and the method settings (``em_*`` keys of ``--set``) all take them from here.

    These serve the Sinkhorn solver (``gl_em=sinkhorn`` and the batch-set reading); the
    method's default solver is the exact LP (``exact_em``), because in the regime training
    uses (a student close to a softened teacher: EM of a few hundredths on a nearly 0/1 class
    cost) Sinkhorn converges slowly: its potentials must travel about max C / eps, and at the
    former defaults (eps 0.05, 50 iterations) its value was 60-98% below the exact EM
    (docs/LOSSES.md, ``benchmarks/test_bench_em.py``). Epsilon scaling (``eps_start`` halved per
    stage down to ``eps``) and stopping on the row-marginal error (``tol``, capped by
    ``max_iters``) make it converge where it can; the plan is then rounded onto the transport
    polytope (``round_plan``), so the value is the cost of a feasible plan and never falls
    below the exact EM.
    """

    eps: float = 0.01           # final entropic regularisation, in cost units
    eps_start: float = 1.0      # epsilon scaling starts here (<= eps: no scaling)
    eps_decay: float = 0.5      # eps multiplied by this per stage
    stage_iters: int = 10       # iterations per intermediate stage
    tol: float = 1e-4           # stop when every problem's row-marginal L1 error is below this
    max_iters: int = 1000       # cap on all iterations (stages included)
    floor: float = 1e-9         # added to the histograms before renormalising
    grad: str = "potentials"    # "potentials" (Danskin) | "unroll" (autograd through the iterations)
    round_plan: bool = True     # project the plan onto the transport polytope (Altschuler et al. 2017)


SINKHORN = SinkhornDefaults()
GRAD_MODES = ("potentials", "unroll")


def eps_schedule(eps: float, eps_start: float, eps_decay: float) -> list[float]:
    """The epsilon of each stage: eps_start, eps_start * decay, ... down to (and ending at) eps."""
    out = []
    e = float(eps_start)
    if not 0.0 < eps_decay < 1.0:
        raise LossInputError(f"{_WHERE}: eps_decay must lie in (0, 1), got {eps_decay!r}")
    while e > eps * (1.0 + 1e-9):
        out.append(e)
        e *= eps_decay
    out.append(float(eps))
    return out


def round_to_polytope(plan: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Altschuler, Weed & Rigollet (2017), Alg. 2: the nearest-in-L1 feasible plan.

    Rows are scaled down to at most ``a``, columns to at most ``b``, and the missing mass is
    added as the outer product of the two deficits (divided by its total), so that
    ``P 1 = a`` and ``P^T 1 = b`` hold exactly (to round-off) and ``P >= 0``.
    """
    x = (a / plan.sum(2).clamp_min(1e-30)).clamp(max=1.0)
    plan = plan * x.unsqueeze(2)
    y = (b / plan.sum(1).clamp_min(1e-30)).clamp(max=1.0)
    plan = plan * y.unsqueeze(1)
    err_a = (a - plan.sum(2)).clamp_min(0.0)
    err_b = (b - plan.sum(1)).clamp_min(0.0)
    total = err_a.sum(1).clamp_min(1e-30).view(-1, 1, 1)
    return plan + err_a.unsqueeze(2) * err_b.unsqueeze(1) / total


def sinkhorn_log(
    p: torch.Tensor,
    q: torch.Tensor,
    cost: torch.Tensor,
    eps: float = SINKHORN.eps,
    iters: int = SINKHORN.max_iters,
    floor: float = SINKHORN.floor,
    return_plan: bool = False,
    grad: str = SINKHORN.grad,
    eps_start: float = SINKHORN.eps_start,
    eps_decay: float = SINKHORN.eps_decay,
    stage_iters: int = SINKHORN.stage_iters,
    tol: float = SINKHORN.tol,
    round_plan: bool = SINKHORN.round_plan,
    return_info: bool = False,
):
    """Batched log-domain Sinkhorn: transport cost ``<P, C>`` of the entropic plan.

    p (B, n), q (B, m) histograms (rows sum to 1 after the floor); cost (n, m) shared by the
    batch or (B, n, m). Dual potentials f, g are updated alternately,
    ``f = eps (log p - LSE_j((g_j - C_ij)/eps))``, ``g = eps (log q - LSE_i((f_i - C_ij)/eps))``,
    and ``P_ij = exp((f_i + g_j - C_ij)/eps)`` (columns exact after each g update).

    Epsilon scaling: the potentials are first solved at ``eps_start``, ``eps_start * eps_decay``,
    ... (``stage_iters`` iterations each, warm-started), then at ``eps`` until the largest
    row-marginal L1 error ``max_b ||P 1 - p||_1`` is below ``tol`` or ``iters`` iterations in all
    have run (``eps_start <= eps`` and ``tol = 0`` give plain Sinkhorn for ``iters`` iterations).
    The row error is read off each f update for free (``r_i = p_i exp((f_old - f_new)_i / eps)``).
    ``round_plan`` projects the final plan onto the transport polytope (``round_to_polytope``).

    Returns (B,) costs; with ``return_plan`` also the (B, n, m) plan; with ``return_info`` also
    a dict (iterations run, the final row error before rounding).

    ``grad``: "potentials" (default) runs the iterations without autograd and gives the value
    <P, C> with the gradient of the entropic OT objective w.r.t. p, q and cost, i.e. (f, g, P) by
    Danskin's theorem (memory O(B n m)); "unroll" backpropagates through every iteration (the
    exact derivative of the returned cost; memory O(iters B n m)).
    """
    check_shape(_WHERE, "p", p, 2)
    check_shape(_WHERE, "q", q, 2)
    check_positive(_WHERE, "eps", eps)
    check_positive(_WHERE, "eps_start", eps_start)
    if int(iters) < 1:
        raise LossInputError(f"{_WHERE}: iters must be >= 1, got {iters}")
    if int(stage_iters) < 1:
        raise LossInputError(f"{_WHERE}: stage_iters must be >= 1, got {stage_iters}")
    if not float(tol) >= 0.0:
        raise LossInputError(f"{_WHERE}: tol must be >= 0, got {tol!r}")
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
    check_choice(_WHERE, "grad", grad, GRAD_MODES)
    c = c.to(p.dtype)
    a = floor_renormalise(p, floor)
    bq = floor_renormalise(q, floor)
    stages = eps_schedule(eps, eps_start, eps_decay) if eps_start > eps else [float(eps)]
    info = {"iters": 0, "row_error": float("nan")}

    def iterate(log_a, log_b, cc):
        f = torch.zeros(b, n, dtype=p.dtype, device=p.device)
        g = torch.zeros(b, m, dtype=p.dtype, device=p.device)
        done = 0
        err = None
        for s, e in enumerate(stages):
            final = s == len(stages) - 1
            budget = int(iters) - done if final else min(int(stage_iters), int(iters) - done - 1)
            neg_c = -cc / e
            for _ in range(max(budget, 0)):
                f_new = e * (log_a - torch.logsumexp(neg_c + g.unsqueeze(1) / e, dim=2))
                if final:
                    # row sums of the plan before this update: p_i exp((f_old - f_new)_i / eps)
                    err = (log_a.exp() * (1.0 - ((f - f_new) / e).exp())).abs().sum(1).max()
                f = f_new
                g = e * (log_b - torch.logsumexp(neg_c + f.unsqueeze(2) / e, dim=1))
                done += 1
                if final and float(err.detach()) < tol:
                    break
        plan = torch.exp(-cc / stages[-1] + (f.unsqueeze(2) + g.unsqueeze(1)) / stages[-1])
        info["iters"] = done
        info["row_error"] = float((plan.sum(2) - log_a.exp()).abs().sum(1).max().detach())
        return f, g, plan

    if grad == "unroll":
        f, g, plan = iterate(a.log(), bq.log(), c)
        if round_plan:
            plan = round_to_polytope(plan, a, bq)
        value = (plan * c).sum((1, 2))
    else:
        with torch.no_grad():
            f, g, plan = iterate(a.log(), bq.log(), c)
            rounded = round_to_polytope(plan, a, bq) if round_plan else plan
            value = (rounded * c).sum((1, 2))
        # Danskin: d OT_eps / d(a, b, C) = (f, g, P) at the optimum; the surrogate carries
        # that gradient while the forward value stays the transport cost <P, C>.
        # f, g, plan were built without autograd, so only a, bq and c carry gradient here.
        surrogate = (f * a).sum(1) + (g * bq).sum(1) + (plan * c).sum((1, 2))
        value = value + surrogate - surrogate.detach()
        plan = rounded
    out = (value,)
    if return_plan:
        out += (plan,)
    if return_info:
        out += (info,)
    return out[0] if len(out) == 1 else out


_POOLS: dict = {}


def _pool(workers: int):
    """A thread pool per worker count, made once (the LPs of a batch are solved in chunks)."""
    from concurrent.futures import ThreadPoolExecutor

    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="exact-em")
    return _POOLS[workers]


class _ExactEM(torch.autograd.Function):
    """Exact EM per row by the network simplex (POT's ``ot.emd``), with the LP's duals as
    the gradient: d EM / d a = u, d EM / d b = v (a subgradient where the LP is degenerate),
    d EM / d C = the optimal plan."""

    @staticmethod
    def forward(ctx, a, b, cost):
        try:
            import ot
        except ImportError as exc:   # POT is a dependency of the package; say what to do if absent
            raise LossInputError(f"{_WHERE}: the exact EM solver needs POT (pip install POT), or use "
                                 "the Sinkhorn solver") from exc
        an = a.detach().cpu().double().numpy()
        bn = b.detach().cpu().double().numpy()
        cn = cost.detach().cpu().double().numpy()
        rows = an.shape[0]
        values = np.empty(rows)
        u = np.empty_like(an)
        v = np.empty_like(bn)
        want_plan = cost.requires_grad
        plans = np.empty((rows,) + cn.shape[-2:]) if want_plan else None
        warnings: list[str] = []

        def solve(lo: int, hi: int) -> None:
            for i in range(lo, hi):  # one small LP per example; POT's C++ solver releases the GIL
                ai = an[i] / an[i].sum()
                bi = bn[i] / bn[i].sum()
                ci = np.ascontiguousarray(cn if cn.ndim == 2 else cn[i])
                plan, log = ot.emd(ai, bi, ci, log=True)
                if log.get("warning"):
                    warnings.append(str(log["warning"]))
                values[i] = log["cost"]
                shift = log["u"].mean()        # duals are defined up to u + c, v - c
                u[i] = log["u"] - shift
                v[i] = log["v"] + shift
                if want_plan:
                    plans[i] = plan

        workers = max(1, min(torch.get_num_threads(), rows // 16))
        if workers == 1:
            solve(0, rows)
        else:
            bounds = np.linspace(0, rows, workers + 1).astype(int)
            list(_pool(workers).map(lambda k: solve(bounds[k], bounds[k + 1]), range(workers)))
        if warnings:
            raise LossInputError(f"{_WHERE}: exact EM solver: {warnings[0]}")
        ctx.cost_dim = cost.dim()
        tensors = [torch.from_numpy(u).to(a), torch.from_numpy(v).to(b)]
        if want_plan:
            tensors.append(torch.from_numpy(plans).to(cost))
        ctx.save_for_backward(*tensors)
        return torch.from_numpy(values).to(a)

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        ga = grad_out.unsqueeze(1) * saved[0]
        gb = grad_out.unsqueeze(1) * saved[1]
        gc = None
        if len(saved) == 3:
            gc = grad_out.view(-1, 1, 1) * saved[2]
            if ctx.cost_dim == 2:
                gc = gc.sum(0)
        return ga, gb, gc


def exact_em(p: torch.Tensor, q: torch.Tensor, cost: torch.Tensor, floor: float = SINKHORN.floor) -> torch.Tensor:
    """Exact EM(p, q) per row, (B,), by linear programming (network simplex, on the CPU).

    p (B, n), q (B, m) get ``floor`` and are renormalised as in ``sinkhorn_log``; cost (n, m) or
    (B, n, m). Differentiable: the gradient is the LP's dual potentials (and the optimal plan
    for the cost). One small LP per example (about 0.2 ms at C = 10, 2 ms at C = 101 on one CPU
    core), solved by ``torch.get_num_threads()`` threads for batches of 32 rows or more.
    """
    check_shape(_WHERE, "p", p, 2)
    check_shape(_WHERE, "q", q, 2)
    if p.shape[0] != q.shape[0]:
        raise LossInputError(f"{_WHERE}: p has batch {p.shape[0]} but q has {q.shape[0]}")
    n, m = p.shape[1], q.shape[1]
    if tuple(cost.shape[-2:]) != (n, m) or cost.dim() not in (2, 3) or (cost.dim() == 3 and cost.shape[0] != p.shape[0]):
        raise LossInputError(f"{_WHERE}: cost shape {tuple(cost.shape)} does not fit p {tuple(p.shape)}, "
                             f"q {tuple(q.shape)}")
    return _ExactEM.apply(floor_renormalise(p, floor), floor_renormalise(q, floor), cost.to(p.dtype))


def em_distance(
    p: torch.Tensor,
    q: torch.Tensor,
    cost: torch.Tensor | None = None,
    method: str = "exact",
    **sinkhorn,
) -> torch.Tensor:
    """EM distance per example between histograms p, q (B, C); returns (B,).

    ``cost=None`` is the 0/1 cost. ``method="exact"`` solves the LP (``exact_em``; of the
    keyword arguments only ``floor`` applies); ``method="closed_form_01"`` returns
    0.5 * ||p - q||_1 and requires ``cost=None``; ``method="sinkhorn"`` runs ``sinkhorn_log`` on ``cost`` (or on the
    0/1 matrix when ``cost`` is None) with the keyword arguments ``sinkhorn`` (``eps``,
    ``iters``, ``tol``, ``eps_start``, ...; ``SINKHORN`` gives the ones left out).
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
    if method == "exact":
        extra = sorted(set(sinkhorn) - {"floor"})
        if extra:
            raise LossInputError(f"{_WHERE}: method='exact' takes no Sinkhorn options, got {', '.join(extra)}")
        return exact_em(p, q, cost, floor=sinkhorn.get("floor", SINKHORN.floor))
    return sinkhorn_log(p, q, cost, **sinkhorn)


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
    return_plan: bool = False,
    **sinkhorn,
):
    """Batch-set ("WGAN") EM: OT between the point sets {mu_i} and {eta_j} (uniform weights).

    mu (B, C) teacher vectors, eta (B', C) student vectors; cost ||mu_i - eta_j||_2; solved by
    ``sinkhorn_log`` with the keyword arguments ``sinkhorn`` (``SINKHORN`` for the ones left
    out; ``floor`` 0, the weights being uniform). ``mu`` may also be (K, B, C) to get K set distances at once
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
    sinkhorn.setdefault("floor", 0.0)
    out = sinkhorn_log(a, bb, cost, return_plan=return_plan, **sinkhorn)
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
