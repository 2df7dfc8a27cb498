"""The student: AlexNet with torchvision's ``alexnet`` module layout and state_dict keys."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from harness.models.common import Backbone, ModelError, ModelOutput, conv_out, register_model, scaled


@dataclasses.dataclass(frozen=True)
class AlexNetConfig:
    """Shape knobs of the student.

    width scales every conv's channels (64, 192, 384, 256, 256); hidden is the number of
    units of fc6/fc7 (4096 in torchvision); conv1_stride/conv1_padding let small inputs keep
    a usable conv4 map (the representation graph takes a softmax over conv4 positions);
    pool_size is the side of the adaptive average pool before the classifier (6 in
    torchvision).
    """

    width: float = 1.0          # multiplier of every conv's channels (64, 192, 384, 256, 256)
    hidden: int = 4096          # units of fc6 and fc7 (the embedding size)
    conv1_stride: int = 4       # stride of the 11x11 conv1
    conv1_padding: int = 2      # zero padding of conv1
    pool_size: int = 6          # side of the adaptive average pool before the classifier
    dropout: float = 0.5        # dropout probability before fc6 and fc7
    # Off in the paper preset (torchvision's keys); on in tiny: from scratch without it the
    # student stays on the ln(C) loss plateau for the whole CPU budget (docs/MODELS.md).
    batch_norm: bool = False    # BatchNorm after every conv (feature indices shift as in *_bn)


@register_model("alexnet")
class AlexNet(Backbone):
    """AlexNet (Krizhevsky et al. 2012) laid out exactly as torchvision's ``alexnet``.

    features.0 Conv(3,64,11,s4,p2) ReLU MaxPool(3,2) | features.3 Conv(64,192,5,p2) ReLU
    MaxPool | features.6 Conv(192,384,3,p1) ReLU | features.8 Conv(384,256,3,p1) ReLU
    (= conv4, the distillation layer) | features.10 Conv(256,256,3,p1) ReLU MaxPool |
    avgpool | classifier.{0 Dropout, 1 Linear, 2 ReLU, 3 Dropout, 4 Linear, 5 ReLU,
    6 Linear}. The embedding is fc7 after its ReLU (classifier.5's output).
    """

    def __init__(self, config: AlexNetConfig = AlexNetConfig(), num_classes: int = 1000, input_size: int = 224):
        super().__init__()
        self.config = config
        self.input_size = input_size
        self.num_classes = num_classes
        c = [scaled(n, config.width) for n in (64, 192, 384, 256, 256)]
        # ReLUs are not in place: conv4's activation is returned to the caller and must
        # not be overwritten by later layers.
        def conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
            bn = [nn.BatchNorm2d(cout)] if config.batch_norm else []
            return [nn.Conv2d(cin, cout, k, stride=stride, padding=padding), *bn, nn.ReLU()]

        layers = [*conv(3, c[0], 11, config.conv1_stride, config.conv1_padding), nn.MaxPool2d(3, 2),
                  *conv(c[0], c[1], 5, padding=2), nn.MaxPool2d(3, 2),
                  *conv(c[1], c[2], 3, padding=1), *conv(c[2], c[3], 3, padding=1)]
        self._conv4_end = len(layers)        # features[:_conv4_end] ends with conv4's ReLU
        # Substage taps of forward_stages (conv1..conv4): features[:end] ends with the block's
        # ReLU ("relu") or with the max pool that follows it where there is one ("pool").
        relu_ends = [i + 1 for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]
        self._stage_ends = {
            "relu": tuple(relu_ends),
            "pool": tuple(e + 1 if e < len(layers) and isinstance(layers[e], nn.MaxPool2d) else e for e in relu_ends),
        }
        layers += [*conv(c[3], c[4], 3, padding=1), nn.MaxPool2d(3, 2)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((config.pool_size, config.pool_size))
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(c[4] * config.pool_size**2, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, num_classes),
        )
        self.conv4_channels = c[3]
        self.stage_channels = tuple(c[:4])   # conv1..conv4, the substages of forward_stages
        self.embedding_dim = config.hidden
        self.clip_length = 1

    def forward_features(self, x: torch.Tensor) -> ModelOutput:
        self._check_image_input(x)
        return self._head(self.features[:self._conv4_end](x))

    def forward_stages(self, x: torch.Tensor, point: str = "relu") -> tuple[ModelOutput, list[torch.Tensor]]:
        """``forward_features(x)`` plus the output of each conv block up to conv4 (4 maps).

        ``point="relu"``: each block's activation after its ReLU, before the max pool that
        follows conv1 and conv2 (the same point conv4 is taken at); ``point="pool"``: after
        that pool. conv3 and conv4 have no pool, so both points agree there and the last map
        is always ``conv4``. Same layers in the same order as ``forward_features``, so its
        logits and conv4 are identical.
        """
        self._check_image_input(x)
        if point not in self._stage_ends:
            raise ModelError(f"alexnet: stage point must be one of {', '.join(self._stage_ends)}, got {point!r}")
        ends = self._stage_ends[point]
        stages, h, start = [], x, 0
        for end in ends:
            h = self.features[start:end](h)
            stages.append(h)
            start = end
        return self._head(self.features[start:self._conv4_end](h)), stages

    def _head(self, conv4: torch.Tensor) -> ModelOutput:
        """conv5, pool, classifier from the conv4 activation."""
        h = self.avgpool(self.features[self._conv4_end:](conv4))
        embedding = self.classifier[:6](torch.flatten(h, 1))
        return ModelOutput(self.classifier[6](embedding), conv4, embedding)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last Linear (classifier.6) by a freshly initialised one."""
        self.num_classes = num_classes
        self.classifier[6] = nn.Linear(self.embedding_dim, num_classes).to(self.classifier[4].weight.device)

    def conv4_shape(self, input_size: int | None = None) -> tuple[int, int, int]:
        s = self.input_size if input_size is None else input_size
        s = conv_out(s, 11, self.config.conv1_stride, self.config.conv1_padding)
        s = conv_out(conv_out(s, 3, 2), 3, 2)  # pool1; conv2 keeps the size; pool2
        return (self.conv4_channels, s, s)
