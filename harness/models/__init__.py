"""Backbones: the AlexNet student, the VGG-19 teacher and PredNet, their presets and the
``build_model`` factory. Shapes and costs per preset are in docs/MODELS.md."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from harness.config import resolve
from harness.models.alexnet import AlexNet, AlexNetConfig
from harness.models.common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_REGISTRY,
    Backbone,
    ModelError,
    ModelOutput,
    load_matching_state_dict,
    model_cost,
    register_model,
)
from harness.models.prednet import ConvLSTMCell, PredNet, PredNetConfig, PredNetOutput, prednet_loss
from harness.models.vgg import VGGConfig, VGGTeacher


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """One preset of every backbone: the input side plus one config per registered arch
    (the field name is the arch name)."""

    input_size: int                 # side (pixels) of the square images the backbones take
    alexnet: AlexNetConfig
    vgg19_teacher: VGGConfig
    prednet: PredNetConfig


MODEL_PRESETS: dict[str, ModelPreset] = {
    # seconds on a CPU; for tests. conv4: AlexNet 3x3, VGG 4x4, PredNet 4x4.
    "smoke": ModelPreset(
        input_size=32,
        alexnet=AlexNetConfig(width=0.125, hidden=64, conv1_stride=2, conv1_padding=5, pool_size=1),
        vgg19_teacher=VGGConfig(width=0.0625, conv1_kernel=5, hidden=64, pool_size=1),
        prednet=PredNetConfig(stack=(3, 4, 8, 16), r_stack=(3, 4, 8, 16), clip_length=4),
    ),
    # the default: minutes on a laptop CPU. conv4: AlexNet 7x7, VGG 8x8, PredNet 8x8.
    "tiny": ModelPreset(
        input_size=64,
        alexnet=AlexNetConfig(width=0.25, hidden=512, conv1_stride=2, conv1_padding=5, pool_size=1,
                              batch_norm=True),
        vgg19_teacher=VGGConfig(width=0.125, conv1_kernel=7, hidden=256, pool_size=1, batch_norm=True),
        prednet=PredNetConfig(stack=(3, 8, 16, 32), r_stack=(3, 8, 16, 32), clip_length=6),
    ),
    # the paper's shapes: torchvision AlexNet, VGG-19 modified per Sec. 4.1, Lotter's PredNet.
    "paper": ModelPreset(
        input_size=224,
        alexnet=AlexNetConfig(),
        vgg19_teacher=VGGConfig(),
        prednet=PredNetConfig(),
    ),
}


def build_model(arch: str, num_classes: int, preset: str = "tiny", **overrides: Any) -> Backbone:
    """Build backbone ``arch`` ("alexnet", "vgg19_teacher", "prednet") for ``num_classes``.

    ``overrides`` are fields of that arch's config (e.g. ``width=0.5``, ``conv4_channels=512``)
    or ``input_size``; string values (from ``--set``) are converted to the field's type.
    """
    if arch not in MODEL_REGISTRY:
        raise ModelError(f"unknown model arch {arch!r}; choose one of {', '.join(sorted(MODEL_REGISTRY))}")
    top = {k: v for k, v in overrides.items() if k == "input_size"}
    rest = {k: v for k, v in overrides.items() if k != "input_size"}
    cfg = resolve(MODEL_PRESETS, preset, top)
    arch_cfg = resolve({preset: getattr(cfg, arch)}, preset, rest)
    return MODEL_REGISTRY[arch](arch_cfg, num_classes, cfg.input_size)


def preset_table(num_classes: int = 101) -> str:
    """The Markdown table of docs/MODELS.md: conv4 shape, parameters and MFLOPs per frame of
    every arch at every preset (``python -c "from harness.models import preset_table;
    print(preset_table())"``)."""
    lines = [
        "| preset | arch | input | conv4 (C, h, w) | embedding | params | MFLOPs / frame |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset, cfg in MODEL_PRESETS.items():
        for arch in sorted(MODEL_REGISTRY):
            with torch.device("meta"):
                model = build_model(arch, num_classes, preset)
            c = model_cost(model)
            lines.append(
                f"| {preset} | {arch} | {cfg.input_size} | {c['conv4']} | {c['embedding_dim']} "
                f"| {c['params'] / 1e6:.3f} M | {c['mflops_per_frame']:.1f} |"
            )
    return "\n".join(lines)


__all__ = [
    "AlexNet",
    "AlexNetConfig",
    "Backbone",
    "ConvLSTMCell",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_PRESETS",
    "MODEL_REGISTRY",
    "ModelError",
    "ModelOutput",
    "ModelPreset",
    "PredNet",
    "PredNetConfig",
    "PredNetOutput",
    "VGGConfig",
    "VGGTeacher",
    "build_model",
    "load_matching_state_dict",
    "model_cost",
    "preset_table",
    "prednet_loss",
    "register_model",
]
