"""The supervised first stage of init "supervised" (AlexNet_pre on smoke/tiny): training on
the synthetic set's disjoint classes, in a run folder of its own."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.config import to_dict
from harness.finetune.config import FinetuneError, finetune_config, resolve_data_root
from harness.finetune.loop import _run_training
from harness.runs import RunDir
from harness.utils import set_cpu_threads


# Overrides that reach the supervised stage; the others (lr, epochs, ...) change only the
# fine-tuning, so trying fine-tuning settings reuses one finished stage.
STAGE_KEYS = ("supervised_epochs", "supervised_holdout", "model_preset", "device", "decode_size",
              "cache_decoded", "num_workers")


def _stage_plan(arch: str, preset: str, seed: int, root: Path, overrides: Mapping[str, Any] | None):
    from harness.data.index import open_index

    cfg = finetune_config(arch, preset, {k: v for k, v in (overrides or {}).items() if k in STAGE_KEYS})
    if cfg.supervised_epochs < 1:
        raise FinetuneError(f"init 'supervised' needs supervised_epochs >= 1 (preset {preset!r} has "
                            f"{cfg.supervised_epochs}); pass --set supervised_epochs=N")
    index = open_index("synth", root, 1, "disjoint")
    # the held-out videos are fixed by the data, not by the run's seed (as in pretraining)
    perm = np.random.default_rng([0, 17]).permutation(len(index))
    n_hold = min(max(1, int(round(len(index) * cfg.supervised_holdout))), len(index) - 1)
    train_idx, hold_idx = index.select(np.sort(perm[n_hold:])), index.select(np.sort(perm[:n_hold]))
    stage_cfg = dataclasses.replace(cfg, epochs=cfg.supervised_epochs)
    train = {k: v for k, v in to_dict(stage_cfg).items() if not k.startswith("supervised_") or k == "supervised_holdout"}
    cfg_dict = {"stage": "supervised-pretrain", "arch": arch, "preset": preset,
                "model_preset": cfg.model_preset or preset, "seed": int(seed), "train": train,
                "data": {"dataset": "synth", "subset": "disjoint", "index": index.fingerprint()}}
    return cfg_dict, stage_cfg, train_idx, hold_idx


def supervised_pretrain(arch: str, preset: str = "tiny", seed: int = 0, data_root: str | os.PathLike | None = None,
                        overrides: Mapping[str, Any] | None = None, progress: bool = True) -> RunDir:
    """Supervised training of ``arch`` from scratch on the synthetic ``disjoint`` classes (the
    AlexNet_pre stand-in), ``supervised_epochs`` epochs, scored on a fixed held-out share of
    those videos, with the preset's other settings (of ``overrides`` only :data:`STAGE_KEYS`
    apply). Its own run folder (``<runs>/pretrain-supervised/<preset>/...``), reused when
    finished; ``checkpoint.pt`` as in :func:`finetune`."""
    set_cpu_threads()
    root = resolve_data_root("synth", data_root, preset)
    cfg_dict, stage_cfg, train_idx, hold_idx = _stage_plan(arch, preset, seed, root, overrides)
    run = RunDir.for_config("pretrain-supervised", preset, f"{arch}-disjoint-seed{seed}", cfg_dict)
    if run.is_finished():
        return run
    run.start(cfg_dict, {"data_root": str(root), "disjoint_index": cfg_dict["data"]["index"]})
    _run_training(run, arch, "random", preset, seed, cfg_dict, stage_cfg, train_idx, hold_idx, None, None,
                  {"dataset": "synth", "subset": "disjoint"}, progress, None)
    return run
