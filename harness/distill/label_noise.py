"""Seeded corruption of the student's training labels (the weak-supervision setting).

With probability ``p`` a training video's label is replaced by one of the other classes,
uniformly (symmetric noise). The draw is a function of ``(seed, video id)`` alone, so every
item and view of a video carries the same noisy label, every epoch and every resumed run sees
the same corruption, and two methods trained with the same seed see the same noisy labels (the
comparison between them stays paired). Test labels are never touched: evaluation reads the
store's labels directly.

What is not corrupted: the teachers were fine-tuned, and the store written, with the clean
labels (so G_l's ground cost, built from the teachers' class prototypes, is clean too). The
setting is "noisy labels for the student, teachers fixed" (docs/DISTILL.md).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.errors import HarnessError

# separates this stream of random numbers from every other use of the run's seed
_STREAM = 0x1ABE1


def check_noise(p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise HarnessError(f"--label-noise must be in [0, 1), got {p}")
    return p


def noisy_labels(labels: np.ndarray, videos: np.ndarray, p: float, seed: int, num_classes: int) -> np.ndarray:
    """The labels of ``videos`` (true ``labels``) after symmetric noise of rate ``p``."""
    labels = np.asarray(labels, dtype=np.int64)
    out = labels.copy()
    if p <= 0.0:
        return out
    for video in np.unique(videos):
        rng = np.random.default_rng([_STREAM, int(seed), int(video)])
        flip, shift = rng.random() < p, int(rng.integers(1, num_classes))
        if flip:   # (y + shift) mod C with shift in 1..C-1: uniform over the other classes
            rows = videos == video
            out[rows] = (labels[rows] + shift) % num_classes
    return out


class LabelNoise:
    """Applies :func:`noisy_labels` to training batches and counts what it changed."""

    def __init__(self, p: float, seed: int, num_classes: int, multilabel: bool, source: str):
        if multilabel and p > 0:
            raise HarnessError(f"{source}: --label-noise is defined for single-label datasets; this store is "
                               "multi-label")
        self.p, self.seed, self.num_classes = check_noise(p), int(seed), int(num_classes)

    def __call__(self, batch: dict) -> tuple[torch.Tensor, int]:
        """``(labels to train on, how many of them differ from the true ones)``."""
        label = batch["label"]
        if self.p <= 0.0:
            return label, 0
        true = label.cpu().numpy()
        noisy = noisy_labels(true, batch["video"].cpu().numpy(), self.p, self.seed, self.num_classes)
        return torch.from_numpy(noisy).to(label.device, label.dtype), int((noisy != true).sum())
