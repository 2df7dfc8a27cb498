"""Table 1 and Table 2 from runs the harness makes (or reuses), beside the paper's numbers."""

from __future__ import annotations

import os
from pathlib import Path

from harness.tables.render import MeasuredRow, render

GENERATED = Path("tables") / "generated"


def _dataset_label(preset: str) -> str:
    return {"smoke": "synth-smoke, split 1", "tiny": "synth-tiny, split 1"}.get(preset, "UCF101 split 1")


def table2_rows(methods: list[str], preset: str, seed: int = 0, store: str | os.PathLike | None = None,
                data_root: str | os.PathLike | None = None, command: str = "", out_dir: Path | None = None) -> str:
    """Run (or reuse) each method and render the rows beside the paper's Table 2.

    One method (``harness ablation``) writes under ``tables/generated/<preset>/ablation/<method>``
    so it never overwrites a full table.
    """
    from harness import pipeline
    from harness.distill.methods import METHODS

    rows = []
    for method in methods:
        run = pipeline.run_method(method, preset, seed, store=store, data_root=data_root)
        final = run.final()
        rows.append(MeasuredRow(method, METHODS[method].label, 100.0 * final["value"], final["metric"],
                                runs=[str(run.path)], note=METHODS[method].notes))
    if out_dir is None:
        out_dir = GENERATED / preset
        if len(methods) == 1:
            out_dir = out_dir / "ablation" / methods[0].replace("+", "_")
    return render(2, rows, _dataset_label(preset), command, out_dir)
