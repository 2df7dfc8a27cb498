"""The paper's claims, each tested on our runs: a paired difference with a 95% interval and
a verdict.

Every trained cell is several runs (seeds) that each saved their video-level test scores
(``predictions.npz``; the same test videos in the same order for every run on a split). A
claim "A beats B" is judged on the difference of the seed-mean metrics, A minus B, in points.
Its interval comes from a paired bootstrap: each replicate draws the test videos with
replacement (the same videos for A and B) and the seeds with replacement (the same seeds for
A and B when both were trained with them), and recomputes the difference. The verdict is
**holds** when the whole 95% interval is above 0, **fails** when it is below 0, and
**inconclusive** otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.errors import HarnessError

N_BOOT = 10_000
LEVEL = 0.95


class ClaimError(HarnessError):
    """Runs that cannot be compared (no saved predictions, other test videos)."""


@dataclass
class Cell:
    """One trained cell: its runs' test predictions by seed."""

    name: str
    by_seed: dict[int, dict[str, np.ndarray]]   # seed -> {"scores", "targets", "video_ids"}
    runs: list[str] = field(default_factory=list)


def _correct(pred: dict[str, np.ndarray]) -> np.ndarray:
    """Per-video 0/1 correctness (single-label: arg-max equals the label)."""
    targets = pred["targets"]
    if targets.ndim != 1:
        raise ClaimError("paired intervals are implemented for single-label accuracy; multi-label (mAP) is not")
    return (pred["scores"].argmax(1) == targets).astype(np.float64)


def _matrix(cell: Cell, seeds: list[int], video_ids: np.ndarray) -> np.ndarray:
    """(len(seeds), V) correctness of ``cell`` on ``video_ids``."""
    rows = []
    for s in seeds:
        pred = cell.by_seed[s]
        if not np.array_equal(pred["video_ids"], video_ids):
            raise ClaimError(f"{cell.name} (seed {s}): its test videos differ from the other runs' (another split?)")
        rows.append(_correct(pred))
    return np.stack(rows)


@dataclass
class Difference:
    a: str
    b: str
    diff: float          # seed-mean metric of a minus b, in points
    lo: float            # 95% interval, points
    hi: float
    se: float            # bootstrap standard error, points
    seeds_a: list[int]
    seeds_b: list[int]
    paired_seeds: bool
    n_videos: int

    @property
    def verdict(self) -> str:
        return "holds" if self.lo > 0 else "fails" if self.hi < 0 else "inconclusive"


def paired_difference(a: Cell, b: Cell, n_boot: int = N_BOOT, seed: int = 0, n_seeds: int | None = None,
                      n_videos: int | None = None) -> Difference:
    """A minus B with its paired-bootstrap interval (module docstring).

    ``n_seeds`` / ``n_videos``: draw that many seeds / videos per replicate instead of as many
    as were run, which projects the standard error to a benchmark of that size under the
    observed spread (``projected_se``); the difference itself is always the observed one."""
    if not a.by_seed or not b.by_seed:
        raise ClaimError(f"{a.name if not a.by_seed else b.name}: no runs with saved test predictions")
    seeds_a, seeds_b = sorted(a.by_seed), sorted(b.by_seed)
    video_ids = a.by_seed[seeds_a[0]]["video_ids"]
    ca, cb = _matrix(a, seeds_a, video_ids), _matrix(b, seeds_b, video_ids)
    diff = 100.0 * (ca.mean() - cb.mean())
    rng = np.random.default_rng(seed)
    v = ca.shape[1]
    paired = seeds_a == seeds_b
    draw_v = n_videos or v
    draw_a, draw_b = n_seeds or len(seeds_a), n_seeds or len(seeds_b)
    reps = np.empty(n_boot)
    for i in range(n_boot):
        vid = rng.integers(0, v, draw_v)
        sa = rng.integers(0, len(seeds_a), draw_a)
        sb = sa if paired else rng.integers(0, len(seeds_b), draw_b)
        reps[i] = ca[np.ix_(sa, vid)].mean() - cb[np.ix_(sb, vid)].mean()
    reps *= 100.0
    tail = (1.0 - LEVEL) / 2
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    return Difference(a.name, b.name, float(diff), float(lo), float(hi), float(reps.std(ddof=1)), seeds_a, seeds_b,
                      paired, v)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``better`` beats each of ``than`` (all of them for "best")."""

    text: str
    source: str                       # where the paper makes it
    better: str
    than: tuple[str, ...]


GRAPH_METHODS = ("mmgd", "gl", "gr", "mmgd+gr", "gl+gr")
TABLE2_CLAIMS = (
    *(Claim(f"{m} beats {b}", "Table 2", m, (b,)) for m in GRAPH_METHODS for b in ("fusion", "ensemble", "kd")),
    Claim("G_l beats MMGD (the EM logits graph over the cosine one)", "Table 2", "gl", ("mmgd",)),
    Claim("G_r beats uniform feature distillation", "Table 2", "gr", ("feat",)),
    Claim("G_l+G_r beats MMGD+G_r", "Table 2", "gl+gr", ("mmgd+gr",)),
    Claim("G_l+G_r is the best row of Table 2", "Table 2", "gl+gr",
          ("fusion", "ensemble", "kd", "mmgd", "gl", "feat", "gr", "mmgd+gr")),
)
TABLE1_CLAIMS = (
    *(Claim(f"G_l+G_r beats {row}", "Table 1", "gl+gr", (row,))
      for row in ("track", "shuffle", "pose", "sort", "oddoneout", "alexnet_pre")),
)
# Fig. 4a: adding G_r makes a logits-graph student learn faster (curve claims, below).
CURVE_CLAIMS = (
    Claim("G_r makes G_l learn faster (early test accuracy)", "Fig. 4a", "gl+gr", ("gl",)),
    Claim("G_r makes MMGD learn faster (early test accuracy)", "Fig. 4a", "mmgd+gr", ("mmgd",)),
)
VOLUME_CLAIM = "accuracy rises with the volume of unlabeled video"


def judge_volume(cells: dict[int, Cell]) -> dict:
    """Fig. 4b's claim from ``{number of unlabeled videos: Cell}`` (the distilled student per
    volume): the verdict is the paired difference of the largest volume minus the smallest;
    each step between neighbouring volumes is reported beside it."""
    if len(cells) < 2:
        raise ClaimError(f"Fig. 4b needs at least two volumes of unlabeled video, got {len(cells)}")
    sizes = sorted(cells)
    whole = paired_difference(cells[sizes[-1]], cells[sizes[0]])
    steps = [paired_difference(cells[b], cells[a]) for a, b in zip(sizes, sizes[1:])]
    return {"claim": VOLUME_CLAIM, "source": "Fig. 4b", "better": str(sizes[-1]), "than": [str(sizes[0])],
            "verdict": whole.verdict, "statistic": "largest minus smallest volume, paired bootstrap",
            "volumes": sizes, "differences": [whole.__dict__ | {"verdict": whole.verdict}],
            "steps": [d.__dict__ | {"verdict": d.verdict} for d in steps]}


def early_accuracy(curve: list[float]) -> float:
    """Mean test accuracy (points) over the first half of the epochs (at least one): "learns
    faster" read as higher accuracy early in training, what Fig. 4a's curves show."""
    n = max(1, len(curve) // 2)
    return 100.0 * float(np.mean(curve[:n]))


def curve_difference(a: dict[int, list[float]], b: dict[int, list[float]], name_a: str = "a",
                     name_b: str = "b") -> Difference:
    """``early_accuracy`` of A minus B, paired over the seeds both were trained with, with a
    Student-t 95% interval over those seeds (per-epoch scores are kept per run, not per video,
    so seeds are the only unit to resample; one seed gives no interval: inconclusive)."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ClaimError(f"{name_a} and {name_b}: no seed with test accuracy per epoch in both")
    d = np.array([early_accuracy(a[s]) - early_accuracy(b[s]) for s in seeds])
    mean = float(d.mean())
    if len(d) < 2:
        lo, hi, se = -np.inf, np.inf, float("nan")
    else:
        se = float(d.std(ddof=1) / np.sqrt(len(d)))
        half = float(stats.t.ppf(0.5 + LEVEL / 2, len(d) - 1)) * se
        lo, hi = mean - half, mean + half
    return Difference(name_a, name_b, mean, float(lo), float(hi), se, seeds, seeds, True, 0)


def judge_curve(claim: Claim, curves: dict[str, dict[int, list[float]]]) -> dict:
    """A curve claim's difference and verdict (one opponent)."""
    d = curve_difference(curves[claim.better], curves[claim.than[0]], claim.better, claim.than[0])
    return {"claim": claim.text, "source": claim.source, "better": claim.better, "than": list(claim.than),
            "verdict": d.verdict, "statistic": "early test accuracy, paired t over seeds",
            "differences": [d.__dict__ | {"verdict": d.verdict}]}


def curves_from_runs(runs: dict[str, list]) -> dict[str, dict[int, list[float]]]:
    """``{key: {seed: test accuracy per epoch}}`` from the runs' epoch rows."""
    return {key: {int(run.final()["seed"]): [r["test_value"] for r in run.rows() if "test_value" in r]
                  for run in seed_runs} for key, seed_runs in runs.items()}


def judge(claim: Claim, cells: dict[str, Cell], n_boot: int = N_BOOT) -> dict:
    """The claim's differences and verdict: for several opponents it holds when every
    difference holds, fails when any fails, and is inconclusive otherwise."""
    diffs = [paired_difference(cells[claim.better], cells[b], n_boot) for b in claim.than]
    verdicts = {d.verdict for d in diffs}
    verdict = "fails" if "fails" in verdicts else "holds" if verdicts == {"holds"} else "inconclusive"
    return {"claim": claim.text, "source": claim.source, "better": claim.better, "than": list(claim.than),
            "verdict": verdict, "differences": [d.__dict__ | {"verdict": d.verdict} for d in diffs]}


def cells_from_runs(runs: dict[str, list]) -> dict[str, Cell]:
    """``{key: Cell}`` from ``{key: [finished RunDir per seed]}`` (what the pipeline's table
    plans return); runs without saved predictions are left out of their cell."""
    from harness.data.frames import load_predictions

    cells = {}
    for key, seed_runs in runs.items():
        by_seed = {}
        for run in seed_runs:
            pred = load_predictions(run.path)
            if pred is not None:
                by_seed[int(run.final()["seed"])] = pred
        cells[key] = Cell(key, by_seed, [str(r.path) for r in seed_runs])
    return cells


def claim_pairs(cells: dict[str, Cell], claims) -> list[tuple[Cell, Cell]]:
    """Every (better, opponent) pair of cells the ``claims`` compare."""
    return [(cells[c.better], cells[b]) for c in claims for b in c.than]


def projected_se(pairs: list[tuple[Cell, Cell]], sizes: list[tuple[int, int]], n_boot: int = 1000) -> list[dict]:
    """The median and largest paired standard error over ``pairs`` (``claim_pairs``) if each cell
    had been run with ``n_seeds`` seeds on ``n_videos`` test videos, for each ``(n_seeds,
    n_videos)`` of ``sizes``: the bootstrap of ``paired_difference`` drawing that many of each.
    It assumes new videos and seeds spread as the observed ones do; it measures nothing new."""
    out = []
    for n_seeds, n_videos in sizes:
        ses = [paired_difference(a, b, n_boot, n_seeds=n_seeds, n_videos=n_videos).se for a, b in pairs]
        out.append({"n_seeds": n_seeds, "n_videos": n_videos, "median_se_points": float(np.median(ses)),
                    "max_se_points": float(np.max(ses)), "n_differences": len(ses)})
    return out


def first_seeds(cell: Cell, k: int) -> Cell:
    """``cell`` restricted to its ``k`` lowest seeds (what a ``k``-seed table would have held)."""
    keep = sorted(cell.by_seed)[:k]
    return Cell(cell.name, {s: cell.by_seed[s] for s in keep}, cell.runs[:k])


def measured_power(cells: dict[str, Cell], claims, n_boot: int = N_BOOT, from_seeds: int = 3,
                   project_videos: tuple[int, ...] = ()) -> list[dict]:
    """Power measured on cells with many seeds, beside what ``from_seeds`` of them projected.

    For every (better, opponent) pair of ``claims`` whose cells are both present (each pair
    once, in the claims' order): the difference and standard error on the ``from_seeds`` lowest
    seeds; the error ``projected_se`` draws from those seeds at the cells' full seed count; the
    difference, interval, verdict and error on all seeds; and the all-seed error projected to
    each of ``project_videos`` test videos. A projection that resamples three observed seeds
    cannot show how much per-video noise more seeds average out; the full measurement can."""
    pairs = list(dict.fromkeys((c.better, b) for c in claims for b in c.than if c.better in cells and b in cells))
    rows = []
    for a, b in pairs:
        ca, cb = cells[a], cells[b]
        n_seeds = min(len(ca.by_seed), len(cb.by_seed))
        few_a, few_b = first_seeds(ca, from_seeds), first_seeds(cb, from_seeds)
        few = paired_difference(few_a, few_b, n_boot)
        projected = paired_difference(few_a, few_b, n_boot, n_seeds=n_seeds)
        full = paired_difference(ca, cb, n_boot)
        row = {"better": a, "than": b, "diff_3": few.diff, "se_3": few.se, "se_projected_from_3": projected.se,
               "diff_n": full.diff, "se_n": full.se, "ci_n": [full.lo, full.hi], "verdict_n": full.verdict,
               "n_seeds": n_seeds, "from_seeds": from_seeds, "n_videos": full.n_videos}
        for v in project_videos:
            row[f"se_n_projected_{v}_videos"] = paired_difference(ca, cb, n_boot, n_videos=v).se
        rows.append(row)
    return rows


def _paper_diff(claim: Claim, paper: dict[str, dict]) -> float | None:
    if len(claim.than) != 1 or claim.better not in paper or claim.than[0] not in paper:
        return None
    return paper[claim.better]["ucf101"] - paper[claim.than[0]]["ucf101"]


def power_sizes(n_seeds: int, n_videos: int) -> list[tuple[int, int]]:
    """The benchmark sizes ``harness claims --power`` projects to: today's, more videos, more seeds."""
    grid = [(n_seeds, n_videos * k) for k in (1, 3, 5, 10)] + [(5, 5 * n_videos), (10, 5 * n_videos),
                                                              (10, 10 * n_videos)]
    return list(dict.fromkeys(grid))


def _power_lines(power: list[dict] | None) -> list[str]:
    if not power:
        return []
    lines = ["", "Power: the median (and largest) paired standard error over the differences above if every cell had "
             "been run with more seeds or on more test videos, projected by the same bootstrap drawing that many "
             "of each under the observed spread (an estimate, not a measurement):", "",
             "| Seeds | Test videos | Median SE, points | Largest SE, points |", "|---:|---:|---:|---:|"]
    lines += [f"| {p['n_seeds']} | {p['n_videos']} | {p['median_se_points']:.2f} | {p['max_se_points']:.2f} |"
              for p in power]
    return lines


def render_claims(results: list[dict], paper: dict[int, dict], dataset_label: str, command: str, out_dir,
                  power: list[dict] | None = None, untested: list[tuple[str, str, str]] = ()) -> str:
    """Write ``claims.{md,json,tex}`` under ``out_dir`` and return the markdown; ``power``: the
    rows of ``projected_se``, shown when given; ``untested``: ``(claim, source, why)`` of the
    claims that could not be judged, listed with the reason."""
    from pathlib import Path

    from harness.atomic import write_text_atomic
    from harness.provenance import code_version, write_json_atomic
    from harness.tables.render import latex_escape, write_latex

    version = code_version()
    lines = ["| Claim | Source | Ours: difference, points (95% interval) | SE | Verdict | Paper (UCF101) |",
             "|---|---|---|---:|---|---:|"]
    ses, tex_rows = [], []
    for r in results:
        claim = next((c for c in (*TABLE2_CLAIMS, *TABLE1_CLAIMS) if c.text == r["claim"]), None)
        paper_diff = _paper_diff(claim, paper[1 if r["source"] == "Table 1" else 2]) if claim else None
        r["paper_ucf101_difference"] = paper_diff
        ds = r["differences"]
        ses += [d["se"] for d in ds if r["source"].startswith("Table")]   # the power figure: the tables' pairs
        if len(ds) == 1:
            d = ds[0]
            ours, se = f"{d['diff']:+.1f} ({d['lo']:+.1f}, {d['hi']:+.1f})", f"{d['se']:.1f}"
        else:
            worst = min(ds, key=lambda d: d["lo"])
            ours = f"smallest: {worst['diff']:+.1f} ({worst['lo']:+.1f}, {worst['hi']:+.1f}) vs {worst['b']}"
            se = f"{max(d['se'] for d in ds):.1f} (max)"
        paper_cell = "" if paper_diff is None else f"{paper_diff:+.1f}"
        lines.append(f"| {r['claim']} | {r['source']} | {ours} | {se} | **{r['verdict']}** | {paper_cell} |")
        tex_rows.append([r["claim"], r["source"], ours, se, r["verdict"], paper_cell])
    untested = list(untested)
    if not any(r["claim"] == VOLUME_CLAIM for r in results) and not any(u[0] == VOLUME_CLAIM for u in untested):
        untested.append((VOLUME_CLAIM, "Fig. 4b", "not tested in this table: `harness claims --volumes` trains its runs"))
    for text, source, why in untested:
        lines.append(f"| {text} | {source} | {why} | | **not tested** | |")
        tex_rows.append([text, source, why, "", "not tested", ""])
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("holds", "fails", "inconclusive")}
    median_se = float(np.median(ses)) if ses else None
    seeds = sorted({s for r in results for d in r["differences"] for s in d["seeds_a"]})
    md = "\n".join([
        f"The paper's claims tested on our runs ({dataset_label}; seeds {', '.join(map(str, seeds))}). "
        "Difference = our seed-mean accuracy of the first method minus the second's; 95% interval and standard "
        f"error from a paired bootstrap over test videos and seeds ({N_BOOT} replicates). Fig. 4a rows: the "
        "difference in early test accuracy (mean over the first half of the epochs), with a paired t interval "
        "over seeds. Fig. 4b: the student distilled from teachers pretrained on the most unlabeled video minus "
        "the one from the least (paired bootstrap). holds: the interval is above 0; fails: below 0; "
        "inconclusive: it contains 0. The paper "
        "column is the difference printed in the paper (UCF101), not measured here.",
        "",
        *lines,
        "",
        f"Verdicts: {counts['holds']} hold, {counts['fails']} fail, {counts['inconclusive']} inconclusive. "
        + (f"Median standard error of a paired difference: {median_se:.1f} points." if median_se is not None else ""),
        *_power_lines(power),
        "",
        f"Made by: `{command}` (code {version}). Runs behind each claim are listed in claims.json.",
    ])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "claims.md", md + "\n")
    write_latex(out_dir / "claims.tex", ["Claim", "Source", "Ours: difference (95% interval)", "SE", "Verdict",
                                         "Paper (UCF101)"], tex_rows,
                latex_escape(f"The paper's claims tested on our runs ({dataset_label}): paired bootstrap over test "
                             f"videos and seeds ({N_BOOT} replicates). ")
                + f"Made by \\texttt{{{latex_escape(command)}}} (code {latex_escape(version)}).")
    write_json_atomic(out_dir / "claims.json", {"command": command, "code_version": version, "dataset": dataset_label,
                                                "n_boot": N_BOOT, "level": LEVEL, "verdicts": counts,
                                                "median_se_points": median_se, "power": power,
                                                "untested": [{"claim": t, "source": src, "why": w}
                                                             for t, src, w in untested],
                                                "claims": results})
    return md
