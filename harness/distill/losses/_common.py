"""Shared input checks for the distillation losses (one-line user-facing errors)."""

from __future__ import annotations

from typing import Sequence

import torch

from harness.errors import HarnessError


class LossInputError(HarnessError):
    """A loss or graph received a tensor of the wrong shape or an invalid option.

    The message names the module/function (``harness/distill/...``) and the problem.
    """


def check_shape(where: str, name: str, x: torch.Tensor, ndim: int) -> None:
    """Raise ``LossInputError`` unless ``x`` is a tensor with ``ndim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise LossInputError(f"{where}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim:
        raise LossInputError(
            f"{where}: {name} must have {ndim} dimensions, got shape {tuple(x.shape)}"
        )


def check_same_shape(where: str, names: Sequence[str], *xs: torch.Tensor) -> None:
    """Raise ``LossInputError`` unless every tensor in ``xs`` has the same shape."""
    shapes = [tuple(x.shape) for x in xs]
    if any(s != shapes[0] for s in shapes):
        desc = ", ".join(f"{n}={s}" for n, s in zip(names, shapes))
        raise LossInputError(f"{where}: shapes must match, got {desc}")


def check_choice(where: str, name: str, value: str, choices: Sequence[str]) -> None:
    """Raise ``LossInputError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise LossInputError(
            f"{where}: {name}={value!r} is not one of {', '.join(repr(c) for c in choices)}"
        )


def check_positive(where: str, name: str, value: float) -> None:
    """Raise ``LossInputError`` unless ``value`` is a finite positive number."""
    v = float(value)
    if not (v > 0.0 and v < float("inf")):
        raise LossInputError(f"{where}: {name} must be a finite positive number, got {value!r}")
