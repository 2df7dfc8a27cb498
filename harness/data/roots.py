"""Where a command's videos are: the one data-root resolver every step uses."""

from __future__ import annotations

import os
from pathlib import Path

from harness.data.index import DATASETS
from harness.errors import HarnessError


class DataRootError(HarnessError):
    """A data root that is missing, lacks a file a step needs, or is needed but not given."""


def data_root(preset: str, root: str | os.PathLike | None = None, dataset: str = "synth",
              needs: str | None = None, error: type[HarnessError] = DataRootError) -> Path:
    """The dataset folder to read: ``root`` if given (it must exist, and hold ``needs`` when a
    step needs one file, e.g. pretraining's ``unlabeled.txt``); else, for the synthetic set of
    smoke/tiny, its default location, generated (seed 0) on first use. ``error`` is the type
    raised, so each step reports in its own name."""
    if dataset not in DATASETS:
        raise error(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if root is not None:
        path = Path(root)
        if not path.is_dir():
            raise error(f"{path}: --data-root folder not found")
        if needs is not None and not (path / needs).is_file():
            raise error(f"{path / needs}: not found; --data-root must hold {needs}")
        return path
    if dataset != "synth" or preset == "paper":
        raise error(f"--data-root is required for dataset {dataset!r} with preset {preset!r}")
    from harness.data.synth import ensure_generated

    return ensure_generated(preset)
