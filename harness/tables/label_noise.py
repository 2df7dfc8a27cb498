"""The weak-supervision table: methods x training-label noise rates, mean ± sd over seeds,
and at each rate the paired difference of the first method against each other one.

Which runs make the cells is the pipeline's business (``pipeline.label_noise_runs``); this
module only reads finished run folders and renders.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.atomic import atomic_file, write_text_atomic
from harness.provenance import code_version, write_json_atomic
from harness.tables.claims import N_BOOT, cells_from_runs, paired_difference
from harness.tables.render import provenance_lines, run_machines, seed_stats, write_latex


def _cell(per_seed: dict[int, float]) -> str:
    mean, sd = seed_stats(per_seed)
    if mean is None:
        return "-"
    return f"{mean:.1f}" if sd is None else f"{mean:.1f} ± {sd:.1f}"


def render_label_noise(runs: dict[tuple[str, float], list], labels: dict[str, str], dataset_label: str,
                       command: str, out_dir: Path) -> str:
    """Write ``label_noise.{md,csv,json,tex}`` under ``out_dir`` from ``{(method, rate): [RunDir
    per seed]}`` and return the markdown. ``labels``: the methods' display names."""
    methods = list(dict.fromkeys(m for m, _ in runs))
    rates = sorted({r for _, r in runs})
    values = {key: {int(run.final()["seed"]): 100.0 * run.final()["value"] for run in seed_runs}
              for key, seed_runs in runs.items()}
    header = ["Method", *(f"noise {100 * r:.0f}%" for r in rates)]
    body = [[labels[m], *(_cell(values.get((m, r), {})) for r in rates)] for m in methods]
    cells = cells_from_runs({f"{m}@{r}": seed_runs for (m, r), seed_runs in runs.items()})
    first, others = methods[0], methods[1:]
    diffs = []
    for r in rates:
        for other in others:
            d = paired_difference(cells[f"{first}@{r}"], cells[f"{other}@{r}"])
            diffs.append({"rate": r, "a": first, "b": other, "diff": d.diff, "lo": d.lo, "hi": d.hi, "se": d.se,
                          "verdict": d.verdict, "seeds": d.seeds_a, "n_videos": d.n_videos})
    seeds = sorted({s for v in values.values() for s in v})
    d_lines = ["| Noise | Comparison | Difference, points (95% interval) | SE | Verdict |", "|---|---|---|---:|---|"]
    for d in diffs:
        d_lines.append(f"| {100 * d['rate']:.0f}% | {labels[d['a']]} minus {labels[d['b']]} | {d['diff']:+.1f} "
                       f"({d['lo']:+.1f}, {d['hi']:+.1f}) | {d['se']:.1f} | **{d['verdict']}** |")
    version = code_version()
    machines = run_machines([str(run.path) for rs in runs.values() for run in rs])
    md = "\n".join([
        f"Weak supervision ({dataset_label}): test accuracy (%) with a share of the student's training labels "
        "replaced by another class at random (seeded per video; the same corruption for every method of a seed; "
        "test labels, teachers and store untouched). Mean ± standard deviation over seeds "
        f"{', '.join(map(str, seeds))}. Not a table of the paper.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(rates),
        *("| " + " | ".join(row) + " |" for row in body),
        "",
        f"Paired differences (bootstrap over test videos and seeds, {N_BOOT} replicates; holds: the 95% interval "
        "is above 0, fails: below 0, inconclusive: it contains 0):",
        "",
        *d_lines,
        "",
        *provenance_lines(command, version, "label_noise.json", "each cell", machines),
    ])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "label_noise.md", md + "\n")
    with atomic_file(out_dir / "label_noise.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "rate", "mean", "std", "n_seeds"])
        for (m, r), v in values.items():
            mean, sd = seed_stats(v)
            writer.writerow([m, r, mean, sd, len(v)])
    write_latex(out_dir / "label_noise.tex", header, body,
                f"Weak supervision on {dataset_label}: accuracy (\\%) vs training-label noise, mean $\\pm$ sd over "
                f"seeds {', '.join(map(str, seeds))}.")
    write_json_atomic(out_dir / "label_noise.json", {
        "command": command, "code_version": version, "dataset": dataset_label, "seeds": seeds, "machines": machines,
        "rates": rates, "methods": methods,
        "cells": [{"method": m, "rate": r, "per_seed": {str(k): v for k, v in sorted(values[(m, r)].items())},
                   "mean": seed_stats(values[(m, r)])[0], "std": seed_stats(values[(m, r)])[1],
                   "runs": [str(run.path) for run in runs[(m, r)]]} for (m, r) in runs],
        "differences": diffs})
    return md
