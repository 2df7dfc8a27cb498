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


def paired_difference(a: Cell, b: Cell, n_boot: int = N_BOOT, seed: int = 0) -> Difference:
    """A minus B with its paired-bootstrap interval (module docstring)."""
    if not a.by_seed or not b.by_seed:
        raise ClaimError(f"{a.name if not a.by_seed else b.name}: no runs with saved test predictions")
    seeds_a, seeds_b = sorted(a.by_seed), sorted(b.by_seed)
    video_ids = a.by_seed[seeds_a[0]]["video_ids"]
    ca, cb = _matrix(a, seeds_a, video_ids), _matrix(b, seeds_b, video_ids)
    diff = 100.0 * (ca.mean() - cb.mean())
    rng = np.random.default_rng(seed)
    v = ca.shape[1]
    paired = seeds_a == seeds_b
    reps = np.empty(n_boot)
    for i in range(n_boot):
        vid = rng.integers(0, v, v)
        sa = rng.integers(0, len(seeds_a), len(seeds_a))
        sb = sa if paired else rng.integers(0, len(seeds_b), len(seeds_b))
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
# Claims of the paper's figures the harness does not test yet (they need other runs).
NOT_TESTED = (
    ("G_r makes G_l learn faster (accuracy per epoch)", "Fig. 4a"),
    ("accuracy rises with the volume of unlabeled video", "Fig. 4b"),
)


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


def _paper_diff(claim: Claim, paper: dict[str, dict]) -> float | None:
    if len(claim.than) != 1 or claim.better not in paper or claim.than[0] not in paper:
        return None
    return paper[claim.better]["ucf101"] - paper[claim.than[0]]["ucf101"]


def render_claims(results: list[dict], paper: dict[int, dict], dataset_label: str, command: str, out_dir) -> str:
    """Write ``claims.{md,json}`` under ``out_dir`` and return the markdown."""
    from pathlib import Path

    from harness.atomic import write_text_atomic
    from harness.provenance import code_version, write_json_atomic

    version = code_version()
    lines = ["| Claim | Source | Ours: difference, points (95% interval) | SE | Verdict | Paper (UCF101) |",
             "|---|---|---|---:|---|---:|"]
    ses = []
    for r in results:
        claim = next(c for c in (*TABLE2_CLAIMS, *TABLE1_CLAIMS) if c.text == r["claim"])
        paper_diff = _paper_diff(claim, paper[1 if r["source"] == "Table 1" else 2])
        r["paper_ucf101_difference"] = paper_diff
        ds = r["differences"]
        ses += [d["se"] for d in ds]
        if len(ds) == 1:
            d = ds[0]
            ours, se = f"{d['diff']:+.1f} ({d['lo']:+.1f}, {d['hi']:+.1f})", f"{d['se']:.1f}"
        else:
            worst = min(ds, key=lambda d: d["lo"])
            ours = f"smallest: {worst['diff']:+.1f} ({worst['lo']:+.1f}, {worst['hi']:+.1f}) vs {worst['b']}"
            se = f"{max(d['se'] for d in ds):.1f} (max)"
        paper_cell = "" if paper_diff is None else f"{paper_diff:+.1f}"
        lines.append(f"| {r['claim']} | {r['source']} | {ours} | {se} | **{r['verdict']}** | {paper_cell} |")
    for text, source in NOT_TESTED:
        lines.append(f"| {text} | {source} | not tested by this harness yet | | | |")
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("holds", "fails", "inconclusive")}
    median_se = float(np.median(ses)) if ses else None
    seeds = sorted({s for r in results for d in r["differences"] for s in d["seeds_a"]})
    md = "\n".join([
        f"The paper's claims tested on our runs ({dataset_label}; seeds {', '.join(map(str, seeds))}). "
        "Difference = our seed-mean accuracy of the first method minus the second's; 95% interval and standard "
        f"error from a paired bootstrap over test videos and seeds ({N_BOOT} replicates). holds: the interval is "
        "above 0; fails: below 0; inconclusive: it contains 0. The paper column is the difference printed in the "
        "paper (UCF101), not measured here.",
        "",
        *lines,
        "",
        f"Verdicts: {counts['holds']} hold, {counts['fails']} fail, {counts['inconclusive']} inconclusive. "
        + (f"Median standard error of a paired difference: {median_se:.1f} points." if median_se is not None else ""),
        "",
        f"Made by: `{command}` (code {version}). Runs behind each claim are listed in claims.json.",
    ])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "claims.md", md + "\n")
    write_json_atomic(out_dir / "claims.json", {"command": command, "code_version": version, "dataset": dataset_label,
                                                "n_boot": N_BOOT, "level": LEVEL, "verdicts": counts,
                                                "median_se_points": median_se, "claims": results})
    return md
