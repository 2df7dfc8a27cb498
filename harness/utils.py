"""Seeding and device helpers shared by every training command."""

from __future__ import annotations

import os
import random
from typing import Literal, get_args

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from (after the process-wide settings: the deterministic
    mode's switches when on, and ``keep_freed_memory``)."""
    from harness import determinism
    from harness.allocator import keep_freed_memory

    determinism.apply()
    keep_freed_memory()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


AdamKernel = Literal["foreach", "fused"]   # a config field typed with it lists the choices
ADAM_KERNELS = get_args(AdamKernel)


def adam(params, kernel: str = "foreach", **kwargs) -> torch.optim.Adam:
    """torch's Adam on its multi-tensor (``foreach``) path, or its fused kernel.

    ``foreach`` (every preset but ``paper``): on CPU torch defaults to a Python loop over the
    parameters; the foreach path applies the same elementwise operations in the same order, so
    the weights it gives are bit-identical (tested against the loop). At the paper's AlexNet (57 M
    parameters, 2 cores) it took half the loop's time with glibc's default allocator (211 against
    438 ms a step) and about the same with ``harness.allocator.keep_freed_memory`` in effect (133
    against 150 ms).

    ``fused`` (the ``paper`` preset's distillation): one pass over each parameter's memory
    instead of one per elementwise operation, about a quarter of foreach's time over the paper
    AlexNet on CPU (30 against 108 ms on 2 cores) and torch's fast path on CUDA. It rounds
    differently (the last bit of about 1% of the weights after one step, 2% after six), so a preset whose
    committed numbers came from foreach keeps foreach. The deterministic mode always takes
    foreach: its bits are what the mode's portable square root was checked on.
    """
    if kernel not in ADAM_KERNELS:
        raise ValueError(f"Adam kernel {kernel!r} is not one of {', '.join(ADAM_KERNELS)}")
    from harness import determinism

    if kernel == "fused" and not determinism.requested():
        try:
            return torch.optim.Adam(params, fused=True, **kwargs)
        except RuntimeError as exc:   # e.g. torch < 2.4 has no fused CPU kernel
            from harness.errors import HarnessError

            raise HarnessError(f"optimizer_kernel=fused: torch {torch.__version__} refused it ({str(exc).splitlines()[0]}); "
                               f"use --set optimizer_kernel=foreach") from None
    return torch.optim.Adam(params, foreach=True, **kwargs)


def sgd(params, **kwargs) -> torch.optim.SGD:
    """torch's SGD on its multi-tensor path (bit-identical to its per-parameter loop, as ``adam``)."""
    return torch.optim.SGD(params, foreach=True, **kwargs)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def set_cpu_threads() -> None:
    """Respect OMP_NUM_THREADS when set; torch otherwise takes every core."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        torch.set_num_threads(int(n))
