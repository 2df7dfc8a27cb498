"""Seeding and device helpers shared by every training command."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from (after the deterministic mode's switches, when on)."""
    from harness import determinism

    determinism.apply()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def set_cpu_threads() -> None:
    """Respect OMP_NUM_THREADS when set; torch otherwise takes every core."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        torch.set_num_threads(int(n))
