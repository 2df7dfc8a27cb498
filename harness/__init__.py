"""harness: benchmark and reproduction harness for multi-teacher knowledge distillation
in video classification (Zhang & Peng, IJCAI 2018, and the baselines beside it)."""

__version__ = "0.1.0"
