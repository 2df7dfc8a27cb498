"""Table 1 and Table 2 from runs the harness makes (or reuses), beside the paper's numbers."""

from __future__ import annotations

import json
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


# Table 1 rows: (key in tables/paper_table1.csv, label, how the row is produced, note).
# Single-task rows are the pretext backbone fine-tuned on the labeled split; the paper ran
# AlexNet for them, the harness uses each task's registered backbone (see docs/PRETEXT.md).
TABLE1_ROWS = (
    ("alexnet_ran", "AlexNet_ran (random init)", ("finetune", "alexnet", "random"), ""),
    ("alexnet_pre", "AlexNet_pre (supervised pretraining)", ("finetune", "alexnet", "supervised"),
     "tiny/smoke: supervised on the synth 'disjoint' classes (ImageNet stand-in)"),
    ("track", "Wang et al. [2015] (tracking)", ("pretext", "track"), ""),
    ("shuffle", "Misra et al. [2016] (Shuffle & Learn)", ("pretext", "shuffle"), ""),
    ("pose", "Senthil et al. [2016] (pose from action)", ("pretext", "pose"),
     "an interpretation: motion-displacement classification, docs/PRETEXT.md"),
    ("sort", "Lee et al. [2017] (frame sorting, OPN)", ("pretext", "sort"), ""),
    ("oddoneout", "Basura et al. [2017] (odd-one-out)", ("pretext", "oddoneout"), ""),
    ("motion", "Teacher T_M (temporal closeness)", ("pretext", "motion"), "not a row of the paper's Table 1"),
    ("predict", "Teacher T_P (PredNet)", ("pretext", "predict"), "not a row of the paper's Table 1"),
    ("gl+gr", "Ours (G_l+G_r), distilled AlexNet student", ("distill", "gl+gr"), ""),
)


def pretext_metrics(finetune_final: dict) -> dict | None:
    """The held-out pretext metric of the pretraining run a fine-tuning run started from (the
    ``metrics.json`` beside the checkpoint named in its ``init_summary``), or None."""
    source = (finetune_final.get("init_summary") or {}).get("source")
    path = Path(source).parent / "metrics.json" if source else None
    if path is None or not path.is_file():
        return None
    m = json.loads(path.read_text())
    return {"task": m.get("task"), "name": m["metric_name"], "value": m["metric"], "chance": m["chance"],
            "chance_note": m.get("chance_note", ""), "at_init": m["metric_at_init"],
            "baseline": m.get("baseline"), "baseline_note": m.get("baseline_note", ""),
            "higher_is_better": bool(m["higher_is_better"]), "run": str(path.parent)}


def supervised_stage_metrics(finetune_final: dict) -> dict | None:
    """AlexNet_pre's counterpart of :func:`pretext_metrics`: the held-out accuracy of the
    supervised first stage (on the disjoint classes) the fine-tune started from, or None."""
    stage = finetune_final.get("supervised_stage")
    if not stage:
        return None
    return {"task": "supervised", "name": f"disjoint-class {stage['heldout_metric']}",
            "value": stage["heldout_value"], "chance": stage["chance"], "at_init": None,
            "higher_is_better": True, "run": stage["run"]}


def table1(preset: str, seed: int = 0, data_root: str | os.PathLike | None = None, command: str = "",
           out_dir: Path | None = None) -> str:
    """Every Table 1 row, run or reused, rendered beside the paper's Table 1."""
    from harness import pipeline
    from harness.finetune import finetune, finetune_pretext

    root = pipeline.ensure_data(preset, data_root)
    rows = []
    for key, label, (kind, *what), note in TABLE1_ROWS:
        if kind == "finetune":
            run = finetune(what[0], what[1], preset, seed, data_root=root)
        elif kind == "pretext":
            run = finetune_pretext(what[0], preset, seed, data_root=root)
        else:
            run = pipeline.run_method(what[0], preset, seed, data_root=root)
        final = run.final()
        pre = pretext_metrics(final) if kind == "pretext" else supervised_stage_metrics(final)
        runs = [str(run.path)] + ([pre["run"]] if pre else [])
        rows.append(MeasuredRow(key, label, 100.0 * final["value"], final["metric"], runs=runs, note=note, pretext=pre))
    return render(1, rows, _dataset_label(preset), command, out_dir or GENERATED / preset)
