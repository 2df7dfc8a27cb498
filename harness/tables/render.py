"""Paper-vs-reproduction tables.

The paper's numbers come from ``paper_table{1,2}.csv`` (package data beside this module;
``tables/`` in the checkout links to them) and are always labelled as the paper's. Our numbers come only from finished run folders (``final.json``); a row whose run is
missing shows ``-`` rather than anything borrowed. Every generated table names the command
that produced it and the runs behind each number.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.atomic import atomic_file, write_text_atomic
from harness.provenance import code_version, machine_summary, write_json_atomic

PAPER_DIR = Path(__file__).resolve().parent
PAPER_DATASETS = ("ucf101", "hmdb51", "ccv")


def run_machines(run_paths) -> list[str]:
    """The distinct machines (``machine_summary``) recorded in the runs' ``run.json``; runs made
    before the harness recorded them count as "not recorded"."""
    seen = []
    for path in run_paths:
        try:
            env = json.loads((Path(path) / "run.json").read_text()).get("environment", {})
        except (OSError, ValueError):
            env = {}
        numerics = env.get("numerics")
        label = numerics.get("summary") or machine_summary(numerics) if numerics else "not recorded"
        if label not in seen:
            seen.append(label)
    return seen or ["not recorded"]


def provenance_lines(command: str, version: str, json_name: str, behind: str, machines: list[str]) -> list[str]:
    """A generated table's closing lines: the command and code version that made it, where the
    runs behind ``behind`` (e.g. "each number") are listed, and the machines that computed them."""
    return [f"Made by: `{command}` (code {version}). Runs behind {behind} are listed in {json_name}.", "",
            f"Machine{'s' if len(machines) > 1 else ''} that computed the runs: {'; '.join(machines)}."]


def paper_numbers(table: int) -> dict[str, dict]:
    """``{row_key: {"label": ..., "ucf101": float, "hmdb51": float, "ccv": float}}``."""
    path = PAPER_DIR / f"paper_table{table}.csv"
    with open(path) as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    key = "row" if "row" in rows[0] else "method"
    out = {}
    for row in rows:
        out[row[key]] = {"label": row.get("method") if key == "row" else row["label"],
                         **{d: float(row[d]) for d in PAPER_DATASETS}}
    return out


@dataclass
class MeasuredRow:
    key: str
    label: str
    value: float | None          # our metric in %, the mean over seeds; None when the runs are missing
    metric: str                  # "acc" or "mAP"
    runs: list[str] = field(default_factory=list)
    per_seed: dict[int, float] = field(default_factory=dict)   # {seed: metric in %} behind value
    note: str = ""
    # Table 1's single-task rows: the held-out pretext metric of the pretraining run behind the
    # row, {"name", "value", "chance", "at_init", "higher_is_better"} (its final.json); for
    # AlexNet_pre the held-out accuracy of its supervised stage (at_init None)
    pretext: dict | None = None


def _pretext_cell(p: dict | None) -> str:
    if not p:
        return ""
    better = "higher" if p["higher_is_better"] else "lower"
    base = f", {p['baseline_note'].split(' (')[0]} {p['baseline']:.4g}" if p.get("baseline") is not None else ""
    init = f", at init {p['at_init']:.4g}" if p.get("at_init") is not None else ""
    return f"{p['name']}: {p['value']:.4g} (chance {p['chance']:.4g}{base}{init}; {better} is better)"


def seed_stats(per_seed: dict[int, float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; None for one seed) of the per-seed values."""
    values = list(per_seed.values())
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "−": "-"}


def latex_escape(text: str) -> str:
    """``text`` as LaTeX source: the special characters escaped, ± as ``$\\pm$``."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def write_latex(path: Path, header: list[str], rows: list[list[str]], caption: str) -> None:
    """A booktabs ``table`` (first column left-aligned, the others right) with ``caption``
    (already LaTeX); cells are escaped here."""
    spec = "l" + "r" * (len(header) - 1)
    lines = [r"\begin{table}[t]", r"\centering", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule",
             *(" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows),
             r"\bottomrule", r"\end{tabular}", f"\\caption{{{caption}}}", r"\end{table}"]
    write_text_atomic(path, "\n".join(lines) + "\n")


def _ours_cell(row: MeasuredRow, std: float | None) -> str:
    if row.value is None:
        return "-"
    return f"{row.value:.1f}" if std is None else f"{row.value:.1f} ± {std:.1f}"


def render(table: int, rows: list[MeasuredRow], dataset_label: str, command: str, out_dir: Path,
           strict: bool = False) -> str:
    """Write ``table{N}.md/.csv/.json/.tex`` under ``out_dir`` and return the markdown.
    ``strict``: each seed's runs come from that seed's own teachers (the footer says so)."""
    paper = paper_numbers(table)
    with_pretext = any(row.pretext for row in rows)
    extra = (" Ours: pretraining metric, held-out |", "---|") if with_pretext else ("", "")
    header = (f"| Method | Ours: {dataset_label} | Paper UCF101 | Paper HMDB51 | Paper CCV |{extra[0]} Notes |\n"
              f"|---|---:|---:|---:|---:|{extra[1]}---|")
    lines = [header]
    records, tex_rows = [], []
    for row in rows:
        ref = paper.get(row.key, {})
        _, std = seed_stats(row.per_seed)
        ours = _ours_cell(row, std)
        refs = [f"{ref[d]:.1f}" if d in ref else "" for d in PAPER_DATASETS]
        cell = f" {_pretext_cell(row.pretext)} |" if with_pretext else ""
        lines.append(f"| {row.label} | {ours} | {' | '.join(refs)} |{cell} {row.note} |")
        tex_rows.append([row.label, ours, *refs])
        records.append({"key": row.key, "label": row.label, "ours": row.value, "ours_std": std,
                        "seeds": sorted(row.per_seed), "per_seed": {str(k): v for k, v in sorted(row.per_seed.items())},
                        "metric": row.metric,
                        "runs": row.runs, "note": row.note, "pretext": row.pretext,
                        "paper": {d: ref.get(d) for d in PAPER_DATASETS}})
    version = code_version()  # one stamp for the markdown and the JSON
    seeds = sorted({s for row in rows for s in row.per_seed})
    scope = ("each seed with its own pretraining, teachers and store" if strict else
             "each a separate fine-tuning or distillation run; teachers and store fixed")
    spread = (f" Ours: mean ± standard deviation over seeds {', '.join(map(str, seeds))} ({scope})." if len(seeds) > 1 else
              f" Ours: one seed ({seeds[0]})." if seeds else "")
    machines = run_machines([run for row in rows for run in row.runs])
    md = "\n".join([
        f"Table {table}: ours measured by this harness on {dataset_label}; paper columns are the "
        "numbers printed in Zhang & Peng (IJCAI 2018), not measured here." + spread,
        "",
        *lines,
        "",
        *provenance_lines(command, version, f"table{table}.json", "each number", machines),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"table{table}.md", md + "\n")
    with atomic_file(out_dir / f"table{table}.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "label", "ours", "ours_std", "n_seeds", "metric", *(f"paper_{d}" for d in PAPER_DATASETS)])
        for r in records:
            writer.writerow([r["key"], r["label"], r["ours"], r["ours_std"], len(r["seeds"]), r["metric"],
                             *(r["paper"][d] for d in PAPER_DATASETS)])
    write_latex(out_dir / f"table{table}.tex", ["Method", f"Ours: {dataset_label}", "Paper UCF101", "Paper HMDB51",
                                                 "Paper CCV"], tex_rows,
                latex_escape(f"Table {table}: ours measured by this harness ({'; '.join(machines)});{spread} "
                             "Paper columns: the numbers printed in Zhang & Peng (IJCAI 2018). ")
                + f"Made by \\texttt{{{latex_escape(command)}}} (code {latex_escape(version)}).")
    write_json_atomic(out_dir / f"table{table}.json",
                      {"table": table, "dataset": dataset_label, "command": command, "seeds": seeds,
                       "seeds_retrain_teachers": strict,
                       "code_version": version, "machines": machines, "rows": records})
    return md
