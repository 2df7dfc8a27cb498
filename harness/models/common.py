"""Shared pieces of the backbones: the output tuple, the base class, the arch registry and
loading of (torchvision-compatible) checkpoints by matching keys and shapes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import nn

from harness.data.transforms import MEAN, STD
from harness.errors import HarnessError

# The ImageNet statistics harness.data.transforms.to_tensor normalises with (defined there,
# in one place); PredNet needs them to go back to pixel space for its layer 0.
IMAGENET_MEAN: tuple[float, float, float] = tuple(MEAN)  # type: ignore[assignment]
IMAGENET_STD: tuple[float, float, float] = tuple(STD)  # type: ignore[assignment]


class ModelError(HarnessError):
    """A bad arch name, input shape or checkpoint file (one-line message)."""


class ModelOutput(NamedTuple):
    """What ``forward_features`` returns.

    logits: (B, num_classes); conv4: the distillation layer's activation (B, C4, h, w) after
    ReLU (PredNet: its top R, see docs/MODELS.md); embedding: the penultimate vector (B, D) that pretext heads build on.
    """

    logits: torch.Tensor
    conv4: torch.Tensor
    embedding: torch.Tensor


class Backbone(nn.Module):
    """Base class of every backbone: ``forward(x)`` is ``forward_features(x).logits``.

    Subclasses set ``arch``, ``config``, ``input_size``, ``embedding_dim``, ``conv4_channels``,
    ``clip_length`` and implement ``forward_features``, ``reset_classifier`` and
    ``conv4_shape``.
    """

    arch: str = ""
    embedding_dim: int
    conv4_channels: int
    clip_length: int = 1
    input_size: int
    num_classes: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits

    def forward_features(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def conv4_shape(self, input_size: int | None = None) -> tuple[int, int, int]:  # pragma: no cover
        """(C4, h, w) of ``conv4`` for a square input of side ``input_size`` (default: the
        preset's), by shape arithmetic (no forward pass)."""
        raise NotImplementedError

    def _check_image_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ModelError(
                f"{self.arch}: expected a float image batch (B, 3, H, W), got shape {tuple(x.shape)}"
            )


# name -> backbone class; each class registers itself with @register_model, and its
# constructor takes (config_dataclass, num_classes, input_size).
MODEL_REGISTRY: dict[str, type[Backbone]] = {}


def register_model(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    """Class decorator that adds a backbone to ``MODEL_REGISTRY`` under ``name``."""

    def deco(cls: type[Backbone]) -> type[Backbone]:
        if name in MODEL_REGISTRY and MODEL_REGISTRY[name] is not cls:
            raise ValueError(f"model arch {name!r} registered twice")
        cls.arch = name
        MODEL_REGISTRY[name] = cls
        return cls

    return deco


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a conv/pool layer (floor mode), the arithmetic of nn.Conv2d."""
    return (size + 2 * padding - kernel) // stride + 1


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (the width multiplier of small presets)."""
    return max(1, int(round(channels * width)))


def _read_checkpoint(path: str | os.PathLike) -> Mapping[str, Any]:
    from harness.checkpoints import load_checkpoint

    p = Path(path)
    obj = load_checkpoint(p, ModelError, "torch checkpoint", weights_only=True)
    if not isinstance(obj, Mapping):
        raise ModelError(f"{p}: expected a state_dict (a mapping of tensors), got {type(obj).__name__}")
    return obj


def load_matching_state_dict(
    model: nn.Module, state_dict: Mapping[str, Any] | str | os.PathLike
) -> tuple[list[str], list[tuple[str, str]]]:
    """Copy into ``model`` every tensor of ``state_dict`` whose key and shape match.

    ``state_dict`` is a mapping or the path of a ``.pth`` file (e.g. torchvision's
    ``alexnet``/``vgg19`` ImageNet weights saved locally). A checkpoint that wraps its
    weights in ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped, and a
    ``module.`` prefix (DataParallel) is stripped. A layer is loaded whole or not at all: a
    bias whose weight has a different shape is skipped too. Returns ``(loaded_keys,
    skipped)``, ``skipped`` being ``(key, reason)`` for every checkpoint key not loaded and
    every model key the checkpoint lacks. A checkpoint *file* that matches nothing raises
    ``ModelError`` (it is surely the wrong file).
    """
    is_path = isinstance(state_dict, (str, os.PathLike))
    sd = _read_checkpoint(state_dict) if is_path else state_dict
    for wrapper in ("state_dict", "model"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
            break
    own = model.state_dict()
    skipped: list[tuple[str, str]] = []
    fitting: dict[str, tuple[str, torch.Tensor]] = {}
    misfit: dict[str, str] = {}  # layer prefix -> a key of it whose shape did not match
    misfit_keys: set[str] = set()
    for raw_key, value in sd.items():
        key = raw_key[len("module.") :] if raw_key.startswith("module.") else raw_key
        if not isinstance(value, torch.Tensor):
            skipped.append((raw_key, f"not a tensor ({type(value).__name__})"))
        elif key not in own:
            skipped.append((raw_key, "not in model"))
        elif tuple(value.shape) != tuple(own[key].shape):
            skipped.append((raw_key, f"shape {tuple(value.shape)} in checkpoint != {tuple(own[key].shape)} in model"))
            misfit.setdefault(key.rpartition(".")[0], key)
            misfit_keys.add(key)
        else:
            fitting[key] = (raw_key, value)
    loaded: list[str] = []
    for key, (raw_key, value) in fitting.items():
        layer = key.rpartition(".")[0]
        if layer in misfit:
            skipped.append((raw_key, f"shape matches but {misfit[layer]} of the same layer does not"))
        else:
            loaded.append(key)
    present = set(fitting) | misfit_keys
    skipped += [(key, "missing from checkpoint (kept model's value)") for key in own if key not in present]
    if is_path and not loaded:
        raise ModelError(f"{state_dict}: no tensor matches the model's keys and shapes")
    with torch.no_grad():
        for key in loaded:
            own[key].copy_(fitting[key][1].to(dtype=own[key].dtype))
    return loaded, skipped


def model_cost(model: Backbone, input_size: int | None = None) -> dict[str, Any]:
    """Parameters, conv4 shape and forward MFLOPs per frame of ``model`` at a square input.

    FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of
    convolutions and matrix products; element-wise ops, pooling and activations are not
    counted) on a copy of the model on the meta device, so nothing is computed. PredNet's
    count for one clip is divided by its clip length.
    """
    from torch.utils.flop_counter import FlopCounterMode

    size = model.input_size if input_size is None else input_size
    shape = (1, model.clip_length, 3, size, size) if model.arch == "prednet" else (1, 3, size, size)
    with torch.device("meta"):
        meta = type(model)(model.config, model.num_classes, size).eval()
    with FlopCounterMode(display=False) as counter:
        out = meta.forward_features(torch.zeros(shape, device="meta"))
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "conv4": tuple(out.conv4.shape[1:]),
        "embedding_dim": out.embedding.shape[1],
        "mflops_per_frame": counter.get_total_flops() / model.clip_length / 1e6,
    }
