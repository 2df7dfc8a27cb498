"""Run folders: every training command writes one, keyed by its config fingerprint.

A run folder holds ``run.json`` (config, code version, input fingerprints), the command's
own logs and checkpoints, and ``final.json`` once it has finished. A finished run with the
same config fingerprint is reused instead of recomputed (``harness ablation``, ``table1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.provenance import fingerprint, run_record, write_json_atomic


class RunBusy(HarnessError):
    """Another process is already training this run folder."""

RUNS_ROOT_ENV = "HARNESS_RUNS"


def runs_root() -> Path:
    """``$HARNESS_RUNS`` or ``./runs``."""
    return Path(os.environ.get(RUNS_ROOT_ENV, "runs"))


@dataclass
class RunDir:
    path: Path

    @classmethod
    def for_config(cls, kind: str, preset: str, name: str, config: Any, root: Path | None = None) -> "RunDir":
        """``<root>/<kind>/<preset>/<name>-<fingerprint[:10]>``: one folder per distinct config."""
        safe = name.replace("/", "_").replace("+", "_")
        return cls((root or runs_root()) / kind / preset / f"{safe}-{fingerprint(config)[:10]}")

    @property
    def final_path(self) -> Path:
        return self.path / "final.json"

    def is_finished(self) -> bool:
        return self.final_path.is_file()

    def final(self) -> dict:
        with open(self.final_path) as fh:
            return json.load(fh)

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the run folder for one training process: two processes resuming the same run
        would interleave its checkpoints and logs. Fails at once, naming the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(f"{self.path}: another process is training this run; wait for it or stop it") from None
            try:
                yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def start(self, config: Any, inputs: dict[str, str] | None = None) -> None:
        """Create the folder and write ``run.json`` (kept from the first start when resuming)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = self.path / "run.json"
        if not record.exists():
            write_json_atomic(record, run_record(config, inputs))

    def finish(self, results: dict) -> None:
        write_json_atomic(self.final_path, results)

    def append_log(self, row: dict, name: str = "metrics.jsonl") -> None:
        with open(self.path / name, "a") as fh:
            fh.write(json.dumps(row, sort_keys=True, default=float) + "\n")
