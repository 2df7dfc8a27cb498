"""The power table: how well the benchmark separates methods, measured with many seeds.

For each pair of methods that a Table 2 claim compares, the paired standard error of their
difference on the lowest three seeds (what the default tables hold), the error the three-seed
bootstrap projects to all the seeds, and the error, difference, interval and verdict measured
on all of them (``claims.measured_power``). Which runs make the cells is the pipeline's
business; this module reads finished run folders and renders.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from harness.atomic import atomic_file, write_text_atomic
from harness.provenance import code_version, write_json_atomic
from harness.tables.claims import Cell, ClaimError, _correct, measured_power
from harness.tables.render import latex_escape, provenance_lines, run_machines, write_latex

TARGET_SE = 2.0   # points: what the paper's 1-3 point gaps need (docs/DATASET.md, Power)


def _accuracy(cell: Cell) -> list[float]:
    """Per-seed test accuracy in %, in seed order, from the saved predictions (scored as the
    paired differences score them)."""
    return [100.0 * float(_correct(cell.by_seed[s]).mean()) for s in sorted(cell.by_seed)]


def render_power(cells: dict[str, Cell], claims, labels: dict[str, str], dataset_label: str, command: str,
                 out_dir: Path, n_boot: int, from_seeds: int = 3, project_videos: tuple[int, ...] = ()) -> str:
    """Write ``power.{md,csv,json,tex}`` under ``out_dir`` and return the markdown."""
    rows = measured_power(cells, claims, n_boot, from_seeds=from_seeds, project_videos=project_videos)
    if not rows:
        raise ClaimError(f"no claim of the paper compares two of {', '.join(cells)}: nothing to measure")
    n = rows[0]["n_seeds"]
    seeds = sorted(set.intersection(*(set(c.by_seed) for c in cells.values())))
    videos = rows[0]["n_videos"]
    head = ["A", "B", f"{from_seeds} seeds: difference (SE)", f"{n} seeds projected from {from_seeds}: SE",
            f"{n} seeds: difference (95% interval)", f"{n} seeds: SE", "Verdict",
            *(f"{n} seeds x {v} videos, projected SE" for v in project_videos)]
    body = []
    for r in rows:
        body.append([labels.get(r["better"], r["better"]), labels.get(r["than"], r["than"]),
                     f"{r['diff_3']:+.1f} ({r['se_3']:.2f})", f"{r['se_projected_from_3']:.2f}",
                     f"{r['diff_n']:+.1f} ({r['ci_n'][0]:+.1f}, {r['ci_n'][1]:+.1f})", f"{r['se_n']:.2f}",
                     r["verdict_n"], *(f"{r[f'se_n_projected_{v}_videos']:.2f}" for v in project_videos)])
    median = {k: float(np.median([r[k] for r in rows])) for k in ("se_3", "se_projected_from_3", "se_n")}
    met = [r for r in rows if r["se_n"] <= TARGET_SE]
    acc = {m: _accuracy(c) for m, c in cells.items()}
    acc_lines = ["| Method | Mean ± sd, % | Lowest, % | Highest, % |", "|---|---:|---:|---:|"]
    for m, a in acc.items():
        sd = float(np.std(a, ddof=1)) if len(a) > 1 else float("nan")
        acc_lines.append(f"| {labels.get(m, m)} | {np.mean(a):.1f} ± {sd:.1f} | {min(a):.1f} | {max(a):.1f} |")
    version = code_version()
    run_paths = [p for c in cells.values() for p in c.runs]
    machines = run_machines(run_paths)
    md = "\n".join([
        f"Power ({dataset_label}, {videos} test videos): the paired standard error of the difference between two "
        f"methods (bootstrap over test videos and seeds, {n_boot} replicates), on seeds {seeds[0]}-{seeds[-1]} of "
        f"each method with the teachers and the store fixed. The target is {TARGET_SE:g} points or less.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * 4 + "---|" + "---:|" * len(project_videos),
        *("| " + " | ".join(row) + " |" for row in body),
        "",
        f"Median SE: {median['se_3']:.2f} points on {from_seeds} seeds, {median['se_projected_from_3']:.2f} projected "
        f"to {n} from them, {median['se_n']:.2f} measured on {n}. At or under {TARGET_SE:g} points on {n} seeds: "
        f"{len(met)} of {len(rows)} pairs.",
        "",
        f"Test accuracy over the {n} seeds:",
        "",
        *acc_lines,
        "",
        *provenance_lines(command, version, "power.json", "each method", machines),
    ])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "power.md", md + "\n")
    keys = ["better", "than", "diff_3", "se_3", "se_projected_from_3", "diff_n", "se_n", "verdict_n", "n_seeds",
            "from_seeds", "n_videos", *(f"se_n_projected_{v}_videos" for v in project_videos)]
    with atomic_file(out_dir / "power.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*keys, "ci_n_lo", "ci_n_hi"])
        for r in rows:
            writer.writerow([*(r[k] for k in keys), *r["ci_n"]])
    write_latex(out_dir / "power.tex", head, body,
                latex_escape(f"Power on {dataset_label}: paired standard error of a difference (points), "
                             f"{from_seeds} vs {n} seeds. ")
                + f"Made by \\texttt{{{latex_escape(command)}}} (code {latex_escape(version)}).")
    write_json_atomic(out_dir / "power.json", {
        "command": command, "code_version": version, "dataset": dataset_label, "seeds": seeds, "n_videos": videos,
        "machines": machines, "n_boot": n_boot, "target_se_points": TARGET_SE, "median_se": median, "rows": rows,
        "accuracy_per_seed": acc, "runs": {m: c.runs for m, c in cells.items()}})
    return md
