"""Distillation graphs: the logits graph G_l, the MMGD baseline, the representation graph G_r
and uniform feature distillation (docs/METHOD.md; equations in docs/LOSSES.md).

Every module returns a dict of named loss terms; the caller (the method registry) weights
and sums them with lambda / beta. Teacher inputs are frozen cached tensors.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.distill.losses._common import LossInputError, check_choice, check_positive, check_shape
from harness.distill.losses.bilinear import CountSketch, compact_bilinear, l2_normalise, signed_sqrt
from harness.distill.losses.cosine import cosine_distance
from harness.distill.losses.em import GRAD_MODES, SINKHORN, em_batch_sets, em_distance
from harness.distill.losses.mmd import gaussian_mmd

_WHERE = "harness/distill/graphs.py"


def _temperature_vector(where: str, temps, k: int) -> torch.Tensor:
    """A (k,) float tensor of positive temperatures from a float or k values."""
    if isinstance(temps, (int, float)):
        vals = [float(temps)] * k
    else:
        vals = [float(v) for v in temps]
    if len(vals) != k:
        raise LossInputError(f"{where}: got {len(vals)} temperatures for {k} entries")
    for v in vals:
        check_positive(where, "temperature", v)
    return torch.tensor(vals, dtype=torch.float32)


def adaptive_pool_to(x: torch.Tensor, size) -> torch.Tensor:
    """Average-pool a (B, C, h, w) map to ``size`` (int or (H, W)); a no-op when it already fits.

    Uses adaptive average pooling, which also covers h < H (it then repeats values).
    """
    check_shape(_WHERE, "feature map", x, 4)
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.adaptive_avg_pool2d(x, hw)


def positions_softmax(x: torch.Tensor, temperature) -> torch.Tensor:
    """Softmax over the spatial positions of each channel: (B, C, H, W) or (B, C, S) -> (B, C, S).

    ``temperature`` is a float or a tensor broadcastable to (B, C, 1).
    """
    return torch.softmax(x.flatten(2) / temperature, dim=-1)


class LogitsGraph(nn.Module):
    """Logits graph G_l (Eq. 4-6): K teacher vertices, learnable edges, EM imitation loss.

    mu_k = softmax(z_k / T_k); eta = softmax(z_s); E[m, n] = e_{n->m} = softmax_n(A[m, :]).
    reading="adjusted": L = (1/K) sum_m EM(sum_n E[m, n] mu_n, eta)   (docs/METHOD.md default)
    reading="literal":  L = sum_m sum_n E[m, n] EM(mu_n, eta)         (Eq. 4 as printed)
    em: "exact" (the LP solved exactly, ``exact_em``) or "sinkhorn" (entropic, ``sinkhorn_log``
    with the ``em_*`` switches; defaults ``SINKHORN``), both on the ground cost passed to
    ``forward`` (None = 0/1 cost); "closed_form_01"
    (0.5 ||.||_1, the exact EM under the 0/1 cost), "wgan" (OT between the batch's sets of
    vectors, ``em_batch_sets``). graph_reg = gd_reg * ||E - 1/K||_F^2 (E does not depend on
    the example, so mean_batch(E) = E).
    """

    READINGS = ("adjusted", "literal")
    EMS = ("exact", "sinkhorn", "closed_form_01", "wgan")

    def __init__(
        self,
        num_teachers: int,
        temperatures: float | Sequence[float] = 1.0,
        learn_temperatures: bool = False,
        reading: str = "adjusted",
        em: str = "exact",
        gd_reg: float = 10.0,
        em_eps: float = SINKHORN.eps,
        em_iters: int = SINKHORN.max_iters,
        em_floor: float = SINKHORN.floor,
        em_grad: str = SINKHORN.grad,
        em_tol: float = SINKHORN.tol,
        em_eps_start: float = SINKHORN.eps_start,
        em_round: bool = SINKHORN.round_plan,
    ):
        super().__init__()
        check_choice(_WHERE, "reading", reading, self.READINGS)
        check_choice(_WHERE, "em", em, self.EMS)
        check_choice(_WHERE, "em_grad", em_grad, GRAD_MODES)
        check_positive(_WHERE, "em_eps", em_eps)
        check_positive(_WHERE, "em_eps_start", em_eps_start)
        if int(em_iters) < 1:
            raise LossInputError(f"{_WHERE}: em_iters must be >= 1, got {em_iters}")
        if int(num_teachers) < 1:
            raise LossInputError(f"{_WHERE}: LogitsGraph needs at least 1 teacher, got {num_teachers}")
        k = int(num_teachers)
        self.num_teachers = k
        self.reading = reading
        self.em = em
        self.gd_reg = float(gd_reg)
        self.em_eps = float(em_eps)
        self.em_iters = int(em_iters)
        self.em_floor = float(em_floor)
        self.em_grad = em_grad
        self.em_tol = float(em_tol)
        self.em_eps_start = float(em_eps_start)
        self.em_round = bool(em_round)
        # A = 0 gives uniform edges 1/K: the graph starts as the plain teacher average.
        self.A = nn.Parameter(torch.zeros(k, k))
        log_t = _temperature_vector(_WHERE, temperatures, k).log()
        if learn_temperatures:
            self.log_temperatures = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperatures", log_t)

    def sinkhorn_options(self) -> dict:
        """Keyword arguments of ``sinkhorn_log`` (the EM solver's switches of this graph)."""
        return {"eps": self.em_eps, "iters": self.em_iters, "floor": self.em_floor, "grad": self.em_grad,
                "tol": self.em_tol, "eps_start": self.em_eps_start, "round_plan": self.em_round}

    def solver_options(self) -> dict:
        """The keywords this graph's EM solver takes: every Sinkhorn switch (floor 0 for the
        batch-set reading, whose weights are uniform), only the floor for the exact LP, none for
        the 0/1 closed form."""
        if self.em == "sinkhorn":
            return self.sinkhorn_options()
        if self.em == "wgan":
            return {**self.sinkhorn_options(), "floor": 0.0}
        return {"floor": self.em_floor} if self.em == "exact" else {}

    def temperatures(self) -> torch.Tensor:
        """The (K,) teacher temperatures T_k (parameterised as log T so they stay positive)."""
        return self.log_temperatures.exp()

    def edges(self) -> torch.Tensor:
        """E (K, K) with E[m, n] = e_{n->m}; row m (incoming weights of vertex m) sums to 1."""
        return torch.softmax(self.A, dim=1)

    def adjacency(self) -> torch.Tensor:
        """The current edge matrix E[m, n] = e_{n->m} as a detached CPU tensor, for saving.

        (The paper writes G_l[m][n] = e_{m->n}, the transpose of this matrix.)
        """
        return self.edges().detach().cpu()

    def teacher_distributions(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """mu (B, K, C) = softmax(z_k / T_k) per teacher."""
        t = self.temperatures().to(teacher_logits.dtype).view(1, -1, 1)
        return torch.softmax(teacher_logits / t, dim=-1)

    def forward(
        self, teacher_logits: torch.Tensor, student_logits: torch.Tensor, cost: torch.Tensor | None = None
    ) -> dict:
        """teacher_logits (B, K, C), student_logits (B, C) -> {"logit": scalar, "graph_reg": scalar}."""
        check_shape(_WHERE, "teacher_logits", teacher_logits, 3)
        check_shape(_WHERE, "student_logits", student_logits, 2)
        b, k, c = teacher_logits.shape
        if k != self.num_teachers or tuple(student_logits.shape) != (b, c):
            raise LossInputError(
                f"{_WHERE}: LogitsGraph({self.num_teachers} teachers) got teacher logits "
                f"{tuple(teacher_logits.shape)} and student logits {tuple(student_logits.shape)}"
            )
        if cost is not None and self.em not in ("exact", "sinkhorn"):
            raise LossInputError(f"{_WHERE}: a ground cost is only used with em='exact' or 'sinkhorn', not {self.em!r}")
        mu = self.teacher_distributions(teacher_logits)
        eta = torch.softmax(student_logits, dim=-1)
        e = self.edges().to(mu.dtype)
        if self.reading == "adjusted":
            # Vertex m's distribution after its neighbours' messages: sum_n e_{n->m} mu_n.
            src = torch.einsum("mn,bnc->bmc", e, mu)
            vertex_weights = torch.full((k,), 1.0 / k, dtype=mu.dtype, device=mu.device)
        else:
            # sum_m sum_n e_{n->m} EM(mu_n, eta) = sum_n (sum_m e_{n->m}) EM(mu_n, eta).
            src = mu
            vertex_weights = e.sum(0)
        if self.em == "wgan":
            per_vertex = em_batch_sets(src.transpose(0, 1), eta, **self.solver_options())   # (K,)
            logit = (vertex_weights * per_vertex).sum()
        else:
            d = em_distance(
                src.reshape(b * k, c),
                eta.unsqueeze(1).expand(b, k, c).reshape(b * k, c),
                cost=cost,
                method=self.em,
                **self.solver_options(),
            ).view(b, k)
            logit = (d * vertex_weights.unsqueeze(0)).sum(1).mean()
        reg = self.gd_reg * ((e - 1.0 / k) ** 2).sum()
        return {"logit": logit, "graph_reg": reg}


class MMGDGraph(nn.Module):
    """Multi-modal graph distillation baseline (Luo et al. 2017), per docs/METHOD.md.

    z_v = [W_logit(logit_v); W_repr(repr_v)] (32 + 32), e_j = W_edge([z_s; z_j]),
    edges = softmax(e / edge_temperature) over teachers (B, K), prior = 1/K,
    graph_reg = gd_reg * sum_j (mean_b edges_bj - prior_j)^2, w = edges + prior,
    logit = w_logit * sum_j mean_b(w_bj (1 - cos(z_s, z_j)))  (logits),
    repr  = w_repr  * sum_j mean_b(w_bj (1 - cos(proj_j(r_s), r_j)))  (pooled conv4).
    Our adaptations: repr = global-average-pooled conv4; proj_j is a learned Linear where the
    student's and teacher j's channel counts differ (identity otherwise); W_repr is shared when
    every vertex has the same channel count and per-vertex otherwise.
    """

    def __init__(
        self,
        num_teachers: int,
        num_classes: int,
        teacher_repr_dims: Sequence[int],
        student_repr_dim: int,
        embed_dim: int = 32,
        edge_temperature: float = 8.0,
        gd_reg: float = 10.0,
        w_logit: float = 10.0,
        w_repr: float = 1.0,
    ):
        super().__init__()
        k = int(num_teachers)
        dims = [int(v) for v in teacher_repr_dims]
        if k < 1 or len(dims) != k:
            raise LossInputError(f"{_WHERE}: MMGDGraph got {len(dims)} teacher repr dims for {k} teachers")
        check_positive(_WHERE, "edge_temperature", edge_temperature)
        self.num_teachers = k
        self.teacher_repr_dims = dims
        self.student_repr_dim = int(student_repr_dim)
        self.edge_temperature = float(edge_temperature)
        self.gd_reg = float(gd_reg)
        self.w_logit = float(w_logit)
        self.w_repr = float(w_repr)
        self.W_logit = nn.Linear(int(num_classes), embed_dim)
        all_dims = dims + [self.student_repr_dim]
        self.shared_repr = len(set(all_dims)) == 1
        if self.shared_repr:
            self.W_repr = nn.Linear(all_dims[0], embed_dim)
        else:
            # Vertex K is the student.
            self.W_repr = nn.ModuleList([nn.Linear(dd, embed_dim) for dd in all_dims])
        self.W_edge = nn.Linear(4 * embed_dim, 1)
        self.proj = nn.ModuleList(
            [nn.Identity() if dd == self.student_repr_dim else nn.Linear(self.student_repr_dim, dd) for dd in dims]
        )
        self.register_buffer("prior", torch.full((k,), 1.0 / k))
        self.last_edges: torch.Tensor | None = None

    @staticmethod
    def pool_repr(r: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C) global average; (B, C) passes through."""
        return r.mean((2, 3)) if r.dim() == 4 else r

    def _embed_repr(self, r: torch.Tensor, v: int) -> torch.Tensor:
        return self.W_repr(r) if self.shared_repr else self.W_repr[v](r)

    def edges(self, teacher_logits, student_logits, teacher_reprs, student_repr) -> torch.Tensor:
        """Per-example edges into the student (B, K), each row summing to 1."""
        k = self.num_teachers
        z_s = torch.cat([self.W_logit(student_logits), self._embed_repr(student_repr, k)], 1)
        e = []
        for j in range(k):  # K teachers (a handful), not a loop over examples or classes
            z_j = torch.cat([self.W_logit(teacher_logits[:, j]), self._embed_repr(teacher_reprs[j], j)], 1)
            e.append(self.W_edge(torch.cat([z_s, z_j], 1)))
        return torch.softmax(torch.cat(e, 1) / self.edge_temperature, dim=1)

    def forward(
        self,
        teacher_logits: torch.Tensor,
        student_logits: torch.Tensor,
        teacher_reprs: Sequence[torch.Tensor],
        student_repr: torch.Tensor,
    ) -> dict:
        """teacher_logits (B, K, C), student_logits (B, C), teacher_reprs K x (B, C_j[, h, w]),
        student_repr (B, C_s[, h, w]) -> {"logit", "repr", "graph_reg"} scalars."""
        check_shape(_WHERE, "teacher_logits", teacher_logits, 3)
        k = self.num_teachers
        if teacher_logits.shape[1] != k or len(teacher_reprs) != k:
            raise LossInputError(
                f"{_WHERE}: MMGDGraph({k} teachers) got {teacher_logits.shape[1]} teacher logits "
                f"and {len(teacher_reprs)} teacher reprs"
            )
        t_reprs = [self.pool_repr(r) for r in teacher_reprs]
        s_repr = self.pool_repr(student_repr)
        for j, r in enumerate(t_reprs):
            if r.shape[1] != self.teacher_repr_dims[j]:
                raise LossInputError(
                    f"{_WHERE}: teacher {j} repr has {r.shape[1]} channels, expected {self.teacher_repr_dims[j]}"
                )
        if s_repr.shape[1] != self.student_repr_dim:
            raise LossInputError(
                f"{_WHERE}: student repr has {s_repr.shape[1]} channels, expected {self.student_repr_dim}"
            )
        edges = self.edges(teacher_logits, student_logits, t_reprs, s_repr)
        self.last_edges = edges.detach()
        w = edges + self.prior.to(edges.dtype).unsqueeze(0)
        reg = self.gd_reg * ((edges.mean(0) - self.prior) ** 2).sum()
        d_logit = cosine_distance(student_logits.unsqueeze(1).expand_as(teacher_logits), teacher_logits)
        logit = self.w_logit * (w * d_logit).mean(0).sum()
        d_repr = torch.stack(
            [cosine_distance(self.proj[j](s_repr), t_reprs[j]) for j in range(k)], 1
        )                                                              # (B, K)
        rep = self.w_repr * (w * d_repr).mean(0).sum()
        return {"logit": logit, "repr": rep, "graph_reg": reg}


class RepresentationGraph(nn.Module):
    """Representation graph G_r (Eq. 7-10).

    Vertices: every unordered teacher pair (m, n) (6 for 4 teachers). Per location,
    V_k = l2norm(signed_sqrt(Psi_m(R_m) * Psi_n(R_n))) in R^{d x S};
    D_k = softmax over the S positions of V_k / T_k for each of the d channels; the student's
    C_s channels are softmaxed over positions too (at ``student_temperature``, 1 in the paper).
    l_r(k) = MMD^2 between the set of C_s student points and the d vertex points (in R^S);
    L_r = sum_k softmax(g_r / T_w)_k l_r(k), averaged over the batch. T_w defaults to the
    vertex temperatures T_k (Eq. 10's temperature vector read as the same T_k).
    Switches: ``sketch`` "per_teacher" (each teacher its own (h, s); default) or "shared"
    (one (h, s) as Eq. 7 writes it; needs equal channel counts); ``l2_over`` "location"
    (normalise each location's d-vector; default) or "map" (the whole d x S map); MMD
    bandwidth ``mmd_sigma`` / ``mmd_multipliers``; ``gd_reg`` (default 0, not in the paper)
    pulls the vertex weights toward uniform like G_l's regulariser.

    ``vertex_scale`` (our reading; Eq. 8 leaves the scale of V_k to T_k): after l2
    normalisation over n entries (n = d for "location", d * S for "map") each entry is of order
    1 / sqrt(n), so softmax(V_k / T_k) at T_k = 1 is uniform over the positions to within
    1e-3 nats (d = 128, S = 49) and the MMD would pull every student channel towards a flat
    map, which a ReLU map reaches by dying (the tiny student then stays at chance).
    "unit_rms" (default) multiplies V_k by sqrt(n) first, so entries have unit RMS and T_k
    keeps its usual meaning whatever d; "none" is Eq. 8 taken literally.
    """

    SKETCHES = ("per_teacher", "shared")
    L2_OVER = ("location", "map")
    VERTEX_SCALES = ("unit_rms", "none")

    def __init__(
        self,
        teacher_channels: Sequence[int],
        student_channels: int,
        d: int = 512,
        temperatures: float | Sequence[float] = 1.0,
        seed: int = 0,
        weight_temperatures: float | Sequence[float] | None = None,
        learn_weights: bool = True,
        sketch: str = "per_teacher",
        l2_over: str = "location",
        student_temperature: float = 1.0,
        mmd_sigma: float | None = None,
        mmd_multipliers: Sequence[float] = (1.0,),
        gd_reg: float = 0.0,
        sqrt_eps: float = 1e-8,
        vertex_scale: str = "unit_rms",
    ):
        super().__init__()
        check_choice(_WHERE, "sketch", sketch, self.SKETCHES)
        check_choice(_WHERE, "l2_over", l2_over, self.L2_OVER)
        check_choice(_WHERE, "vertex_scale", vertex_scale, self.VERTEX_SCALES)
        check_positive(_WHERE, "student_temperature", student_temperature)
        chans = [int(c) for c in teacher_channels]
        if len(chans) < 2:
            raise LossInputError(f"{_WHERE}: RepresentationGraph needs at least 2 teachers, got {len(chans)}")
        self.teacher_channels = chans
        self.student_channels = int(student_channels)
        self.d = int(d)
        self.pairs = list(itertools.combinations(range(len(chans)), 2))
        p = len(self.pairs)
        self.sketch_mode = sketch
        self.l2_over = l2_over
        self.vertex_scale = vertex_scale
        self.student_temperature = float(student_temperature)
        self.mmd_sigma = mmd_sigma
        self.mmd_multipliers = tuple(float(v) for v in mmd_multipliers)
        self.gd_reg = float(gd_reg)
        self.sqrt_eps = float(sqrt_eps)
        if sketch == "shared":
            if len(set(chans)) != 1:
                raise LossInputError(f"{_WHERE}: sketch='shared' needs equal teacher channels, got {chans}")
            self.sketches = nn.ModuleList([CountSketch(chans[0], self.d, seed)])
        else:
            # Distinct seeds per teacher: the pair's two sketches must be independent.
            self.sketches = nn.ModuleList(
                [CountSketch(c, self.d, seed * 1009 + i) for i, c in enumerate(chans)]
            )
        self.register_buffer("temperatures", _temperature_vector(_WHERE, temperatures, p))
        self.register_buffer(
            "weight_temperatures",
            self.temperatures.clone()
            if weight_temperatures is None
            else _temperature_vector(_WHERE, weight_temperatures, p),
        )
        if learn_weights:
            self.g_r = nn.Parameter(torch.zeros(p))
        else:
            self.register_buffer("g_r", torch.zeros(p))
        self.last_vertex_losses: torch.Tensor | None = None

    @property
    def num_vertices(self) -> int:
        return len(self.pairs)

    def _sketch(self, i: int) -> CountSketch:
        return self.sketches[0] if self.sketch_mode == "shared" else self.sketches[i]

    def vertex_weights(self) -> torch.Tensor:
        """softmax(g_r / T_w) over the vertices (sums to 1)."""
        return torch.softmax(self.g_r / self.weight_temperatures, dim=0)

    def vertices(self, teacher_maps: Sequence[torch.Tensor], size) -> torch.Tensor:
        """Bilinear vertices V (B, P, d, S) from K teacher maps pooled to ``size`` (H, W)."""
        if len(teacher_maps) != len(self.teacher_channels):
            raise LossInputError(
                f"{_WHERE}: RepresentationGraph expects {len(self.teacher_channels)} teacher maps, "
                f"got {len(teacher_maps)}"
            )
        maps = []
        for i, r in enumerate(teacher_maps):
            check_shape(_WHERE, f"teacher map {i}", r, 4)
            if r.shape[1] != self.teacher_channels[i]:
                raise LossInputError(
                    f"{_WHERE}: teacher map {i} has {r.shape[1]} channels, expected {self.teacher_channels[i]}"
                )
            maps.append(adaptive_pool_to(r, size).flatten(2))        # (B, C_i, S)
        out = []
        for m, n in self.pairs:  # the C(K, 2) vertices, not a loop over examples or channels
            v = compact_bilinear(maps[m], maps[n], self._sketch(m), self._sketch(n), dim=1)
            v = signed_sqrt(v, self.sqrt_eps)
            out.append(l2_normalise(v, dim=1 if self.l2_over == "location" else (1, 2)))
        return torch.stack(out, 1)

    def forward(self, teacher_maps: Sequence[torch.Tensor], student_map: torch.Tensor) -> dict:
        """teacher_maps K x (B, C_k, h_k, w_k), student_map (B, C_s, H, W) -> {"repr", "graph_reg"}."""
        check_shape(_WHERE, "student_map", student_map, 4)
        if student_map.shape[1] != self.student_channels:
            raise LossInputError(
                f"{_WHERE}: student map has {student_map.shape[1]} channels, expected {self.student_channels}"
            )
        b = student_map.shape[0]
        v = self.vertices(teacher_maps, tuple(student_map.shape[-2:])).to(student_map.dtype)
        p, s = v.shape[1], v.shape[-1]
        if self.vertex_scale == "unit_rms":
            v = v * math.sqrt(self.d * (s if self.l2_over == "map" else 1))
        dk = torch.softmax(v / self.temperatures.to(v.dtype).view(1, p, 1, 1), dim=-1)   # (B, P, d, S)
        xs = positions_softmax(student_map, self.student_temperature)                     # (B, C_s, S)
        x = xs.unsqueeze(1).expand(b, p, xs.shape[1], s).reshape(b * p, xs.shape[1], s)
        l_r = gaussian_mmd(
            x, dk.reshape(b * p, self.d, s), sigma=self.mmd_sigma, multipliers=self.mmd_multipliers
        ).view(b, p)
        self.last_vertex_losses = l_r.detach().mean(0)
        w = self.vertex_weights().to(l_r.dtype)
        loss = (l_r * w.unsqueeze(0)).sum(1).mean()
        reg = self.gd_reg * ((w - 1.0 / p) ** 2).sum()
        return {"repr": loss, "graph_reg": reg}


class UniformFeatureDistill(nn.Module):
    """"Feature distill (uniform)": MMD^2 between the student's channel distributions and each
    teacher's own conv4 channel distributions (softmax over positions at T_k; no bilinear
    pairs), averaged uniformly over the K teachers and the batch."""

    def __init__(
        self,
        teacher_channels: Sequence[int],
        student_channels: int,
        temperatures: float | Sequence[float] = 1.0,
        student_temperature: float = 1.0,
        mmd_sigma: float | None = None,
        mmd_multipliers: Sequence[float] = (1.0,),
    ):
        super().__init__()
        self.teacher_channels = [int(c) for c in teacher_channels]
        if not self.teacher_channels:
            raise LossInputError(f"{_WHERE}: UniformFeatureDistill needs at least 1 teacher")
        check_positive(_WHERE, "student_temperature", student_temperature)
        self.student_channels = int(student_channels)
        self.student_temperature = float(student_temperature)
        self.mmd_sigma = mmd_sigma
        self.mmd_multipliers = tuple(float(v) for v in mmd_multipliers)
        self.register_buffer(
            "temperatures", _temperature_vector(_WHERE, temperatures, len(self.teacher_channels))
        )

    def forward(self, teacher_maps: Sequence[torch.Tensor], student_map: torch.Tensor) -> dict:
        """teacher_maps K x (B, C_k, h, w), student_map (B, C_s, H, W) -> {"repr": scalar}."""
        check_shape(_WHERE, "student_map", student_map, 4)
        k = len(self.teacher_channels)
        if len(teacher_maps) != k or student_map.shape[1] != self.student_channels:
            raise LossInputError(
                f"{_WHERE}: UniformFeatureDistill expects {k} teacher maps and a student map with "
                f"{self.student_channels} channels, got {len(teacher_maps)} and {student_map.shape[1]}"
            )
        size = tuple(student_map.shape[-2:])
        xs = positions_softmax(student_map, self.student_temperature)
        losses = []
        for i, r in enumerate(teacher_maps):  # K teachers with possibly different channel counts
            check_shape(_WHERE, f"teacher map {i}", r, 4)
            if r.shape[1] != self.teacher_channels[i]:
                raise LossInputError(
                    f"{_WHERE}: teacher map {i} has {r.shape[1]} channels, expected {self.teacher_channels[i]}"
                )
            yt = positions_softmax(adaptive_pool_to(r, size).to(xs.dtype), self.temperatures[i])
            losses.append(gaussian_mmd(xs, yt, sigma=self.mmd_sigma, multipliers=self.mmd_multipliers))
        return {"repr": torch.stack(losses, 1).mean()}
