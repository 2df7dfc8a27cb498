"""Table 1 and Table 2 rendered from finished runs, beside the paper's numbers.

Which run makes each row is the pipeline's business (``harness.pipeline.TABLE1_PLAN``,
``table1_runs``, ``table2_runs``); this module only reads run folders and renders.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.runs import RunDir
from harness.tables.render import MeasuredRow, render, seed_stats

GENERATED = Path("tables") / "generated"

# Table 1 rows: key (in paper_table1.csv and pipeline.TABLE1_PLAN) -> (label, note).
# Single-task rows are the pretext backbone fine-tuned on the labeled split; the paper ran
# AlexNet for them, the harness uses each task's registered backbone (see docs/PRETEXT.md).
TABLE1_ROWS = {
    "alexnet_ran": ("AlexNet_ran (random init)", ""),
    "alexnet_pre": ("AlexNet_pre (supervised pretraining)",
                    "tiny/smoke: supervised on the synth 'disjoint' classes (ImageNet stand-in)"),
    "track": ("Wang et al. [2015] (tracking)", ""),
    "shuffle": ("Misra et al. [2016] (Shuffle & Learn)", ""),
    "pose": ("Senthil et al. [2016] (pose from action)",
             "an interpretation: motion-displacement classification, docs/PRETEXT.md"),
    "sort": ("Lee et al. [2017] (frame sorting, OPN)", ""),
    "oddoneout": ("Basura et al. [2017] (odd-one-out)", ""),
    "motion": ("Teacher T_M (temporal closeness)", "not a row of the paper's Table 1"),
    "predict": ("Teacher T_P (PredNet)", "not a row of the paper's Table 1"),
    "gl+gr": ("Ours (G_l+G_r), distilled AlexNet student", ""),
}


def dataset_label(runs) -> str:
    """What the runs were scored on, read from their ``run.json``: e.g. "synth-tiny, split 1"
    (the synthetic set is named with its preset), "ucf101, split 1"."""
    seen = []
    for run in runs:
        try:
            record = json.loads((Path(run.path) / "run.json").read_text())
        except (OSError, ValueError):
            continue
        cfg = record.get("config", {})
        if str(cfg.get("stage", "")).endswith("all-splits"):   # a mean over splits: label its first split's data
            first = dataset_label([RunDir(Path(p)) for p in list(record.get("inputs", {}).values())[:1]])
            label = first.split(", split ")[0] + f", splits {', '.join(cfg['splits'])} (mean)"
            if label not in seen:
                seen.append(label)
            continue
        manifest = record.get("inputs", {}).get("store_manifest")
        if isinstance(manifest, dict):   # a distillation run: the store's data
            name, split, preset = manifest["dataset"]["name"], manifest["dataset"].get("split"), manifest.get("preset")
        else:
            name, split, preset = cfg.get("dataset"), cfg.get("split"), cfg.get("preset")
        if name is None:
            continue
        label = (f"{name}-{preset}" if name == "synth" and preset else str(name)) + (f", split {split}" if split else "")
        if label not in seen:
            seen.append(label)
    return "; ".join(seen) or "unknown data"


def _per_seed(runs: list[RunDir]) -> tuple[dict[int, float], str]:
    """``{seed: value in %}`` of finished runs and their metric name."""
    finals = [run.final() for run in runs]
    return {int(f["seed"]): 100.0 * f["value"] for f in finals}, finals[0]["metric"]


def render_table2(runs: dict[str, list[RunDir]], command: str, out_dir: Path, strict: bool = False,
                  missing: dict[str, str] | None = None) -> str:
    """Table 2 from ``{method: [finished RunDir per seed]}`` (``pipeline.table2_runs``);
    ``missing``: ``{method: why}`` of rows without runs, shown as ``-`` with the reason."""
    from harness.distill.methods import METHODS

    rows = []
    for method, seed_runs in runs.items():
        if not seed_runs:
            rows.append(MeasuredRow(method, METHODS[method].label, None, "",
                                    note=(missing or {}).get(method, "missing")))
            continue
        per_seed, metric = _per_seed(seed_runs)
        rows.append(MeasuredRow(method, METHODS[method].label, seed_stats(per_seed)[0], metric,
                                runs=[str(r.path) for r in seed_runs], note=METHODS[method].notes, per_seed=per_seed))
    return render(2, rows, dataset_label([r for rs in runs.values() for r in rs]), command, out_dir, strict)


def table2_dir(preset: str, methods: list[str]) -> Path:
    """Where a table of ``methods`` goes: one method (``harness ablation``) writes under
    ``tables/generated/<preset>/ablation/<method>`` so it never overwrites a full table."""
    out = GENERATED / preset
    return out / "ablation" / methods[0].replace("+", "_") if len(methods) == 1 else out


def pretext_metrics(finetune_final: dict) -> dict | None:
    """The held-out pretext metric of the pretraining run a fine-tuning run started from (the
    ``final.json`` beside the checkpoint named in its ``init_summary``), or None."""
    source = (finetune_final.get("init_summary") or {}).get("source")
    path = Path(source).parent / "final.json" if source and finetune_final.get("init") == "pretext" else None
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


def render_table1(runs: dict[str, list[RunDir]], command: str, out_dir: Path, strict: bool = False,
                  missing: dict[str, str] | None = None) -> str:
    """Table 1 from ``{row key: [finished RunDir per seed]}`` (``pipeline.table1_runs``): each
    single-task row beside the held-out metric of the pretraining (or supervised stage) its
    runs started from (one, shared by the seeds). ``missing``: ``{row key: why}`` of rows
    without runs, shown as ``-`` with the reason."""
    rows = []
    for key, seed_runs in runs.items():
        label, note = TABLE1_ROWS[key]
        if not seed_runs:
            rows.append(MeasuredRow(key, label, None, "", note=(missing or {}).get(key, "missing")))
            continue
        per_seed, metric = _per_seed(seed_runs)
        final = seed_runs[0].final()
        pre = pretext_metrics(final) or supervised_stage_metrics(final)
        extra = [pre["run"]] if pre else []
        rows.append(MeasuredRow(key, label, seed_stats(per_seed)[0], metric,
                                runs=[*(str(r.path) for r in seed_runs), *extra], note=note, pretext=pre,
                                per_seed=per_seed))
    return render(1, rows, dataset_label([r for rs in runs.values() for r in rs]), command, out_dir, strict)
