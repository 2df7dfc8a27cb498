"""The pretext-task registry and the pieces every task shares.

A pretext task turns unlabeled videos (uint8 ``(T, H, W, 3)`` arrays, or memory maps of the
frame cache) into
batches of (input, pretext target) with no class label anywhere, and knows how to score a
backbone on them: a head built on the backbone's ``embedding``, a loss and a pretext metric
with its chance level. Each task is one class in its own module, registered here with
:func:`register`; adding a task touches that one module (plus its import in
``harness/pretext/__init__.py``).

Batches are plain dicts of numpy arrays (``"frames"``: uint8 ``(B, K, H, W, 3)``, ``"target"``:
int64 ``(B,)`` and task-specific extras) so the samplers can be tested without a model.
Statistics are returned as sums (``{"correct": ..., "n": ...}``) so they can be added across
batches before the metric is computed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError


class PretextError(HarnessError):
    """A pretext task that cannot run on the given videos or settings (one line, names the cause)."""


PRETEXT_TASKS: dict[str, type["PretextTask"]] = {}


def register(cls: type["PretextTask"]) -> type["PretextTask"]:
    """Class decorator: add a task to :data:`PRETEXT_TASKS` under ``cls.name``."""
    if cls.name in PRETEXT_TASKS and PRETEXT_TASKS[cls.name] is not cls:
        raise ValueError(f"pretext task {cls.name!r} registered twice")
    PRETEXT_TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type["PretextTask"]:
    """The registered task class called ``name`` (a :class:`PretextError` lists the known ones)."""
    import harness.pretext  # noqa: F401  (importing the package registers every task)

    if name not in PRETEXT_TASKS:
        raise PretextError(f"unknown pretext task {name!r}; choose one of {', '.join(PRETEXT_TASKS)}")
    return PRETEXT_TASKS[name]


Stats = dict[str, float]


class PretextTask:
    """One self-supervised task. Subclasses set the class attributes and the five methods.

    ``knobs`` is an instance of the subclass's ``Knobs`` dataclass (the task's own settings,
    exposed as ``task.<field>`` overrides by the pretraining loop); ``input_size`` is the
    backbone's square input side in pixels.
    """

    name: ClassVar[str]
    #: backbone architecture for ``harness.models.build_model``
    arch: ClassVar[str]
    #: what :meth:`metric` measures, and whether larger is better
    metric_name: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True
    #: one sentence on how :meth:`chance` is obtained (written to the run's final.json and the docs)
    chance_note: ClassVar[str] = ""
    #: a stronger reference than chance, where the task has a classic one (``baseline``)
    baseline_note: ClassVar[str] = ""
    #: the paper the task follows, and whether this is an interpretation
    reference: ClassVar[str] = ""

    @dataclasses.dataclass(frozen=True)
    class Knobs:
        pass

    #: per-preset replacements of the task's knobs, e.g. ``{"smoke": {"window": 6}}``
    knob_presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: per-preset replacements of the pretraining settings (batch size, iterations, ...)
    train_presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, knobs: Any = None, input_size: int = 64):
        self.knobs = knobs if knobs is not None else self.Knobs()
        self.input_size = int(input_size)
        self.check_knobs()

    @classmethod
    def knobs_for(cls, preset: str) -> Any:
        """The task's knobs for ``preset`` (defaults with ``knob_presets[preset]`` applied)."""
        return dataclasses.replace(cls.Knobs(), **cls.knob_presets.get(preset, {}))

    def check_knobs(self) -> None:
        """Raise :class:`PretextError` on inconsistent knobs (override in subclasses)."""

    def bind_model(self, model: nn.Module) -> None:
        """Read what the head needs from the backbone before :meth:`build_head` (conv4 width)."""
        self.conv4_channels = int(getattr(model, "conv4_channels", 0))

    def min_frames(self) -> int:
        """Fewest frames a video needs to give one example."""
        raise NotImplementedError

    def sample(self, videos: Sequence[np.ndarray], batch_size: int, rng: np.random.Generator) -> dict:
        """A batch of ``batch_size`` examples drawn from ``videos`` (numpy arrays, no class labels)."""
        raise NotImplementedError

    def build_head(self, embedding_dim: int) -> nn.Module:
        """The task head on the backbone's ``embedding`` (``nn.Identity()`` when none)."""
        raise NotImplementedError

    def step(self, backbone: nn.Module, head: nn.Module, batch: dict,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, Stats]:
        """Forward one batch: the scalar loss to minimise and summed statistics for the metric."""
        raise NotImplementedError

    def metric(self, stats: Stats) -> float:
        """The pretext metric from statistics summed over batches (default: accuracy)."""
        return stats["correct"] / max(stats["n"], 1.0)

    def chance(self, stats: Stats) -> float:
        """The metric's chance level (default: uniform guess over ``num_outputs`` answers)."""
        return 1.0 / self.num_outputs

    def baseline(self, stats: Stats) -> float | None:
        """The metric of a classic non-learned baseline on the same items (``baseline_note``);
        None where the task has none."""
        return None

    num_outputs: int = 2


# ---- video helpers shared by the samplers ---------------------------------------------------

def frame_motion(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between consecutive frames, ``(T-1,)`` float (grey levels 0-255)."""
    f = frames.astype(np.float32)
    if len(f) < 2:
        return np.zeros(0, np.float32)
    return np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))


def high_motion_start(frames: np.ndarray, span: int, rng: np.random.Generator,
                      top_fraction: float = 0.5) -> int:
    """Start of a window of ``span`` frames drawn among the windows with the most motion.

    Window motion = summed frame-difference magnitude inside it (OPN and Shuffle & Learn pick
    high-motion windows with optical flow; frame differences are the cheap proxy that works on
    any video). The start is uniform over the windows whose motion is at least the
    ``1 - top_fraction`` quantile, so ties (e.g. a constant-speed video) keep every window.
    """
    t = len(frames)
    if t < span:
        raise PretextError(f"video has {t} frames, a window needs {span}")
    diff = frame_motion(frames)
    csum = np.concatenate([[0.0], np.cumsum(diff)])
    energy = csum[span - 1:] - csum[: t - span + 1]  # sum of the span-1 diffs inside each window
    if len(energy) == 1:
        return 0
    threshold = np.quantile(energy, 1.0 - top_fraction)
    candidates = np.flatnonzero(energy >= threshold - 1e-6)
    return int(rng.choice(candidates))


def spaced_indices(window: int, n: int, min_gap: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted frame offsets in ``[0, window)``, consecutive ones at least ``min_gap`` apart.

    Uniform over every such set: draw ``n`` sorted distinct offsets from the
    ``window - (n - 1) (min_gap - 1)`` slots, then spread the i-th by ``i (min_gap - 1)``.
    Why: frames one step apart barely differ on slow videos, so their order is not visible.
    """
    slots = window - (n - 1) * (min_gap - 1)
    if min_gap < 1 or slots < n:
        raise PretextError(f"{n} frames at least {min_gap} apart do not fit in a window of {window}")
    return np.sort(rng.choice(slots, size=n, replace=False)) + (min_gap - 1) * np.arange(n)


def motion_box(frames: np.ndarray, size: int, rng: np.random.Generator | None = None, top_k: int = 1) -> tuple[int, int]:
    """Top-left (y, x) of the ``size`` x ``size`` box with the most change across ``frames``.

    Change = summed mean absolute difference of consecutive frames (in the given order, so pass
    them in temporal order). With ``rng`` and ``top_k > 1`` the box is drawn among the ``top_k``
    best. OPN crops its tuples where motion is large; on small frames with small objects this
    keeps the moving object large in the crop instead of a few pixels of a full frame.
    """
    from harness.pretext.tracker import box_sums

    frames = np.asarray(frames)
    h, w = frames.shape[1:3]
    if size > min(h, w):
        raise PretextError(f"crop of {size} px does not fit frames of {h}x{w}")
    change = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=-1).sum(axis=0)
    energy = box_sums(change, size).ravel()
    k = min(max(top_k, 1), energy.size)
    best = int(np.argmax(energy)) if rng is None or k == 1 else int(rng.choice(np.argpartition(-energy, k - 1)[:k]))
    return divmod(best, w - size + 1)


def video_shapes(videos: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """Each video's (T, H, W, 3); read from ``videos.shapes`` where the sequence keeps them
    (the on-disk frame cache), so no video is opened to learn its length."""
    shapes = getattr(videos, "shapes", None)
    return list(shapes) if shapes is not None else [v.shape for v in videos]


def pick_videos(videos: Sequence[np.ndarray], n: int, min_frames: int, rng: np.random.Generator) -> list[int]:
    """``n`` indices (with replacement) of videos with at least ``min_frames`` frames."""
    shapes = video_shapes(videos)
    ok = [i for i, s in enumerate(shapes) if s[0] >= min_frames]
    if not ok:
        longest = max((s[0] for s in shapes), default=0)
        raise PretextError(f"no video has the {min_frames} frames this task needs (longest: {longest})")
    return [ok[i] for i in rng.integers(0, len(ok), size=n)]


def channel_split(frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """OPN's channel splitting: each frame keeps one random colour channel, copied to all three.

    Returns the new frames and the chosen channel per frame. It stops the network from solving
    the order from chromatic aberration and similar low-level cues.
    """
    frames = np.asarray(frames)
    channels = rng.integers(0, 3, size=len(frames))
    out = np.repeat(frames[np.arange(len(frames)), ..., channels][..., None], 3, axis=-1)
    return np.ascontiguousarray(out), channels


def crop(frame: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` patch with top-left corner (y, x), zero padded outside the frame."""
    h, w = frame.shape[:2]
    out = np.zeros((size, size, frame.shape[2]), frame.dtype)
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + size, h), min(x + size, w)
    if y1 > y0 and x1 > x0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = frame[y0:y1, x0:x1]
    return out


# ---- permutation classes (OPN) --------------------------------------------------------------

def order_classes(n: int) -> list[tuple[int, ...]]:
    """The n!/2 order classes: one representative per {permutation, its reverse} pair.

    The representative is the member whose first index is smaller than its last (exactly one
    of a permutation and its reverse has that property), in lexicographic order.
    """
    return [p for p in itertools.permutations(range(n)) if p[0] < p[-1]]


def order_class(perm: Sequence[int]) -> int:
    """Class index of ``perm`` among :func:`order_classes`; a permutation and its reverse share it."""
    p = tuple(int(i) for i in perm)
    canon = p if p[0] < p[-1] else p[::-1]
    return _order_index(len(p))[canon]


_ORDER_INDEX: dict[int, dict[tuple[int, ...], int]] = {}


def _order_index(n: int) -> dict[tuple[int, ...], int]:
    if n not in _ORDER_INDEX:
        _ORDER_INDEX[n] = {p: i for i, p in enumerate(order_classes(n))}
    return _ORDER_INDEX[n]


# ---- tensors and heads -----------------------------------------------------------------------

def to_input(frames: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> normalised float ``(N, 3, size, size)`` on ``device``.

    Normalisation is ``harness.data.transforms.to_tensor`` (the one place it is defined); frames
    of another size are resized bilinearly (antialiased when shrinking).
    """
    from harness.data.transforms import to_tensor

    frames = np.asarray(frames)
    flat = frames.reshape((-1,) + frames.shape[-3:])
    x = to_tensor(flat)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    x = x.to(device=device, dtype=torch.float32)
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-1] > size or x.shape[-2] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x


def embed(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's penultimate vector ``(N, D)`` for images ``(N, 3, H, W)``."""
    return backbone.forward_features(x).embedding


class MLPHead(nn.Module):
    """``Linear -> ReLU -> Dropout -> Linear``: the fc layers a pretext task puts on its features."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EmbeddingNorm(nn.Module):
    """BatchNorm over the D features of embeddings shaped ``(..., D)`` (running stats in eval
    unless ``running=False``).

    Why: freshly initialised backbones (torchvision-style fc init, std 0.01) give embeddings
    of ~1e-4 that barely vary across inputs, so a head on the raw vector sees a constant and
    the task never starts learning. Standardising each feature first fixes the scale for the
    head and for the gradient sent back into the backbone.
    """

    def __init__(self, dim: int, affine: bool = True, running: bool = True):
        super().__init__()
        # running=False: batch statistics in eval mode too (no buffers), so a metric measured at
        # initialisation and one measured after training compare the same kind of embedding
        self.bn = nn.BatchNorm1d(dim, affine=affine, track_running_stats=running)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.reshape(-1, x.shape[-1])).view(x.shape)


class SiameseHead(nn.Module):
    """The head of a siamese task: each of the K embeddings ``(B, K, D)`` normalised with a shared
    :class:`EmbeddingNorm`, concatenated in input order, then :class:`MLPHead` to ``out_dim``."""

    def __init__(self, embedding_dim: int, n_inputs: int, hidden: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = EmbeddingNorm(embedding_dim)
        self.mlp = MLPHead(n_inputs * embedding_dim, hidden, out_dim, dropout)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(emb).flatten(1))


def classification_step(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Stats]:
    """Cross-entropy and the summed accuracy statistics of one classification batch."""
    loss = F.cross_entropy(logits, target)
    correct = (logits.argmax(1) == target).sum().item()
    return loss, {"correct": float(correct), "n": float(len(target))}


def targets(batch: dict, device: torch.device | str) -> torch.Tensor:
    return torch.as_tensor(batch["target"], dtype=torch.long, device=device)


def angle_class(dy: float, dx: float, static_threshold: float, sectors: int = 8) -> int:
    """0 when the displacement is shorter than ``static_threshold``, else 1 + its direction sector.

    Sector ``s`` is centred on the angle ``2 pi s / sectors`` measured with ``atan2(dy, dx)``
    (image axes: +x right, +y down), so 1 = right, 3 = down, 5 = left, 7 = up for 8 sectors.
    """
    if math.hypot(dy, dx) < static_threshold:
        return 0
    angle = math.atan2(dy, dx)
    return 1 + int(round(angle / (2 * math.pi / sectors))) % sectors


class ConvFusion(nn.Module):
    """Early fusion of K frames' conv4 maps: ``(B, K, C, h, w)`` -> ``(B, hidden)``.

    Each map is batch-normalised (shared statistics), the K maps are stacked on channels and go
    through two 3x3 convs and a global average pool. Fusing before pooling keeps the spatial
    layout that a globally pooled embedding loses, so displacements between frames stay visible
    (the "top CNN" of Agrawal et al., OPN's pairwise concatenation of convolutional features).
    """

    def __init__(self, conv4_channels: int, n_maps: int, hidden: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(conv4_channels)
        self.net = nn.Sequential(
            nn.Conv2d(n_maps * conv4_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        b, k, c, h, w = maps.shape
        x = self.norm(maps.reshape(b * k, c, h, w)).reshape(b, k * c, h, w)
        return self.net(x)


def conv4_maps(backbone: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """The backbone's conv4 activations of images ``(B*k, 3, H, W)`` as ``(B, k, C, h, w)``."""
    c4 = backbone.forward_features(x).conv4
    return c4.view(-1, k, *c4.shape[1:])



def fusion_head(fusion: str, embedding_dim: int, conv4_channels: int, n_frames: int, hidden: int,
                n_out: int, dropout: float) -> nn.Module:
    """The head of the tasks that classify a few frames jointly (motion, shuffle, pose):
    ``fusion="embedding"`` concatenates the frames' pooled embeddings (``SiameseHead``),
    otherwise their conv4 maps are fused before pooling (``ConvFusion``), keeping positions."""
    if fusion == "embedding":
        return SiameseHead(embedding_dim, n_frames, hidden, n_out, dropout)
    return nn.Sequential(ConvFusion(conv4_channels, n_frames, hidden), nn.Linear(hidden, n_out))


def frame_features(backbone: nn.Module, frames: np.ndarray, fusion: str, input_size: int,
                   device: torch.device | str) -> torch.Tensor:
    """What a fusion head reads for ``frames`` (B, n, H, W, 3): embeddings (B, n, D) for
    ``fusion="embedding"``, conv4 maps (B, n, C, h, w) otherwise."""
    b, n = frames.shape[:2]
    x = to_input(frames, input_size, device)
    return embed(backbone, x).view(b, n, -1) if fusion == "embedding" else conv4_maps(backbone, x, n)
