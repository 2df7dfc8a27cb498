"""Distillation methods: one registry entry per row of Table 2.

A method is a small ``nn.Module`` whose ``forward(student, x, batch)`` returns
``(logits, {term_name: weighted_loss})``; the runner sums the dict, so every term is logged
per step for free (mdistiller's idea). Student methods are built from *parts* (hard labels,
KD, G_l, MMGD, G_r, uniform feature distillation), so a new row that combines existing parts
is one line in ``METHODS``; a new part is one class in ``PARTS``.

The objective (docs/METHOD.md, Eq. 2-4 and 10): ``L = (1 - lambda) * CE + lambda * (logit terms)
+ beta * (representation terms) + (graph regularisers)``.

``staged-kd`` is not a Table 2 row of the paper but an extra one: our interpretation of the
staged-KD abstract (Wang & Tang 2023), a method whose objective changes with the epoch
(``Method.set_epoch``); see ``StagedKD`` and ``harness.distill.staged``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from harness.cache.schema import TEACHER_OUTPUTS
from harness.config import ConfigError, check_bounds, check_choice
from harness.distill.graphs import LogitsGraph, MMGDGraph, RepresentationGraph, UniformFeatureDistill
from harness.distill.losses.ce import classification_loss, soft_cross_entropy
from harness.distill.losses.em import GRAD_MODES, SINKHORN
from harness.distill.losses.kd import kd_multi, kd_to_distribution
from harness.distill.losses.pseudo_label import refine_labels
from harness.distill.staged import STAGE_NAMES, SubstageDistill, cascade_phase
from harness.errors import HarnessError
from harness.models.common import ModelOutput


class MethodError(HarnessError):
    """Unknown method name or a method that cannot run with the given store."""


@dataclass
class TeacherBatch:
    """What the store hands a method for one batch (the selected view of each item). Only
    the teacher outputs the method declares (``outputs``) are read; the others are None."""

    logits: torch.Tensor | None          # (B, K, C) teacher logits
    conv4: list[torch.Tensor] | None     # K x (B, C_k, h, w) teacher conv4 maps
    target: torch.Tensor                 # (B,) class index, or (B, C) multi-hot


@dataclass
class MethodContext:
    """Shapes and fixed inputs a method is built from (known once the store is open)."""

    num_classes: int
    teacher_names: list[str]
    teacher_channels: list[int]
    student_channels: int
    multilabel: bool = False
    ground_cost: torch.Tensor | None = None   # (C, C) EM ground cost from class prototypes
    student_stage_channels: tuple = ()        # channels of the student's conv1..conv4 (staged-kd)


@dataclass(frozen=True)
class MethodSettings:
    """Every switch of every method (documented in docs/DISTILL.md; ``harness distill --set``).

    A run's fingerprint covers only the keys its method reads (``settings_read``), so a new
    key of one method leaves every other method's finished runs valid.
    """

    lam: float = 0.6                       # Eq. 2: weight of the imitation (logit) terms
    beta: float = 1.0                      # weight of the representation terms (L_r)
    kd_temperature: float = 4.0            # Hinton KD temperature
    gl_temperatures: tuple = (2.0,)        # T_k per teacher (one value = shared)
    gl_learn_temperatures: bool = False    # learn log T_k
    gl_reading: str = "adjusted"           # "adjusted" (docs/METHOD.md) | "literal" (Eq. 4 as printed)
    gl_em: str = "exact"                   # "exact" (LP) | "sinkhorn" (entropic) | "closed_form_01" | "wgan"
    gl_ground_cost: str = "prototypes"     # "prototypes" (1 - cos of class prototypes) | "01"
    gl_gd_reg: float = 10.0                # pull of the edges toward uniform (MMGD's value)
    # the Sinkhorn solver (gl_em=sinkhorn and wgan); defaults in one place: em.SINKHORN
    em_eps: float = SINKHORN.eps           # Sinkhorn: final entropic regularisation (cost units)
    em_eps_start: float = SINKHORN.eps_start   # Sinkhorn: epsilon scaling starts here
    em_tol: float = SINKHORN.tol           # Sinkhorn: stop at this row-marginal L1 error
    em_iters: int = SINKHORN.max_iters     # Sinkhorn: iteration cap
    em_grad: str = SINKHORN.grad           # "potentials" (Danskin, O(1) memory) | "unroll" (autograd through iterations)
    em_round: bool = SINKHORN.round_plan   # Sinkhorn: round the plan onto the transport polytope
    em_floor: float = SINKHORN.floor       # added to the histograms before renormalising (every solver)
    mmgd_gd_reg: float = 10.0              # MMGD edge regulariser
    mmgd_embed_dim: int = 32               # MMGD vertex embedding size
    mmgd_edge_temperature: float = 8.0     # softmax temperature of MMGD's edges
    mmgd_w_logit: float = 10.0             # weight of MMGD's logit term
    mmgd_w_repr: float = 1.0               # weight of MMGD's representation term
    gr_d: int = 512                        # compact bilinear sketch dimension
    gr_temperatures: tuple = (1.0,)        # T_k of Eq. 8 per vertex
    gr_weight_temperatures: tuple = ()     # T of Eq. 10's vertex softmax; () = the vertex T_k
    gr_learn_weights: bool = True          # g_r learnable (False: uniform vertex weights)
    gr_gd_reg: float = 0.0                 # pull of the vertex weights toward uniform (not in the paper)
    gr_seed: int = 0                       # count-sketch h, s (saved with the run)
    gr_sketch: str = "per_teacher"         # "per_teacher" | "shared"
    gr_l2_over: str = "location"           # "location" | "map"
    gr_vertex_scale: str = "unit_rms"      # "unit_rms" (V_k * sqrt(d) before softmax / T_k) | "none" (literal Eq. 8)
    gr_student_temperature: float = 1.0    # softmax over positions of the student's channels
    gr_sqrt_eps: float = 1e-8              # signed sqrt's smoothing
    mmd_sigma: float = 0.0                 # Gaussian MMD bandwidth; 0 = adaptive (mean pairwise distance)
    mmd_multipliers: tuple = (1.0,)        # kernels at sigma^2 * r, averaged
    feat_temperatures: tuple = (1.0,)      # softmax temperature of the teachers' maps (feature distill)
    feat_student_temperature: float = 1.0  # the same for the student's channels
    # staged-kd (an interpretation from the abstract; lam and beta above weight its KD and
    # substage terms in the whole-student epochs)
    staged_phase_epochs: int = 1           # epochs per cascade phase (shortened in short runs; 0 = no cascade)
    staged_alpha: float = 0.3              # weight of the teachers' consensus in the refined target
    staged_tau: float = 0.9                # consensus confidence at which a disagreeing label is replaced
    staged_temperature: float = 4.0        # T of the consensus softmax (pseudo-labels and KD)
    staged_feature_temperature: float = 1.0   # T of feature_kl's softmax over positions
    staged_channel_reduction: str = "mean"    # feature_kl over channels: "mean" | "sum"
    staged_stage_point: str = "relu"       # substage map: "relu" (before conv1/conv2's pool) | "pool" (after)

    def __post_init__(self):
        for key, choices in _CHOICES.items():
            check_choice(self, key, choices)
        check_bounds(self, _BOUNDS)
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"config key 'lam': must lie in [0, 1], got {self.lam!r}")
        for key in ("gl_temperatures", "gr_temperatures", "feat_temperatures", "mmd_multipliers"):
            if len(getattr(self, key)) == 0:
                raise ConfigError(f"config key {key!r}: needs at least one value")


# the choices are the graphs' own, so a new reading is added in one place
_CHOICES = {
    "gl_reading": LogitsGraph.READINGS, "gl_em": LogitsGraph.EMS, "gl_ground_cost": ("prototypes", "01"),
    "em_grad": GRAD_MODES, "gr_sketch": RepresentationGraph.SKETCHES, "gr_l2_over": RepresentationGraph.L2_OVER,
    "gr_vertex_scale": RepresentationGraph.VERTEX_SCALES,
    "staged_channel_reduction": ("mean", "sum"), "staged_stage_point": ("relu", "pool"),
}
# ... and the fields' types: typing.get_type_hints(MethodSettings) gives Literal[choices] per key
for _key, _choices in _CHOICES.items():
    MethodSettings.__annotations__[_key] = Literal[_choices]
# (key, lower bound, strict): values (or each value of a tuple) must be finite and above it
_BOUNDS = [
    ("beta", 0, False), ("kd_temperature", 0, True), ("gl_temperatures", 0, True), ("gl_gd_reg", 0, False),
    ("em_eps", 0, True), ("em_eps_start", 0, True), ("em_tol", 0, False), ("em_iters", 1, False),
    ("em_floor", 0, False), ("mmgd_gd_reg", 0, False), ("mmgd_embed_dim", 1, False),
    ("mmgd_edge_temperature", 0, True), ("mmgd_w_logit", 0, False), ("mmgd_w_repr", 0, False), ("gr_d", 1, False),
    ("gr_temperatures", 0, True), ("gr_weight_temperatures", 0, True), ("gr_gd_reg", 0, False),
    ("gr_student_temperature", 0, True), ("gr_sqrt_eps", 0, True), ("mmd_sigma", 0, False),
    ("mmd_multipliers", 0, True), ("feat_temperatures", 0, True), ("feat_student_temperature", 0, True),
]


def _sigma(s: MethodSettings) -> float | None:
    return None if s.mmd_sigma == 0 else float(s.mmd_sigma)


# ---- parts ------------------------------------------------------------------------------

class Part(nn.Module):
    """One loss component; ``forward`` returns unweighted named terms. ``groups`` maps a term
    name to its weight group: "hard", "logit", "repr" or "reg"."""

    groups: dict[str, str] = {}
    # the MethodSettings keys this part reads (a run's fingerprint covers these and no others)
    reads: tuple[str, ...] = ()
    # the cached teacher outputs it reads (harness.cache.schema.TEACHER_OUTPUTS)
    outputs: tuple[str, ...] = ()

    def forward(self, out: ModelOutput, tb: TeacherBatch) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def stats(self) -> dict[str, float]:
        """Numbers logged per epoch beside the loss terms (not part of the loss)."""
        return {}

    def artifacts(self) -> dict:
        """Learned graph quantities saved with the run (adjacency, vertex weights)."""
        return {}


class HardLabel(Part):
    groups = {"ce": "hard"}

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()

    def forward(self, out, tb):
        return {"ce": classification_loss(out.logits, tb.target)}


class KDUniform(Part):
    groups = {"kd": "logit"}
    outputs = ("logits",)
    reads = ("kd_temperature",)

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        self.temperature = s.kd_temperature

    def forward(self, out, tb):
        return {"kd": kd_multi(out.logits, tb.logits, self.temperature)}


def _per(values: tuple, k: int) -> list[float]:
    return [float(values[0])] * k if len(values) == 1 else [float(v) for v in values]


class LogitsGraphPart(Part):
    groups = {"logit": "logit", "graph_reg": "reg"}
    outputs = ("logits",)
    reads = ("gl_temperatures", "gl_learn_temperatures", "gl_reading", "gl_em", "gl_ground_cost", "gl_gd_reg",
             "em_eps", "em_eps_start", "em_tol", "em_iters", "em_grad", "em_round", "em_floor")

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        k = len(ctx.teacher_names)
        self.graph = LogitsGraph(k, _per(s.gl_temperatures, k), s.gl_learn_temperatures, s.gl_reading,
                                 s.gl_em, s.gl_gd_reg, em_eps=s.em_eps, em_iters=s.em_iters, em_floor=s.em_floor,
                                 em_grad=s.em_grad, em_tol=s.em_tol, em_eps_start=s.em_eps_start,
                                 em_round=s.em_round)
        use_cost = s.gl_em in ("exact", "sinkhorn") and s.gl_ground_cost == "prototypes"
        if use_cost and ctx.ground_cost is None:
            raise MethodError("gl: the store has no class prototypes for the EM ground cost; "
                              "use --set gl_ground_cost=01 or rebuild the cache")
        self.register_buffer("cost", ctx.ground_cost.float() if use_cost else None)
        self.teacher_names = ctx.teacher_names

    def forward(self, out, tb):
        return self.graph(tb.logits.float(), out.logits.float(), self.cost)

    def artifacts(self):
        return {"gl_adjacency": self.graph.adjacency().tolist(), "gl_teachers": self.teacher_names,
                "gl_temperatures": self.graph.temperatures().detach().cpu().tolist()}


class MMGDPart(Part):
    groups = {"logit": "logit", "repr": "repr", "graph_reg": "reg"}
    outputs = ("logits", "conv4")
    reads = ("mmgd_gd_reg", "mmgd_embed_dim", "mmgd_edge_temperature", "mmgd_w_logit", "mmgd_w_repr")

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        self.graph = MMGDGraph(len(ctx.teacher_names), ctx.num_classes, ctx.teacher_channels,
                               ctx.student_channels, embed_dim=s.mmgd_embed_dim,
                               edge_temperature=s.mmgd_edge_temperature, gd_reg=s.mmgd_gd_reg,
                               w_logit=s.mmgd_w_logit, w_repr=s.mmgd_w_repr)
        self.teacher_names = ctx.teacher_names

    def forward(self, out, tb):
        return self.graph(tb.logits.float(), out.logits.float(), [c.float() for c in tb.conv4], out.conv4.float())

    def artifacts(self):
        edges = getattr(self.graph, "last_edges", None)
        return {"mmgd_mean_edges_last_batch": None if edges is None else edges.mean(0).cpu().tolist(),
                "mmgd_teachers": self.teacher_names}


class RepresentationGraphPart(Part):
    groups = {"repr": "repr", "graph_reg": "reg"}
    outputs = ("conv4",)
    reads = ("gr_d", "gr_temperatures", "gr_weight_temperatures", "gr_learn_weights", "gr_gd_reg", "gr_seed",
             "gr_sketch", "gr_l2_over", "gr_vertex_scale", "gr_student_temperature", "gr_sqrt_eps", "mmd_sigma",
             "mmd_multipliers")

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        k = len(ctx.teacher_names)
        p = k * (k - 1) // 2
        self.graph = RepresentationGraph(ctx.teacher_channels, ctx.student_channels, d=s.gr_d,
                                         temperatures=_per(s.gr_temperatures, p), seed=s.gr_seed,
                                         weight_temperatures=_per(s.gr_weight_temperatures, p)
                                         if s.gr_weight_temperatures else None,
                                         learn_weights=s.gr_learn_weights, sketch=s.gr_sketch, l2_over=s.gr_l2_over,
                                         student_temperature=s.gr_student_temperature, mmd_sigma=_sigma(s),
                                         mmd_multipliers=s.mmd_multipliers, gd_reg=s.gr_gd_reg,
                                         sqrt_eps=s.gr_sqrt_eps, vertex_scale=s.gr_vertex_scale)
        self.pairs = [(ctx.teacher_names[m], ctx.teacher_names[n]) for m, n in self.graph.pairs]

    def forward(self, out, tb):
        return self.graph([c.float() for c in tb.conv4], out.conv4.float())

    def weight_summary(self) -> dict[str, float]:
        """Entropy (nats; log P is uniform) and largest value of the vertex weights: a collapse
        onto one teacher pair shows as entropy near 0 and max weight near 1."""
        w = self.graph.vertex_weights().detach().double()
        return {"gr/weight_entropy": float(-(w * w.clamp_min(1e-30).log()).sum()),
                "gr/weight_max": float(w.max())}

    def stats(self):
        return self.weight_summary()

    def artifacts(self):
        summary = self.weight_summary()
        return {"gr_vertices": [f"{a}x{b}" for a, b in self.pairs],
                "gr_vertex_weights": self.graph.vertex_weights().detach().cpu().tolist(),
                "gr_weight_entropy": summary["gr/weight_entropy"],
                "gr_weight_entropy_uniform": math.log(len(self.pairs)),
                "gr_weight_max": summary["gr/weight_max"]}


class UniformFeaturePart(Part):
    groups = {"repr": "repr"}
    outputs = ("conv4",)
    reads = ("feat_temperatures", "feat_student_temperature", "mmd_sigma", "mmd_multipliers")

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        self.loss = UniformFeatureDistill(ctx.teacher_channels, ctx.student_channels,
                                          _per(s.feat_temperatures, len(ctx.teacher_names)),
                                          student_temperature=s.feat_student_temperature, mmd_sigma=_sigma(s),
                                          mmd_multipliers=s.mmd_multipliers)

    def forward(self, out, tb):
        return self.loss([c.float() for c in tb.conv4], out.conv4.float())


PARTS: dict[str, type[Part]] = {
    "ce": HardLabel, "kd": KDUniform, "gl": LogitsGraphPart, "mmgd": MMGDPart,
    "gr": RepresentationGraphPart, "feat": UniformFeaturePart,
}


# ---- methods ----------------------------------------------------------------------------

class Method(nn.Module):
    """A Table 2 row. ``forward`` trains; ``predict`` gives the scores evaluated at video level."""

    trains_student: bool = True
    # the cached teacher outputs the method reads; the runner streams no other teacher field
    outputs: tuple[str, ...] = TEACHER_OUTPUTS
    # True when some parameters get no gradient in some steps (DDP must then look for them)
    partial_graph: bool = False

    def forward(self, student: nn.Module, x: torch.Tensor, tb: TeacherBatch):  # pragma: no cover
        raise NotImplementedError

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the runner at the start of every epoch (0-based) of a run of ``epochs``,
        resumed ones included; methods whose objective follows a schedule read it here."""

    def stats(self) -> dict[str, float]:
        """Numbers about the last training step that are logged beside the loss terms (mean
        over the epoch) but are not part of the loss."""
        return {}

    @torch.no_grad()
    def predict(self, student: nn.Module, x: torch.Tensor, tb: TeacherBatch) -> torch.Tensor:
        return student(x)

    def artifacts(self) -> dict:
        return {}


class StudentMethod(Method):
    """The student trained with a weighted sum of parts."""

    def __init__(self, parts: tuple[str, ...], ctx: MethodContext, s: MethodSettings):
        super().__init__()
        self.parts = nn.ModuleDict({name: PARTS[name](ctx, s) for name in parts})
        has_logit = any("logit" in PARTS[p].groups.values() for p in parts)
        # (1 - lambda) on CE only when an imitation term takes the other lambda (Eq. 2).
        self.weights = {"hard": (1.0 - s.lam) if has_logit else 1.0, "logit": s.lam,
                        "repr": s.beta, "reg": 1.0}

    def forward(self, student, x, tb):
        out = student.forward_features(x)
        terms = {}
        for name, part in self.parts.items():
            for term, value in part(out, tb).items():
                terms[f"{name}/{term}"] = self.weights[part.groups[term]] * value
        return out.logits, terms

    def stats(self):
        merged = {}
        for part in self.parts.values():
            merged.update(part.stats())
        return merged

    def artifacts(self):
        merged = {}
        for part in self.parts.values():
            merged.update(part.artifacts())
        return merged

    @staticmethod
    def reads_of(parts: tuple[str, ...]) -> tuple[str, ...]:
        """The settings a student trained with ``parts`` reads: theirs, lam and beta where used."""
        groups = {g for p in parts for g in PARTS[p].groups.values()}
        keys = [k for p in parts for k in PARTS[p].reads]
        keys += ["lam"] if "logit" in groups else []
        keys += ["beta"] if "repr" in groups else []
        return tuple(dict.fromkeys(keys))

    @staticmethod
    def outputs_of(parts: tuple[str, ...]) -> tuple[str, ...]:
        """The teacher outputs a student trained with ``parts`` reads, in schema order."""
        used = {o for p in parts for o in PARTS[p].outputs}
        return tuple(o for o in TEACHER_OUTPUTS if o in used)


class Fusion(Method):
    """Models fusion: each fine-tuned teacher's softmax scores averaged (nothing is trained)."""

    trains_student = False
    outputs = ("logits",)

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()

    @torch.no_grad()
    def predict(self, student, x, tb):
        # log of the mean teacher probability, so the evaluator's softmax returns that mean
        return torch.softmax(tb.logits.float(), -1).mean(1).clamp_min(1e-12).log()


class Ensemble(Method):
    """Models ensemble: the teachers' pooled conv4 features concatenated -> one linear classifier."""

    trains_student = False
    outputs = ("conv4",)

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        self.head = nn.Linear(sum(ctx.teacher_channels), ctx.num_classes)

    def _features(self, tb):
        return torch.cat([c.float().mean((2, 3)) for c in tb.conv4], 1)

    def forward(self, student, x, tb):
        logits = self.head(self._features(tb))
        return logits, {"ce": classification_loss(logits, tb.target)}

    @torch.no_grad()
    def predict(self, student, x, tb):
        return self.head(self._features(tb))


class StagedKD(Method):
    """Staged KD, our interpretation of Wang & Tang 2023 from its abstract (docs/DISTILL.md).

    P substages (the student's conv1..conv4), each with the loss L_j of
    ``harness.distill.staged`` against the teachers' cached conv4 maps. Phase p = 1..P of
    the cascade (``cascade_phase``) trains

        L = sum_{j <= p} L_j                 (no CE, no KD: blocks after p get no gradient)

    and the epochs after the cascade train the whole student with

        L = (1 - lambda) CE_soft(z_s, r) + lambda T^2 KL(q || softmax(z_s / T)) + beta sum_j L_j

    q the teachers' consensus and r the refined labels (``refine_labels``).
    """

    partial_graph = True
    single_label = True      # the pseudo-label refinement needs one class per video
    reads = ("lam", "beta", "staged_phase_epochs", "staged_alpha", "staged_tau", "staged_temperature",
             "staged_feature_temperature", "staged_channel_reduction", "staged_stage_point")

    def __init__(self, ctx: MethodContext, s: MethodSettings):
        super().__init__()
        if ctx.multilabel:
            raise MethodError("staged-kd: the pseudo-label refinement is single-label only, and this store is "
                              "multi-label; use another method for it")
        if len(ctx.student_stage_channels) != len(STAGE_NAMES):
            raise MethodError(f"staged-kd: needs the channels of the student's {len(STAGE_NAMES)} conv blocks "
                              f"(MethodContext.student_stage_channels), got {ctx.student_stage_channels!r}")
        if s.staged_phase_epochs < 0:
            raise MethodError(f"staged-kd: staged_phase_epochs must be >= 0, got {s.staged_phase_epochs}")
        self.substages = SubstageDistill(ctx.student_stage_channels, ctx.teacher_channels,
                                         s.staged_feature_temperature, s.staged_channel_reduction)
        self.num_stages = len(STAGE_NAMES)
        self.settings = s
        self.phase = self.num_stages + 1    # whole student until the runner says otherwise
        self.epochs = 0
        self._stats: dict[str, float] = {}

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.epochs = epochs
        self.phase = cascade_phase(epoch, epochs, self.num_stages, self.settings.staged_phase_epochs)

    def forward(self, student, x, tb):
        s = self.settings
        out, maps = student.forward_stages(x, s.staged_stage_point)
        cascade = self.phase <= self.num_stages
        kl = self.substages(maps, tb.conv4, self.phase if cascade else self.num_stages)
        self._stats = {"staged/phase": float(self.phase)}
        # In the cascade the substage losses are the whole objective (weight 1); beta only
        # balances them against CE and KD in the whole-student epochs.
        weight = 1.0 if cascade else s.beta
        terms = {f"stage{j + 1}/kl": weight * value for j, value in enumerate(kl)}
        if cascade:
            return out.logits, terms
        refined = refine_labels(tb.logits.float(), tb.target, s.staged_alpha, s.staged_tau, s.staged_temperature)
        self._stats["staged/replaced"] = float(refined.replaced.float().mean())
        logits = out.logits.float()
        return out.logits, {"ce": (1.0 - s.lam) * soft_cross_entropy(logits, refined.target),
                            "kd": s.lam * kd_to_distribution(logits, refined.consensus, s.staged_temperature),
                            **terms}

    def stats(self):
        return dict(self._stats)

    def artifacts(self):
        p = self.settings.staged_phase_epochs
        return {"staged_stages": list(STAGE_NAMES),
                "staged_phases": [cascade_phase(e, self.epochs, self.num_stages, p) for e in range(self.epochs)]}


def _student(*parts: str) -> Callable[[MethodContext, MethodSettings], Method]:
    def build(ctx, s):
        return StudentMethod(("ce", *parts), ctx, s)

    build.reads = StudentMethod.reads_of(("ce", *parts))
    build.outputs = StudentMethod.outputs_of(("ce", *parts))
    return build


@dataclass(frozen=True)
class MethodSpec:
    label: str                                              # the Table 2 row label
    build: Callable[[MethodContext, MethodSettings], Method]
    notes: str = ""
    table2: bool = True
    teachers: tuple[str, ...] | None = None                 # distil from these of the store's teachers; None: all

    @property
    def reads(self) -> tuple[str, ...]:
        """The ``MethodSettings`` keys the method reads (``build.reads``)."""
        return tuple(getattr(self.build, "reads", ()))

    @property
    def outputs(self) -> tuple[str, ...]:
        """The cached teacher outputs the method reads (``build.outputs``; a Method class's
        ``outputs``), so the runner streams only those fields."""
        return tuple(getattr(self.build, "outputs", TEACHER_OUTPUTS))

    @property
    def single_label(self) -> bool:
        """True when the method is defined for single-label data only (``build.single_label``)."""
        return bool(getattr(self.build, "single_label", False))


# One entry per row of Table 2 (plus the plain student). Adding a method touches only this dict.
METHODS: dict[str, MethodSpec] = {
    "fusion": MethodSpec("Models fusion", Fusion),
    "ensemble": MethodSpec("Models ensemble", Ensemble),
    "kd": MethodSpec("KD (uniform)", _student("kd")),
    "mmgd": MethodSpec("Logits graph (MMGD)", _student("mmgd"),
                       "MMGD repr term uses pooled conv4 with a learned projection (our adaptation)"),
    "gl": MethodSpec("Logits graph (G_l)", _student("gl")),
    "feat": MethodSpec("Feature distill (uniform)", _student("feat")),
    "gr": MethodSpec("Feature graph distill (G_r)", _student("gr")),
    "mmgd+gr": MethodSpec("MMGD+G_r", _student("mmgd", "gr")),
    "gl+gr": MethodSpec("G_l+G_r", _student("gl", "gr")),
    # Not a row of the paper's Table 2 (no paper number): an extra row.
    "staged-kd": MethodSpec("Staged KD (interpretation from the abstract)", StagedKD,
                            "not in the paper's Table 2; our reading of Wang & Tang 2023 (arXiv 2307.05201) from its "
                            "abstract only; every substage is paired with the teachers' conv4, the one stage the "
                            "store caches"),
    "student": MethodSpec("Student, labels only (no teacher)", _student(), table2=False),
}


def settings_read(name: str, settings: MethodSettings) -> dict:
    """The values of the settings method ``name`` reads: what its run fingerprint covers."""
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return {k: getattr(settings, k) for k in METHODS[name].reads}


def build_method(name: str, ctx: MethodContext, settings: MethodSettings) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name].build(ctx, settings)
