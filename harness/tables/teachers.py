"""The four teachers and what they cost: the report of ``harness teachers``.

Rendered from the runs ``harness.pipeline.teacher_runs`` made or reused: per teacher the
held-out pretext metric, the fine-tuned accuracy and the seconds each run recorded for itself,
beside the wall-clock time of the command and the time of one VGG fine-tuning step measured on
the same machine just before (the same code took twice as long on one day as on another,
docs/FINETUNE.md, so a budget is quoted with the machine's speed beside it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.provenance import code_version, processor_name, write_json_atomic

# The tiny preset's target for pretraining + fine-tuning the four teachers on 2 CPU cores
# (a laptop-CPU budget for the embedded benchmark); other presets have none.
TEACHER_BUDGET_S = {"tiny": 600.0}


def _made_since(path: Path, since: float) -> bool:
    return path.is_file() and path.stat().st_mtime >= since


def render_teachers(made: dict, preset: str, seed: int = 0, command: str = "", out_dir: Path | None = None) -> str:
    """Write ``teachers.{md,json}`` under ``out_dir`` (default ``tables/generated/<preset>``)
    from ``made`` (what ``pipeline.teacher_runs`` returns) and return the markdown."""
    from harness.tables.tables import GENERATED, pretext_metrics

    rows = []
    for task, run in made["runs"].items():
        final = run.final()
        pre = pretext_metrics(final)
        pre_run = Path(pre["run"])
        metrics = json.loads((pre_run / "final.json").read_text())
        # run_seconds: decoding, evaluations and the loop; runs made before it was recorded
        # have only the loop's train_seconds
        pretrain_s = metrics.get("run_seconds", metrics["train_seconds"])
        finetune_s = final["run_seconds"] + final.get("decode_seconds", 0.0)
        rows.append({
            "task": task, "arch": final["arch"], "pretext": pre, "metric": final["metric"], "value": final["value"],
            "chance": final["chance"], "pretrain_seconds": pretrain_s, "finetune_seconds": round(finetune_s, 2),
            "pretrained_now": _made_since(pre_run / "final.json", made["started"]),
            "finetuned_now": _made_since(run.final_path, made["started"]),
            "wall_seconds": round(made["wall_seconds"][task], 2), "runs": [str(run.path), str(pre_run)],
        })
    summary = {**budget_summary(rows, preset, made["total_wall_seconds"]),
               "reference_step_ms": round(made["reference_step_ms"], 2), "torch_threads": made["torch_threads"],
               "cpu_count": os.cpu_count(), "processor": processor_name()}
    version = code_version()  # one stamp for the markdown and the JSON
    md = _render(rows, summary, preset, command, version)
    out_dir = out_dir or GENERATED / preset
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "teachers.md", md + "\n")
    _write_csv_and_latex(rows, preset, command, version, out_dir)
    write_json_atomic(out_dir / "teachers.json", {"preset": preset, "seed": seed, "command": command,
                                                   "code_version": version, "rows": rows, **summary})
    return md


def _write_csv_and_latex(rows: list[dict], preset: str, command: str, version: str, out_dir: Path) -> None:
    import csv

    from harness.tables.render import latex_escape, write_latex

    header = ["Teacher", "Arch", "Pretext metric", "Value", "Chance", "Fine-tuned %", "Pretraining s", "Fine-tuning s"]
    table = [[r["task"], r["arch"], r["pretext"]["name"], f"{r['pretext']['value']:.4g}",
              f"{r['pretext']['chance']:.4g}", f"{100 * r['value']:.1f}", f"{r['pretrain_seconds']:.1f}",
              f"{r['finetune_seconds']:.1f}"] for r in rows]
    from harness.atomic import atomic_file

    with atomic_file(out_dir / "teachers.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(table)
    write_latex(out_dir / "teachers.tex", header, table,
                latex_escape(f"The four teachers on {preset}: held-out pretext metric, fine-tuned accuracy and the "
                             "seconds their runs recorded. ")
                + f"Made by \\texttt{{{latex_escape(command)}}} (code {latex_escape(version)}).")


def budget_summary(rows: list[dict], preset: str, wall_seconds: float) -> dict:
    """The total the runs recorded, judged against the preset's budget (wall time of a
    command that reused runs says nothing about training cost), and how much was trained now."""
    recorded = sum(r["pretrain_seconds"] + r["finetune_seconds"] for r in rows)
    budget = TEACHER_BUDGET_S.get(preset)
    return {"recorded_seconds": round(recorded, 2), "wall_seconds": round(wall_seconds, 2),
            "runs_trained_now": sum(r["pretrained_now"] + r["finetuned_now"] for r in rows), "runs": 2 * len(rows),
            "budget_seconds": budget, "within_budget": None if budget is None else bool(recorded < budget)}


def _render(rows: list[dict], s: dict, preset: str, command: str, version: str) -> str:
    lines = [
        f"The four teachers on {preset}: pretext metric held out, fine-tuned video-level metric on split 1, "
        "and the seconds each run recorded for itself (decoding, training and evaluation).",
        "",
        "| Teacher | Arch | Pretext metric, held-out (chance) | Fine-tuned | Pretraining s | Fine-tuning s | "
        "This command s |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = r["pretext"]
        now = "" if r["pretrained_now"] or r["finetuned_now"] else " (reused)"
        lines.append(f"| {r['task']} | {r['arch']} | {p['name']}: {p['value']:.4g} ({p['chance']:.4g}) | "
                     f"{100 * r['value']:.1f} | {r['pretrain_seconds']:.1f} | {r['finetune_seconds']:.1f} | "
                     f"{r['wall_seconds']:.1f}{now} |")
    reused = " (the others reused)" if s["runs_trained_now"] < s["runs"] else ""
    lines += ["", f"Recorded by the runs: {s['recorded_seconds']:.0f} s ({s['recorded_seconds'] / 60:.1f} min). "
                  f"This command: {s['wall_seconds']:.0f} s wall, {s['runs_trained_now']} of {s['runs']} runs "
                  f"trained now{reused}."]
    if s["budget_seconds"] is not None:
        verdict = "within" if s["within_budget"] else "over"
        lines.append(f"Budget of the {preset} preset: {s['budget_seconds']:.0f} s; the recorded total is {verdict} it.")
    lines += [f"Machine: one fine-tuning step of the {preset} VGG teacher took {s['reference_step_ms']:.1f} ms "
              f"(median, measured before training) with {s['torch_threads']} torch threads on "
              f"{s['cpu_count']} CPUs ({s['processor']}).",
              "",
              f"Made by: `{command}` (code {version}). Runs behind each row are listed in teachers.json."]
    return "\n".join(lines)
