"""harness: benchmark and reproduction harness for multi-teacher knowledge distillation
in video classification (Zhang & Peng, IJCAI 2018, and the baselines beside it)."""

__version__ = "0.1.0"

from harness import determinism as _determinism

# the deterministic mode's kernel choices are read when torch loads: set them before any torch import
_determinism.prepare_environment()
