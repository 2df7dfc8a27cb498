"""Run folders: every training command writes one, keyed by its config fingerprint.

One contract for pretraining, fine-tuning and distillation:

- ``run.json``: config, code version, input fingerprints, machine (``start``);
- ``state.pt``: the resume point, written after every epoch (``save_state``): the loop's own
  tensors, the epoch rows so far, the torch RNG and the config fingerprint it belongs to;
- ``metrics.jsonl``: one row per finished epoch, rewritten from the state with it, so a run
  killed between the two never holds a row twice;
- ``final.json``: the results; its presence means "finished" (``finish`` removes state.pt).

A finished run with the same config fingerprint is reused instead of recomputed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.determinism import keyed
from harness.errors import HarnessError, resumable
from harness.provenance import fingerprint, run_record, write_json_atomic


class RunBusy(HarnessError):
    """Another process is already training this run folder."""


class RunStateError(HarnessError):
    """A resume state that belongs to another config or cannot be read."""


STATE, METRICS = "state.pt", "metrics.jsonl"

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
        return cls((root or runs_root()) / kind / preset / f"{safe}-{fingerprint(keyed(config))[:10]}")

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
        would interleave its checkpoints and logs. Fails at once, naming the folder. Ctrl-C
        inside names this folder as where the same command resumes from."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(f"{self.path}: another process is training this run; wait for it or stop it") from None
            try:
                with resumable(self.path):
                    yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def start(self, config: Any, inputs: dict[str, str] | None = None) -> None:
        """Create the folder and write ``run.json`` (kept from the first start when resuming)."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = self.path / "run.json"
        if not record.exists():
            write_json_atomic(record, run_record(config, inputs))

    @property
    def state_path(self) -> Path:
        return self.path / STATE

    def load_state(self, config_fingerprint: str) -> dict | None:
        """The resume point of an unfinished run (restoring the torch RNG it saved), or None.
        A state of another config, or one that cannot be read, is one line naming the file."""
        import torch

        from harness.checkpoints import load_checkpoint

        if not self.state_path.is_file():
            return None
        state = load_checkpoint(self.state_path, RunStateError, "resume state")
        if not isinstance(state, dict) or state.get("config_fingerprint") != config_fingerprint:
            raise RunStateError(f"{self.state_path}: belongs to a run with another config; delete {self.path} "
                                f"to start it over")
        torch.set_rng_state(state["torch_rng"])
        return state

    def save_state(self, state: dict, rows: list[dict], config_fingerprint: str) -> None:
        """Write the resume point (``state`` plus the rows, the torch RNG and the fingerprint),
        then ``metrics.jsonl`` from the same rows."""
        import torch

        from harness.checkpoints import save_atomic, write_jsonl_atomic

        self.path.mkdir(parents=True, exist_ok=True)
        save_atomic({**state, "rows": rows, "torch_rng": torch.get_rng_state(),
                     "config_fingerprint": config_fingerprint}, self.state_path)
        write_jsonl_atomic(self.path / METRICS, rows)

    def rows(self) -> list[dict]:
        """The epoch rows of ``metrics.jsonl`` (empty when there are none yet)."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def finish(self, results: dict, rows: list[dict] | None = None) -> None:
        """Write ``final.json`` (after ``metrics.jsonl`` from ``rows`` when given) and drop the
        resume state: the run is finished."""
        if rows is not None:
            from harness.checkpoints import write_jsonl_atomic

            write_jsonl_atomic(self.path / METRICS, rows)
        write_json_atomic(self.final_path, results)
        self.state_path.unlink(missing_ok=True)


#: Test-video ids of split ``k`` are offset by ``k * SPLIT_VIDEO_STRIDE`` in an all-splits run's
#: predictions, so the three splits' test videos stay distinct and pair run by run.
SPLIT_VIDEO_STRIDE = 1_000_000


def splits_summary(kind: str, preset: str, name: str, split_runs: dict[int, "RunDir"], stage: str,
                   extra: dict | None = None) -> "RunDir":
    """The run of one cell averaged over the official splits, as the paper reports it: a folder
    of its own (keyed by the per-split runs) whose ``final.json`` holds the mean of the
    per-split values (``value``), each split's value (``per_split``) and runs; whose
    ``metrics.jsonl`` holds the per-epoch mean of ``test_value`` where every split has the
    epoch; and whose ``predictions.npz`` concatenates the splits' test predictions (video ids
    offset per split by ``SPLIT_VIDEO_STRIDE``), which is what the paired intervals resample.
    It trains nothing; each split's run is made (or reused) by the caller."""
    import numpy as np

    from harness.data.frames import load_predictions, save_predictions
    from harness.provenance import code_version

    splits = sorted(split_runs)
    config = {"stage": stage, "splits": {str(k): split_runs[k].path.name for k in splits}}
    run = RunDir.for_config(kind, preset, name, config)
    if run.is_finished():
        return run
    finals = {k: split_runs[k].final() for k in splits}
    run.start(config, {str(k): str(split_runs[k].path) for k in splits})
    preds = {k: load_predictions(split_runs[k].path) for k in splits}
    if all(p is not None for p in preds.values()):
        save_predictions(run.path, np.concatenate([preds[k]["scores"] for k in splits]),
                         np.concatenate([preds[k]["targets"] for k in splits]),
                         np.concatenate([preds[k]["video_ids"] + k * SPLIT_VIDEO_STRIDE for k in splits]))
    curves = {k: {r["epoch"]: r["test_value"] for r in split_runs[k].rows() if "test_value" in r} for k in splits}
    epochs = sorted(set.intersection(*(set(c) for c in curves.values())))
    rows = [{"epoch": e, "test_value": float(np.mean([curves[k][e] for k in splits]))} for e in epochs]
    first = finals[splits[0]]
    results = {**(extra or {}), "seed": first.get("seed"), "split": "all", "metric": first["metric"],
               "value": float(np.mean([finals[k]["value"] for k in splits])),
               "per_split": {str(k): finals[k]["value"] for k in splits},
               "runs": {str(k): str(split_runs[k].path) for k in splits},
               "run_seconds": round(sum(f.get("run_seconds", 0.0) for f in finals.values()), 2),
               "code_version": code_version()}
    if all("chance" in f for f in finals.values()):
        results["chance"] = float(np.mean([f["chance"] for f in finals.values()]))
    run.finish(results, rows)
    return run
