"""The VGG-19 teacher of the paper: torchvision ``vgg19`` layout with conv1 96 ch 11x11 and
block 2 128 ch (Zhang & Peng 2018, Sec. 4.1), conv4 = last conv of block 4."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from harness.models.common import Backbone, ModelOutput, conv_out, register_model, scaled


@dataclasses.dataclass(frozen=True)
class VGGConfig:
    """Shape knobs of the teacher.

    Block widths at width 1: 96 (conv1 is 11x11, padding 5), 128, 256, ``conv4_channels``,
    512 with 2, 2, 4, 4, 4 convs; ``width`` scales all of them. ``conv4_channels=256`` is
    the paper's distillation layer (docs/METHOD.md: conv4 has 256 channels); 512 gives
    torchvision's block 4. ``conv1_kernel`` is 11 in the paper; small presets shrink it
    with the image. ``pool_size`` is the adaptive average pool before the classifier (7 in
    torchvision, 1 = global average pool for small inputs); ``hidden`` the fc6/fc7 units.
    """

    width: float = 1.0          # multiplier of every block's channels (96, 128, 256, conv4_channels, 512)
    conv4_channels: int = 256   # channels of block 4 (conv4, the distillation layer) at width 1
    conv1_kernel: int = 11      # side of the first conv's kernel (odd; padded to keep the size)
    hidden: int = 4096          # units of fc6 and fc7 (the embedding size)
    pool_size: int = 7          # side of the adaptive average pool before the classifier
    dropout: float = 0.5        # dropout probability after fc6 and fc7
    # Off in the paper preset; on in tiny, where the plain VGG stays on the ln(C) plateau (MODELS.md).
    batch_norm: bool = False    # BatchNorm after every conv, laid out as torchvision's vgg19_bn


BLOCK_DEPTHS = (2, 2, 4, 4, 4)


@register_model("vgg19_teacher")
class VGGTeacher(Backbone):
    """VGG-19 with the paper's modifications, torchvision ``vgg19`` keys where shapes match.

    ``features`` indices are torchvision's: convs at 0,2 | 5,7 | 10,12,14,16 | 19,21,23,25 |
    28,30,32,34, each followed by a ReLU, max-pools at 4, 9, 18, 27, 36. conv4 is the ReLU
    output of features.25 (before pool 27). ``classifier`` = {0 Linear, 1 ReLU, 2 Dropout,
    3 Linear, 4 ReLU, 5 Dropout, 6 Linear}; the embedding is fc7 after its ReLU.
    """

    def __init__(self, config: VGGConfig = VGGConfig(), num_classes: int = 1000, input_size: int = 224):
        super().__init__()
        if config.conv1_kernel % 2 != 1:
            raise ValueError(f"vgg19_teacher: conv1_kernel must be odd, got {config.conv1_kernel}")
        self.config = config
        self.input_size = input_size
        self.num_classes = num_classes
        widths = [scaled(n, config.width) for n in (96, 128, 256, config.conv4_channels, 512)]
        layers: list[nn.Module] = []
        in_ch = 3
        for block, (depth, out_ch) in enumerate(zip(BLOCK_DEPTHS, widths)):
            for i in range(depth):
                k = config.conv1_kernel if (block == 0 and i == 0) else 3
                bn = [nn.BatchNorm2d(out_ch)] if config.batch_norm else []
                layers += [nn.Conv2d(in_ch, out_ch, k, padding=k // 2), *bn, nn.ReLU()]
                in_ch = out_ch
            if block == 3:
                self._conv4_end = len(layers)   # features[:_conv4_end] ends with conv4's ReLU
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((config.pool_size, config.pool_size))
        self.classifier = nn.Sequential(
            nn.Linear(widths[4] * config.pool_size**2, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, num_classes),
        )
        self.conv4_channels = widths[3]
        self.embedding_dim = config.hidden
        self.clip_length = 1
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation (He init for convs), which trains from scratch.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> ModelOutput:
        self._check_image_input(x)
        conv4 = self.features[: self._conv4_end](x)
        h = self.avgpool(self.features[self._conv4_end :](conv4))
        embedding = self.classifier[:5](torch.flatten(h, 1))
        return ModelOutput(self.classifier[6](self.classifier[5](embedding)), conv4, embedding)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last Linear (classifier.6) by a freshly initialised one."""
        self.num_classes = num_classes
        layer = nn.Linear(self.embedding_dim, num_classes).to(self.classifier[3].weight.device)
        nn.init.normal_(layer.weight, 0, 0.01)
        nn.init.zeros_(layer.bias)
        self.classifier[6] = layer

    def conv4_shape(self, input_size: int | None = None) -> tuple[int, int, int]:
        s = self.input_size if input_size is None else input_size
        for _ in range(3):  # pools after blocks 1-3; convs keep the size ("same" padding)
            s = conv_out(s, 2, 2)
        return (self.conv4_channels, s, s)
