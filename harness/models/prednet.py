"""PredNet (Lotter, Kreiman & Cox, ICLR 2017): the frame-prediction teacher T_P.

Every layer l has a representation R_l (a ConvLSTM without peepholes), a prediction
Â_l = ReLU(Conv(R_l)) (layer 0 clipped at the pixel maximum, SatLU), a target A_l (the frame
at l = 0, A_{l+1} = MaxPool(ReLU(Conv(E_l)))) and an error E_l = [ReLU(A_l - Â_l);
ReLU(Â_l - A_l)]. Per time step the R are updated top-down from E_l(t-1), R_l(t-1) and the
upsampled R_{l+1}(t), then the A, Â, E bottom-up.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    ModelError,
    ModelOutput,
    register_model,
)


@dataclasses.dataclass(frozen=True)
class PredNetConfig:
    """Shape knobs of PredNet.

    stack: channels of A_l / Â_l per layer (stack[0] = 3, the pixels); r_stack: channels of
    R_l (Lotter et al. use the same sizes); kernels of the A, Â and R convolutions;
    clip_length: frames per clip (nt); pixel_max: the SatLU ceiling in pixel space [0, 1];
    gate_activation: "sigmoid" or "hard_sigmoid" (Keras's clip(0.2x + 0.5, 0, 1), what the
    authors' released code uses); conv4_relu: pass the top R through a ReLU before it is
    returned as ``conv4`` (off: R itself, in (-1, 1), is the paper's representation);
    embedding_norm: "batchnorm" (default) puts a BatchNorm1d between the pooled top R and the
    linear classifier, "none" feeds the pooled R straight in. Our adaptation: the pooled top R
    of a frame-prediction PredNet varies little between videos (tanh outputs averaged over
    positions), and a bare linear head on it stayed at chance through the tiny fine-tuning
    budget (docs/FINETUNE.md).
    """

    stack: tuple[int, ...] = (3, 48, 96, 192)     # channels of A_l / Â_l per layer (stack[0] = 3, the pixels)
    r_stack: tuple[int, ...] = (3, 48, 96, 192)   # channels of the ConvLSTM state R_l per layer
    a_kernel: int = 3                             # kernel of the conv from E_l to the next layer's target A_l+1
    ahat_kernel: int = 3                          # kernel of the conv from R_l to the prediction Â_l
    r_kernel: int = 3                             # kernel of the ConvLSTM that updates R_l
    clip_length: int = 10                         # frames per clip (nt)
    pixel_max: float = 1.0                        # SatLU ceiling of the pixel prediction Â_0 (pixels in [0, 1])
    gate_activation: str = "sigmoid"              # ConvLSTM gates: "sigmoid" | "hard_sigmoid" (Keras's)
    conv4_relu: bool = False                      # ReLU on the top R before returning it as conv4
    embedding_norm: str = "batchnorm"             # "batchnorm" | "none" between the pooled top R and the head


class PredNetOutput(NamedTuple):
    """What ``PredNet.predict`` returns.

    errors: (B, T, L) mean of E_l over its channels and positions, per layer and time;
    predictions: (B, T, 3, H, W) Â_0 per time step, in pixel space [0, pixel_max] (the
    prediction of frame t made from frames < t); r_states: R_l at the last time step, one
    (B, r_stack[l], H / 2^l, W / 2^l) tensor per layer.
    """

    errors: torch.Tensor
    predictions: torch.Tensor
    r_states: tuple[torch.Tensor, ...]


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


class ConvLSTMCell(nn.Module):
    """ConvLSTM without peephole connections: one convolution over [input; h] gives the
    i, f, o, g gates; c' = f c + i g, h' = o tanh(c'). Parameters:
    4 * (in + hidden) * hidden * k * k + 4 * hidden."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, gate_activation: str = "sigmoid"):
        super().__init__()
        if gate_activation not in ("sigmoid", "hard_sigmoid"):
            raise ValueError(f"gate_activation must be 'sigmoid' or 'hard_sigmoid', got {gate_activation!r}")
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        self._gate = torch.sigmoid if gate_activation == "sigmoid" else _hard_sigmoid

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = torch.chunk(self.conv(torch.cat([x, h], dim=1)), 4, dim=1)
        c = self._gate(f) * c + self._gate(i) * torch.tanh(g)
        h = self._gate(o) * torch.tanh(c)
        return h, c


def prednet_loss(
    errors: torch.Tensor,
    layer_weights: Sequence[float] = (1.0, 0.0, 0.0, 0.0),
    time_weights: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """PredNet's training loss from ``errors`` (B, T, L).

    sum over t and l of time_weights[t] * layer_weights[l] * errors[b, t, l], averaged over
    the batch. Default time weights are Lotter et al.'s: 0 at t = 0 (the first prediction
    has no past to use) and 1 / (T - 1) for t >= 1. The default layer weights (1, 0, 0, 0)
    are their L_0 setting.
    """
    if errors.dim() != 3:
        raise ValueError(f"prednet_loss: errors must be (B, T, L), got shape {tuple(errors.shape)}")
    _, t, n_layers = errors.shape
    lw = torch.as_tensor(layer_weights, dtype=errors.dtype, device=errors.device)
    if lw.shape != (n_layers,):
        raise ValueError(f"prednet_loss: {len(lw)} layer weights for {n_layers} layers")
    if time_weights is None:
        if t < 2:
            raise ValueError("prednet_loss: default time weights need T >= 2 frames")
        tw = torch.full((t,), 1.0 / (t - 1), dtype=errors.dtype, device=errors.device)
        tw[0] = 0.0
    else:
        tw = torch.as_tensor(time_weights, dtype=errors.dtype, device=errors.device)
        if tw.shape != (t,):
            raise ValueError(f"prednet_loss: {len(tw)} time weights for {t} time steps")
    return torch.einsum("btl,t,l->b", errors, tw, lw).mean()


@register_model("prednet")
class PredNet(Backbone):
    """PredNet with a classification head.

    Input: clips (B, T, 3, H, W) normalised with ImageNet mean/std, H and W divisible by
    2^(L-1); they are mapped back to pixel space [0, 1] inside (A_0 is the frame, and the
    SatLU ceiling is a pixel value). ``conv4`` = the top layer's R at the last time step
    (our reading: PredNet has no conv4; the paper uses "the output of R in top layer as
    representation"); embedding = its global average pool; logits = Linear(embedding).
    """

    def __init__(self, config: PredNetConfig = PredNetConfig(), num_classes: int = 1000, input_size: int = 224):
        super().__init__()
        if len(config.stack) != len(config.r_stack) or len(config.stack) < 1:
            raise ValueError(f"prednet: stack {config.stack} and r_stack {config.r_stack} must have the same length >= 1")
        if config.stack[0] != 3:
            raise ValueError(f"prednet: stack[0] must be 3 (RGB pixels), got {config.stack[0]}")
        self.config = config
        self.input_size = input_size
        self.num_classes = num_classes
        self.num_layers = n = len(config.stack)
        a, r = config.stack, config.r_stack
        self.cells = nn.ModuleList(
            ConvLSTMCell(2 * a[l] + (r[l + 1] if l < n - 1 else 0), r[l], config.r_kernel, config.gate_activation)
            for l in range(n)
        )
        self.ahat_convs = nn.ModuleList(
            nn.Conv2d(r[l], a[l], config.ahat_kernel, padding=config.ahat_kernel // 2) for l in range(n)
        )
        self.a_convs = nn.ModuleList(
            nn.Conv2d(2 * a[l], a[l + 1], config.a_kernel, padding=config.a_kernel // 2) for l in range(n - 1)
        )
        if config.embedding_norm not in ("batchnorm", "none"):
            raise ValueError(f"prednet: embedding_norm must be 'batchnorm' or 'none', got {config.embedding_norm!r}")
        self.embedding_norm = nn.BatchNorm1d(r[-1]) if config.embedding_norm == "batchnorm" else nn.Identity()
        self.classifier = nn.Linear(r[-1], num_classes)
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)
        self.conv4_channels = r[-1]
        self.embedding_dim = r[-1]
        self.clip_length = config.clip_length
        self._init_weights()

    def _init_weights(self) -> None:
        # Keras defaults, as in the authors' released code: Glorot-uniform weights, zero
        # biases. Zero biases matter: with PyTorch's default uniform biases a small Â layer
        # can start with every ReLU unit dead and then never receive a gradient.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # Forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015): the cell starts out
        # keeping its state, so the last frame held in R survives to the next prediction.
        # On the tiny preset this is what lets frame prediction approach copy-last within a
        # minute of training (docs/PRETEXT.md).
        with torch.no_grad():
            for cell in self.cells:
                cell.conv.bias[cell.hidden:2 * cell.hidden] = 1.0

    def _check_clip(self, clip: torch.Tensor) -> None:
        if clip.dim() != 5 or clip.shape[2] != 3:
            raise ModelError(f"prednet: expected a clip batch (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        f = 2 ** (self.num_layers - 1)
        if clip.shape[3] % f or clip.shape[4] % f:
            raise ModelError(
                f"prednet: frame size {tuple(clip.shape[3:])} must be divisible by {f} for {self.num_layers} layers"
            )

    def predict(self, clip: torch.Tensor) -> PredNetOutput:
        """Run the recurrence over the clip; see ``PredNetOutput``."""
        self._check_clip(clip)
        frames = clip * self._std + self._mean  # back to pixel space [0, 1]
        b, t, _, hgt, wid = frames.shape
        n, a, r = self.num_layers, self.config.stack, self.config.r_stack
        sizes = [(hgt >> l, wid >> l) for l in range(n)]
        zeros = lambda c, l: frames.new_zeros(b, c, *sizes[l])  # noqa: E731
        hs = [zeros(r[l], l) for l in range(n)]
        cs = [zeros(r[l], l) for l in range(n)]
        es = [zeros(2 * a[l], l) for l in range(n)]
        errors, predictions = [], []
        for step in range(t):
            # top-down: R_l(t) from E_l(t-1), R_l(t-1) and Upsample(R_{l+1}(t))
            new_h: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
            for l in reversed(range(n)):
                x = es[l]
                if l < n - 1:
                    x = torch.cat([x, F.interpolate(new_h[l + 1], scale_factor=2, mode="nearest")], dim=1)
                new_h[l], cs[l] = self.cells[l](x, (hs[l], cs[l]))
            hs = new_h
            # bottom-up: Â_l, E_l, A_{l+1}
            target = frames[:, step]
            step_errors = []
            for l in range(n):
                ahat = F.relu(self.ahat_convs[l](hs[l]))
                if l == 0:
                    ahat = torch.clamp(ahat, max=self.config.pixel_max)  # SatLU
                    predictions.append(ahat)
                es[l] = torch.cat([F.relu(target - ahat), F.relu(ahat - target)], dim=1)
                step_errors.append(es[l].mean(dim=(1, 2, 3)))
                if l < n - 1:
                    target = F.max_pool2d(F.relu(self.a_convs[l](es[l])), 2, 2)
            errors.append(torch.stack(step_errors, dim=1))
        return PredNetOutput(torch.stack(errors, dim=1), torch.stack(predictions, dim=1), tuple(hs))

    def forward_features(self, clip: torch.Tensor) -> ModelOutput:
        conv4 = self.predict(clip).r_states[-1]
        if self.config.conv4_relu:
            conv4 = F.relu(conv4)
        embedding = conv4.mean(dim=(2, 3))
        return ModelOutput(self.classifier(self.embedding_norm(embedding)), conv4, embedding)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the linear head by a freshly initialised one."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.embedding_dim, num_classes).to(self.ahat_convs[0].weight.device)

    def conv4_shape(self, input_size: int | None = None) -> tuple[int, int, int]:
        s = self.input_size if input_size is None else input_size
        return (self.conv4_channels, s >> (self.num_layers - 1), s >> (self.num_layers - 1))
