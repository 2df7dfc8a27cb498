"""Fine-tuning settings: the config dataclass, its presets, validation, data roots and chance levels."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.config import keyless_default, resolve
from harness.errors import HarnessError


INITS = ("random", "pretext", "supervised", "file")


class FinetuneError(HarnessError):
    """A fine-tuning run that cannot start (bad init/checkpoint, missing data); one line."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (``--set key=value`` overrides any field)."""

    epochs: int                               # passes over the training videos
    batch_size: int                           # items per training step (and per eval batch)
    lr: float                                 # initial learning rate (scaled by the schedule)
    optimizer: str = "sgd"                    # "sgd" (with momentum) | "adam"
    momentum: float = 0.9                     # SGD momentum (Adam: beta1 stays 0.9)
    weight_decay: float = 5e-4                # L2 weight decay of the optimizer
    schedule: str = "cosine"                  # "cosine" (to 0 over the epochs) | "step" | "constant"
    step_epochs: int = 10                     # "step": lr *= gamma every step_epochs epochs
    gamma: float = 0.1                        # "step": lr multiplier applied every step_epochs
    train_frames: int = 2                     # frames per training video and epoch (one per segment)
    test_frames: int = 5                      # evenly spaced frames per test video
    test_crops: int = 1                       # fixed test views per frame: 1 centre, 5 +corners, 10 +mirrors
    view_scale: tuple[float, float] = (0.5, 1.0)   # random crop area range of training views
    center_scale: float = 0.875               # side of the centre test crop / the short side
    clip_length: int = 0                      # frames per item; 0 = the model's (PredNet's clip, else 1)
    decode_size: int = 0                      # decode frames at decode_size^2; 0 = native size
    cache_decoded: bool = True                # keep decoded videos in memory (small sets only)
    num_workers: int = 0                      # DataLoader worker processes; 0 = load in the main process
    eval_every: int = 1                       # test metric every k epochs (always after the last)
    supervised_epochs: int = 0                # init "supervised": epochs of the disjoint-class stage
    supervised_holdout: float = 0.2           # share of disjoint videos held out to score that stage
    model_preset: str = ""                    # MODEL_PRESETS entry; "" = the run's preset
    device: str = "auto"                      # torch device; "auto" = cuda if available, else cpu
    resize: str = keyless_default("squash")   # to decode_size: "squash" (aspect lost) or "crop" (aspect kept, centre crop)
    short_videos: str = keyless_default("pad")  # videos with fewer frames than train/test_frames: "pad", "skip" or "refuse"
    skip_bad: bool = keyless_default(False)   # unreadable or truncated videos: left out and counted (--skip-bad), else an error


FINETUNE_PRESETS: dict[str, FinetuneConfig] = {
    # seconds on a CPU, for tests
    "smoke": FinetuneConfig(epochs=2, batch_size=16, lr=0.01, train_frames=1, test_frames=2,
                            supervised_epochs=1),
    # about a minute per model on 2 CPU cores (docs/FINETUNE.md has the timings). 8 frames per
    # video and epoch: with 4 the BN AlexNet was still near chance after 10 epochs. The
    # supervised stage needs 24 epochs: shapes start to be learned around epoch 8-10, and with
    # 10 cosine epochs the lr has decayed by then (held-out 0.34 vs 0.74 with 24).
    "tiny": FinetuneConfig(epochs=12, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=1e-4,
                           train_frames=8, test_frames=4, eval_every=4, supervised_epochs=24),
    # UCF101/HMDB51/CCV on a GPU: the usual fine-tuning recipe of the self-supervised video
    # papers the Table 1 rows come from (SGD, step decay, 25 test frames, ten-crop)
    "paper": FinetuneConfig(epochs=30, batch_size=128, lr=0.01, schedule="step", step_epochs=10, gamma=0.1,
                            train_frames=5, test_frames=25, test_crops=10, decode_size=256, eval_every=5,
                            supervised_epochs=30, cache_decoded=False, num_workers=8, resize="crop"),
}


# Per-arch changes applied on top of a preset (before user overrides): a PredNet item is a
# clip of clip_length frames, so it gets fewer items per epoch to keep the same time budget.
ARCH_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {},
    "tiny": {"prednet": {"epochs": 6, "train_frames": 1, "test_frames": 2, "batch_size": 16, "eval_every": 3,
                         "supervised_epochs": 6},
             # SGD for the AlexNet rows: with Adam the from-scratch fine-tune was seed-unstable
             # (random init 44.3 / 12.1 / 39.3% over seeds 0-2; 36.4 / 46.4 / 50.0% with SGD) and
             # the shuffle / odd-one-out inits stalled (20.0 / 23.6%; 44.3 / 50.7% with SGD)
             "alexnet": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4}},
    "paper": {"prednet": {"batch_size": 32}},
}


def finetune_config(arch: str, preset: str, overrides: Mapping[str, Any] | None = None) -> FinetuneConfig:
    """The resolved config: ``FINETUNE_PRESETS[preset]``, then ``ARCH_PRESETS[preset][arch]``,
    then ``overrides`` (strings from ``--set`` are converted to the field's type)."""
    base = resolve(FINETUNE_PRESETS, preset)
    base = dataclasses.replace(base, **ARCH_PRESETS.get(preset, {}).get(arch, {}))
    cfg = resolve({preset: base}, preset, overrides or {})
    _check_config(cfg)
    return cfg


def _check_config(cfg: FinetuneConfig) -> None:
    from harness.config import ConfigError
    from harness.data.frames import FIXED_CROP_COUNTS
    from harness.data.screening import SHORT_POLICIES
    from harness.data.video import RESIZE_MODES

    problems = [
        (cfg.epochs >= 1, "epochs must be >= 1"),
        (cfg.batch_size >= 1, "batch_size must be >= 1"),
        (cfg.lr > 0, "lr must be > 0"),
        (cfg.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}"),
        (cfg.schedule in ("cosine", "step", "constant"),
         f"schedule must be 'cosine', 'step' or 'constant', got {cfg.schedule!r}"),
        (cfg.step_epochs >= 1, "step_epochs must be >= 1"),
        (cfg.train_frames >= 1 and cfg.test_frames >= 1, "train_frames and test_frames must be >= 1"),
        (cfg.test_crops in FIXED_CROP_COUNTS, f"test_crops must be one of {FIXED_CROP_COUNTS}"),
        (cfg.clip_length >= 0, "clip_length must be >= 0"),
        (cfg.eval_every >= 1, "eval_every must be >= 1"),
        (cfg.num_workers >= 0, "num_workers must be >= 0"),
        (0.0 < cfg.supervised_holdout < 1.0, "supervised_holdout must be in (0, 1)"),
        (cfg.resize in RESIZE_MODES, f"resize must be one of {', '.join(RESIZE_MODES)}, got {cfg.resize!r}"),
        (cfg.short_videos in SHORT_POLICIES,
         f"short_videos must be one of {', '.join(SHORT_POLICIES)}, got {cfg.short_videos!r}"),
    ]
    for ok, msg in problems:
        if not ok:
            raise ConfigError(f"finetune config: {msg}")


def resolve_data_root(dataset: str, data_root: str | os.PathLike | None, preset: str) -> Path:
    """The dataset folder to read (``harness.data.roots.data_root``)."""
    from harness.data.roots import data_root as resolve

    return resolve(preset, data_root, dataset, error=FinetuneError)


def chance_level(index) -> dict:
    """The metric a guess without looking reaches: accuracy 1/C for uniform random guesses
    (and the majority-class rate, a stronger blind baseline); for mAP, the mean prevalence of
    the scored classes (the expected AP of random scores)."""
    y = index.targets()
    if index.multilabel:
        prev = y.mean(0)
        prev = prev[y.sum(0) > 0]
        return {"chance": float(prev.mean()), "chance_note": "mean class prevalence (expected AP of random scores)"}
    counts = np.bincount(y, minlength=index.num_classes)
    return {"chance": 1.0 / index.num_classes, "majority_rate": float(counts.max() / counts.sum()),
            "chance_note": "1 / number of classes (uniform random guess)"}
