"""Fine-tuning a backbone for classification and scoring it at the video level.

``finetune(arch, init, preset, seed, ...)`` trains ``arch`` frame by frame on the labeled
training split (random frames, random views; clips ending at the sampled frame for PredNet)
and scores it on the test split at the video level (mean softmax over evenly spaced frames
and fixed test views, :func:`harness.data.frames.evaluate`: accuracy, or mAP for CCV).

Initialisations (the rows of Table 1):

- ``random``: the model's own initialisation (the AlexNet_ran row);
- ``pretext``: the backbone of a ``harness pretrain`` checkpoint (keys that do not fit, e.g.
  the pretext head, are skipped and listed in ``final.json``);
- ``supervised``: a first training stage on the synthetic set's ``disjoint`` classes (none of
  them a benchmark class), with its own run folder, then fine-tuning (the AlexNet_pre row on
  smoke/tiny, the stand-in for ImageNet pretraining);
- ``file``: a local ``.pth`` (e.g. torchvision's ImageNet ``alexnet`` weights for the paper
  preset) loaded with :func:`harness.models.load_matching_state_dict`.

Every run writes a :class:`~harness.runs.RunDir` keyed by the fingerprint of its config (the
training settings, the init source's weight hash and the dataset index fingerprints):
``run.json``, ``metrics.jsonl`` (per epoch: lr, train loss/accuracy, test metric),
``checkpoint.pt`` (the fine-tuned model, see :func:`load_finetuned`) and ``final.json``. An
unfinished run resumes from ``state.pt`` (model, optimizer, scheduler, epoch, torch RNG);
a finished one is returned without training. See docs/FINETUNE.md.

Modules: ``config`` (settings, presets, data roots), ``data`` (frame datasets), ``loop``
(init, training, evaluation), ``supervised`` (the AlexNet_pre stage); this module runs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from harness.checkpoints import load_verified, load_weights
from harness.config import to_dict
from harness.finetune.config import (ARCH_PRESETS, FINETUNE_PRESETS, INITS, FinetuneConfig, FinetuneError,
                                     chance_level, finetune_config, resolve_data_root)
from harness.finetune.data import clear_decode_cache
from harness.finetune.loop import _init_source, _run_training, predict_videos, reference_step_ms, training_step
from harness.finetune.supervised import STAGE_KEYS, _stage_plan, supervised_pretrain
from harness.provenance import code_version, fingerprint
from harness.runs import RunDir, splits_summary
from harness.utils import set_cpu_threads

__all__ = ["ARCH_PRESETS", "FINETUNE_PRESETS", "INITS", "STAGE_KEYS", "FinetuneConfig", "FinetuneError", "chance_level",
           "clear_decode_cache", "finetune", "finetune_config", "finetune_pretext", "load_finetuned", "predict_videos",
           "reference_step_ms", "resolve_data_root", "splits_of", "supervised_pretrain", "training_step"]


def splits_of(dataset: str, split) -> list[int]:
    """The official splits ``split`` names: ``"all"`` is 1, 2, 3 (CCV has one)."""
    if split == "all":
        return [1] if dataset == "ccv" else [1, 2, 3]
    try:
        s = int(split)
    except (TypeError, ValueError):
        raise FinetuneError(f"split must be 1, 2, 3 or 'all', got {split!r}") from None
    if s not in (1, 2, 3):
        raise FinetuneError(f"split must be 1, 2, 3 or 'all', got {split!r}")
    return [s]


def finetune(arch: str, init: str, preset: str = "tiny", seed: int = 0, dataset: str = "synth",
             data_root: str | os.PathLike | None = None, split: int | str = 1,
             checkpoint: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
             progress: bool = True, on_epoch_end: Callable[[int, dict], None] | None = None,
             pretrain_seed: int | None = None) -> RunDir:
    """Fine-tune ``arch`` from ``init`` on ``dataset``'s labeled train split ``split`` and score
    it on the test split at the video level; return the finished run folder.

    ``checkpoint``: the pretext ``checkpoint.pt`` (init "pretext") or weights file (init
    "file"). ``split="all"``: one run per split (CCV has one) and a summary run whose
    ``final.json`` holds the per-split values and their mean (no checkpoint of its own).
    ``on_epoch_end(epoch, row)`` is called after each epoch's state is saved (tests use it
    to interrupt a run). ``pretrain_seed`` seeds init "supervised"'s first stage (default:
    ``seed``), so seeds of the fine-tuning can share one pretrained stage. A finished run with the same config fingerprint is returned as is.
    """
    from harness.data.index import check_trainable, open_index
    from harness.models import MODEL_REGISTRY

    set_cpu_threads()
    if arch not in MODEL_REGISTRY:
        raise FinetuneError(f"unknown arch {arch!r}; choose one of {', '.join(sorted(MODEL_REGISTRY))}")
    if init not in INITS:
        raise FinetuneError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    stage_seed = seed if pretrain_seed is None else int(pretrain_seed)
    splits = splits_of(dataset, split)
    if split == "all":
        return _finetune_all(arch, init, preset, seed, dataset, data_root, splits, checkpoint, overrides, progress)
    split = splits[0]
    cfg = finetune_config(arch, preset, overrides)
    model_preset = cfg.model_preset or preset
    root = resolve_data_root(dataset, data_root, preset)
    train_index = open_index(dataset, root, split, "train")
    test_index = open_index(dataset, root, split, "test")
    if train_index.classes != test_index.classes:
        raise FinetuneError(f"{root}: train and test splits list different classes")
    check_trainable(train_index, root, split)

    stage_run, stage_fp = None, None
    if init == "supervised":
        if dataset != "synth":
            raise FinetuneError(f"init 'supervised' pretrains on the synthetic set's disjoint classes; for {dataset} "
                                f"use --init file --checkpoint <ImageNet weights .pth>")
        stage_fp = fingerprint(_stage_plan(arch, preset, stage_seed, root, overrides)[0])
    source = _init_source(init, arch, model_preset, checkpoint, stage_fp)

    train = to_dict(cfg)
    if init != "supervised":  # the stage's knobs do not change this run
        train = {k: v for k, v in train.items() if not k.startswith("supervised_")}
    cfg_dict = {"stage": "finetune", "arch": arch, "init": init, "init_source": source, "preset": preset,
                "model_preset": model_preset, "seed": int(seed), "dataset": dataset, "split": split, "train": train,
                "data": {"train_index": train_index.fingerprint(), "test_index": test_index.fingerprint()}}
    name = f"{arch}-{init}" + (f"-{source['task']}" if init == "pretext" else "") + f"-{dataset}-s{split}-seed{seed}"
    run = RunDir.for_config("finetune", preset, name, cfg_dict)
    if run.is_finished():
        return run
    if init == "supervised":
        stage_run = supervised_pretrain(arch, preset, stage_seed, root, overrides, progress)
    inputs = {"data_root": str(root), "train_index": train_index.fingerprint(),
              "test_index": test_index.fingerprint()}
    if checkpoint is not None:
        inputs["checkpoint"] = str(checkpoint)
    if stage_run is not None:
        inputs["supervised_stage"] = str(stage_run.path)
    run.start(cfg_dict, inputs)
    extra = {"dataset": dataset, "split": split}
    if stage_run is not None:
        st = stage_run.final()
        extra["supervised_stage"] = {"run": str(stage_run.path), "heldout_metric": st["metric"],
                                     "heldout_value": st["value"], "chance": st["chance"]}
    _run_training(run, arch, init, preset, seed, cfg_dict, cfg, train_index, test_index, checkpoint,
                  stage_run.path / "checkpoint.pt" if stage_run is not None else None, extra, progress, on_epoch_end)
    return run


def _finetune_all(arch, init, preset, seed, dataset, data_root, splits, checkpoint, overrides, progress) -> RunDir:
    runs = {s: finetune(arch, init, preset, seed, dataset, data_root, s, checkpoint, overrides, progress) for s in splits}
    return splits_summary("finetune", preset, f"{arch}-{init}-{dataset}-all-seed{seed}", runs, "finetune-all-splits",
                          {"arch": arch, "init": init, "preset": preset, "dataset": dataset,
                           "chance_note": runs[splits[0]].final()["chance_note"]})


def finetune_pretext(task: str, preset: str = "tiny", seed: int = 0, dataset: str = "synth",
                     data_root: str | os.PathLike | None = None, split: int | str = 1,
                     overrides: Mapping[str, Any] | None = None, pretext_overrides: Mapping[str, Any] | None = None,
                     progress: bool = True, pretrain_seed: int | None = None) -> RunDir:
    """One Table 1 row: pretrain ``task`` (reusing its finished checkpoint) and fine-tune its
    backbone; returns the fine-tuning run. ``pretrain_seed`` (default ``seed``) seeds the
    pretraining, so several fine-tuning seeds can start from one pretrained teacher."""
    from harness.pretext.base import get_task
    from harness.pretext.train import pretrain

    cls = get_task(task)
    # pretrain() keys its run folder by config, returns a finished checkpoint at once and
    # resumes an unfinished one
    unlabeled_root = data_root if data_root is not None else (
        resolve_data_root(dataset, None, preset) if dataset == "synth" else None)
    ckpt = pretrain(task, preset, seed if pretrain_seed is None else int(pretrain_seed), unlabeled_root, None,
                    pretext_overrides, progress, dataset=dataset, split=1 if split == "all" else int(split))
    return finetune(cls.arch, "pretext", preset, seed, dataset, data_root, split, ckpt, overrides, progress)


def load_finetuned(path: str | os.PathLike, verify: bool = True):
    """The fine-tuned model of a ``checkpoint.pt`` written by :func:`finetune` (eval mode) and
    the checkpoint dict; ``verify`` checks the weights against their recorded sha256."""
    from harness.models import build_model

    path = Path(path)
    ckpt = load_verified(path, FinetuneError, "fine-tuned checkpoint", "state_dict", ("arch", "num_classes"), verify)
    model = build_model(ckpt["arch"], ckpt["num_classes"], ckpt["model_preset"])
    load_weights(model, ckpt["state_dict"], path, FinetuneError,
                 f"fine-tuned checkpoint ({ckpt['arch']} by its 'arch' entry)")
    return model.eval(), ckpt
