"""The end-to-end pipeline on demand: each step finds its finished input or makes it.

    data (synth)  ->  teachers (pretrain + finetune)  ->  store (cache-teachers)  ->  distill

Every step is keyed by its config (run folders by fingerprint, the store by its manifest),
so asking for a Table 2 row runs only what is missing and reuses everything else.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.cache.teachers import TEACHER_TASKS, cache_teachers, default_store_path
from harness.errors import HarnessError


def ensure_data(preset: str, data_root: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``data_root`` if given, else the synthetic set of smoke/tiny
    (generated on first use, regenerated if stale)."""
    if data_root is not None:
        return Path(data_root)
    if preset == "paper":
        raise HarnessError("preset 'paper' reads a real dataset: pass --data-root DIR")
    from harness.data.synth import ensure_generated

    return ensure_generated(preset)


def teacher_checkpoints(preset: str, seed: int = 0, data_root: str | os.PathLike | None = None,
                        tasks: tuple[str, ...] = TEACHER_TASKS) -> dict[str, Path]:
    """The fine-tuned teacher of each task (self-supervised pretraining, then fine-tuning),
    trained now if no finished run with the same config exists."""
    from harness.finetune import finetune_pretext

    return {task: finetune_pretext(task, preset, seed, data_root=data_root).path / "checkpoint.pt"
            for task in tasks}


def ensure_store(preset: str, seed: int = 0, fmt: str = "zarr", store: str | os.PathLike | None = None,
                 data_root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The teacher feature store for ``preset``, built (or resumed) if not complete."""
    path = Path(store) if store is not None else default_store_path(preset, fmt)
    root = ensure_data(preset, data_root)
    ckpts = teacher_checkpoints(preset, seed, root)
    st = cache_teachers(preset, ckpts, root, store=path, fmt=fmt, progress=progress)
    if not st.is_complete():
        raise HarnessError(f"{path}: other writer processes have not finished their chunks yet")
    return path


def student_store(preset: str, seed: int = 0, store: str | os.PathLike | None = None,
                  data_root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The store a student is distilled from. A complete store named by ``store`` is used as it
    is: its manifest records its teachers and data, so neither is needed (nor trained). Any
    other store (the preset's default, a missing or unfinished one) is built or resumed from
    the default teachers, which are trained first if missing."""
    if store is not None and Path(store).exists():
        from harness.cache.store import FeatureStore

        with FeatureStore.open(store) as st:
            if st.is_complete():
                return Path(store)
    return ensure_store(preset, seed, store=store, data_root=data_root, progress=progress)


def run_method(method: str, preset: str, seed: int = 0, overrides: dict | None = None,
               store: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
               progress: bool = True):
    """One Table 2 row: the store (``student_store``) then the distillation run (reused if finished)."""
    from harness.distill.methods import METHODS, MethodError
    from harness.distill.runner import distill

    if method not in METHODS:  # before any expensive step
        raise MethodError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    path = student_store(preset, seed, store=store, data_root=data_root, progress=progress)
    return distill(method, preset, seed, path, overrides=overrides, progress=progress)
