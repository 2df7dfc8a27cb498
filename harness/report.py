"""Each generated artifact as one call (runs made or reused by the pipeline, then rendered by
harness.tables), and ``make_report``: all of them and a short REPORT.md.

The CLI's table commands call these functions, so ``harness report`` writes exactly what
``harness table1``, ``table2``, ``claims``, ``figures``, ``label-noise`` and ``teachers`` write.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError


@dataclass
class Request:
    """What every artifact is made from: the preset, the seeds, the store and data, and the
    command line that asked (printed as "Made by")."""

    preset: str
    seeds: list[int]
    store: str | None = None
    data_root: str | None = None
    command: str = ""
    progress: bool = True
    strict: bool = False      # each seed with its own pretraining, teachers and store
    dataset: str = "synth"    # synth | ucf101 | hmdb51 | ccv
    split: int | str = 1      # the official train/test split, or "all" (the mean over the three)
    pretrained_weights: str | None = None   # ImageNet AlexNet weights for AlexNet_pre on real data
    volumes: bool = False     # also Fig. 4b: the student per volume of unlabeled video (trains 2 teacher sets)
    # runs already gathered by an earlier artifact of the same report (so the plan runs once)
    cache: dict = field(default_factory=dict)

    def one_split(self) -> "Request":
        """What the per-split artifacts (the teachers' table, the figures) are drawn from: split 1
        when the tables average every split, else this request."""
        return self if self.split != "all" else dataclasses.replace(self, split=1, cache={})

    @property
    def out(self) -> Path:
        from harness.tables.tables import GENERATED

        return GENERATED / self.preset


def _table2_methods() -> list[str]:
    from harness.distill.methods import METHODS

    return [m for m, spec in METHODS.items() if spec.table2]


def table1_runs(req: Request) -> dict:
    from harness import pipeline

    if "table1" not in req.cache:
        req.cache["table1"] = pipeline.table1_runs(req.preset, req.seeds, req.data_root, store=req.store,
                                                   progress=req.progress, strict=req.strict, dataset=req.dataset,
                                                   split=req.split, pretrained_weights=req.pretrained_weights)
    return req.cache["table1"]


def table2_runs(req: Request, methods: list[str] | None = None) -> dict:
    from harness import pipeline

    methods = methods or _table2_methods()
    have = req.cache.setdefault("table2", {})
    missing = [m for m in methods if m not in have]
    if missing:
        have.update(pipeline.table2_runs(missing, req.preset, req.seeds, store=req.store, data_root=req.data_root,
                                         progress=req.progress, strict=req.strict, dataset=req.dataset,
                                         split=req.split))
    return {m: have[m] for m in methods}


def volume_runs(req: Request) -> dict:
    from harness import pipeline

    if "volumes" not in req.cache:
        if req.dataset != "synth":
            raise HarnessError(f"Fig. 4b's volumes are shares of the synthetic set's unlabeled.txt; with --dataset "
                               f"{req.dataset} leave out --volumes (or --skip volumes)")
        req.cache["volumes"] = pipeline.volume_runs(req.preset, req.seeds, data_root=req.data_root,
                                                    progress=req.progress)
    return req.cache["volumes"]


def table1(req: Request) -> str:
    from harness.tables.tables import render_table1

    from harness import pipeline

    return render_table1(table1_runs(req), req.command, req.out, req.strict,
                         pipeline.table1_missing(req.dataset, req.pretrained_weights))


def table2(req: Request, methods: list[str] | None = None) -> str:
    """Table 2 (every method with ``table2``), or one row of it (``harness ablation``)."""
    from harness.tables.tables import render_table2, table2_dir

    from harness import pipeline

    methods = methods or _table2_methods()
    return render_table2(table2_runs(req, methods), req.command, table2_dir(req.preset, methods), req.strict,
                         pipeline.table2_missing(methods, req.dataset))


def claims(req: Request, power: bool = False) -> str:
    """The claims table; ``power`` adds the paired error projected to larger benchmarks."""
    from harness.tables.claims import (CURVE_CLAIMS, TABLE1_CLAIMS, TABLE2_CLAIMS, cells_from_runs, curves_from_runs,
                                       VOLUME_CLAIM, claim_pairs, judge, judge_curve, judge_volume,
                                       power_sizes, projected_se, render_claims)
    from harness.tables.render import paper_numbers
    from harness.tables.tables import dataset_label

    t2, t1 = table2_runs(req), table1_runs(req)
    c2, c1 = cells_from_runs(t2), cells_from_runs(t1)
    curves = curves_from_runs(t2)
    results, untested = [], []
    for claim in TABLE2_CLAIMS:
        _judged(lambda: judge(claim, c2), claim.text, claim.source, results, untested)
    for claim in TABLE1_CLAIMS:
        _judged(lambda: judge(claim, c1), claim.text, claim.source, results, untested)
    for claim in CURVE_CLAIMS:
        _judged(lambda: judge_curve(claim, curves), claim.text, claim.source, results, untested)
    if req.volumes:
        _judged(lambda: judge_volume(cells_from_runs(volume_runs(req))), VOLUME_CLAIM, "Fig. 4b", results, untested)
    label = dataset_label([r for rs in (*t1.values(), *t2.values()) for r in rs])
    projected = None
    if power and results:
        first = next(iter(c2.values())).by_seed
        sizes = power_sizes(len(req.seeds), len(next(iter(first.values()))["video_ids"]))
        judged = {r["claim"] for r in results}
        projected = projected_se(claim_pairs(c2, [c for c in TABLE2_CLAIMS if c.text in judged])
                                 + claim_pairs(c1, [c for c in TABLE1_CLAIMS if c.text in judged]), sizes)
    return render_claims(results, {1: paper_numbers(1), 2: paper_numbers(2)}, label, req.command, req.out,
                         projected, untested)


def _judged(make, text: str, source: str, results: list, untested: list) -> None:
    """``make()``'s verdict into ``results``, or the claim with the reason it cannot be judged
    (a missing row such as AlexNet_pre without weights; mAP on CCV) into ``untested``."""
    from harness.tables.claims import ClaimError

    try:
        results.append(make())
    except ClaimError as exc:
        untested.append((text, source, str(exc)))


def figures(req: Request) -> str:
    """Fig. 4a, Fig. 3 and the graph weights from the runs behind Table 2 (on split 1 when the
    tables average every split: a figure shows one model per cell); the written paths."""
    req = req.one_split()
    from harness import pipeline
    from harness.cache.store import FeatureStore
    from harness.checkpoints import load_checkpoint, load_verified
    from harness.distill.methods import METHODS
    from harness.tables.figures import fig3_conv1, fig4a_curves, fig4b_volume, graph_weights

    runs = table2_runs(req, ["gl", "gl+gr", "mmgd", "mmgd+gr"])
    out = req.out / "figures"
    written = fig4a_curves(runs, {m: METHODS[m].label for m in runs}, out)
    written += graph_weights(runs, out)
    path = pipeline.student_store(req.preset, req.seeds[0], store=req.store, data_root=req.data_root,
                                  progress=req.progress, dataset=req.dataset, split=req.split)
    with FeatureStore.open(path) as st:
        teachers = st.manifest["teachers"]
    models = {f"teacher {name}": (load_verified(t["checkpoint"], HarnessError, "fine-tuned checkpoint",
                                                "state_dict")["state_dict"], t["checkpoint"])
              for name, t in teachers.items()}
    for method in ("mmgd", "gl+gr"):
        run = runs[method][0]
        models[f"student {METHODS[method].label}"] = (load_checkpoint(run.path / "student.pt", HarnessError,
                                                                      "student weights"), str(run.path))
    written += fig3_conv1(models, out)
    if req.volumes:
        written += fig4b_volume(volume_runs(req), METHODS["gl+gr"].label, out)
    return "\n".join(str(p) for p in written)


def label_noise(req: Request, rates=None) -> str:
    from harness import pipeline
    from harness.distill.methods import METHODS
    from harness.tables.label_noise import render_label_noise
    from harness.tables.tables import dataset_label

    rates = pipeline.LABEL_NOISE_RATES if rates is None else rates
    runs = pipeline.label_noise_runs(req.preset, req.seeds, rates, store=req.store, data_root=req.data_root,
                                     progress=req.progress, strict=req.strict, dataset=req.dataset, split=req.split)
    labels = {m: METHODS[m].label for m, _ in runs}
    return render_label_noise(runs, labels, dataset_label([r for rs in runs.values() for r in rs]), req.command,
                              req.out)


POWER_METHODS = ("gl+gr", "mmgd+gr", "gl", "mmgd", "kd", "gr", "feat")


def power(req: Request, methods=POWER_METHODS, from_seeds: int = 3, project_videos: tuple[int, ...] = (),
          out_dir: Path | None = None, n_boot: int | None = None) -> str:
    """The power table: ``req.seeds`` of each of ``methods`` (run or reused, one method at a time,
    so an interrupted job leaves whole cells to reuse), the paired error of every pair a Table 2
    claim compares, on the lowest ``from_seeds`` seeds and on all of them."""
    from harness import pipeline
    from harness.distill.methods import METHODS
    from harness.tables.claims import N_BOOT, TABLE2_CLAIMS, cells_from_runs
    from harness.tables.power import render_power
    from harness.tables.tables import dataset_label

    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(methods) < 2:
        raise HarnessError(f"--methods {','.join(methods)}: " + (f"unknown method {unknown[0]!r}; choose from "
                           f"{', '.join(METHODS)}" if unknown else "power compares methods, so it needs two or more"))
    if len(req.seeds) <= from_seeds:
        raise HarnessError(f"--seeds {len(req.seeds)}: power compares {from_seeds} seeds with more, so it needs at "
                           f"least {from_seeds + 1}")
    runs = {}
    for m in methods:
        runs.update(pipeline.table2_runs([m], req.preset, req.seeds, store=req.store, data_root=req.data_root,
                                        progress=req.progress, strict=req.strict, dataset=req.dataset,
                                        split=req.split))
    cells = cells_from_runs(runs)
    labels = {m: METHODS[m].label for m in methods}
    return render_power(cells, TABLE2_CLAIMS, labels, dataset_label([r for rs in runs.values() for r in rs]),
                        req.command, req.out if out_dir is None else Path(out_dir), n_boot or N_BOOT, from_seeds,
                        tuple(project_videos))


def teachers(req: Request) -> str:
    from harness import pipeline
    from harness.tables.teachers import render_teachers

    req = req.one_split()   # the teachers of split 1 (each split fine-tunes its own)
    made = pipeline.teacher_runs(req.preset, req.seeds[0], req.data_root, progress=req.progress,
                                 dataset=req.dataset, split=req.split)
    return render_teachers(made, req.preset, req.seeds[0], command=req.command)


def speed(req: Request) -> str:
    from harness.speed import speed_table
    from harness.tables.speed import render_speed

    return render_speed(speed_table(req.preset), req.command, req.out)


# The report's artifacts in the order they are made: the teachers first (everything needs
# them), the tables, then what reads the tables' runs.
ARTIFACTS = {
    "teachers": (teachers, "teachers.md"),
    "table1": (table1, "table1.md"),
    "table2": (table2, "table2.md"),
    # Fig. 4b's runs (drawn by "figures", judged by "claims"); skipping them leaves its claim untested
    "volumes": (volume_runs, "figures/fig4b_volume.png"),
    "claims": (lambda req: claims(req, power=True), "claims.md"),
    "figures": (figures, "figures/"),
    "label-noise": (label_noise, "label_noise.md"),
    "speed": (speed, "speed.md"),
}


def make_report(req: Request, skip: tuple[str, ...] = ()) -> str:
    """Make (or reuse) every artifact not in ``skip``, then write ``REPORT.md`` beside them: what
    was made, the claims' verdicts, and where the time went. Returns the report's markdown. The
    report is the whole reproduction, so Fig. 4b's runs are part of it unless ``req.volumes`` is
    switched off by the caller."""
    from harness.provenance import code_version
    from harness.atomic import write_text_atomic

    unknown = [s for s in skip if s not in ARTIFACTS]
    if unknown:
        raise HarnessError(f"--skip {unknown[0]}: not an artifact of the report ({', '.join(ARTIFACTS)})")
    req.volumes = req.volumes and "volumes" not in skip
    made, t_all = [], time.perf_counter()
    for name, (make, target) in ARTIFACTS.items():
        if name in skip:
            continue
        why = _not_applicable(name, req)
        if why:
            made.append((name, f"not made: {why}", 0.0))
            continue
        t0 = time.perf_counter()
        make(req)
        made.append((name, target, time.perf_counter() - t0))
    total = time.perf_counter() - t_all
    md = _render_report(req, made, total, code_version())
    req.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(req.out / "REPORT.md", md + "\n")
    return md


def _not_applicable(name: str, req: Request) -> str | None:
    """Why an artifact does not apply to the request's data (None when it does)."""
    if name == "volumes" and req.dataset != "synth":
        req.volumes = False
        return "Fig. 4b's volumes are shares of the synthetic set's unlabeled.txt"
    if name == "label-noise" and req.dataset == "ccv":
        return "label noise is defined for single-label datasets; CCV is multi-label"
    return None


def _recorded_seconds(run_paths) -> float:
    """Seconds the runs recorded for themselves (``final.json``), each run once."""
    total = 0.0
    for path in dict.fromkeys(str(p) for p in run_paths):
        try:
            final = json.loads((Path(path) / "final.json").read_text())
        except (OSError, ValueError):
            continue
        total += float(final.get("run_seconds") or final.get("train_seconds_this_process") or 0.0)
    return total


def _all_runs(req: Request) -> dict[str, list]:
    """``{stage: [run folder]}`` of the runs behind the report's tables."""
    out: dict[str, list] = {"fine-tuning": [], "distillation": []}
    for runs in (req.cache.get("table1", {}), req.cache.get("table2", {})):
        for seed_runs in runs.values():
            for run in seed_runs:
                # run folders are <runs root>/<kind>/<preset>/<name>
                out["distillation" if Path(run.path).parent.parent.name == "distill" else "fine-tuning"].append(run.path)
    return out


def _claims_summary(out: Path) -> list[str]:
    path = out / "claims.json"
    if not path.is_file():
        return ["The claims were not tested in this report."]
    data = json.loads(path.read_text())
    counts = data["verdicts"]
    lines = [f"Of {sum(counts.values())} claims tested: {counts['holds']} hold, {counts['fails']} fail, "
             f"{counts['inconclusive']} are inconclusive (median paired standard error "
             f"{data['median_se_points']:.1f} points; claims.md)."]
    held = [c["claim"] for c in data["claims"] if c["verdict"] == "holds"]
    if held:
        lines.append("Holding: " + "; ".join(held) + ".")
    return lines


def _render_report(req: Request, made: list[tuple[str, str, float]], total: float, version: str) -> str:
    runs = _all_runs(req)
    recorded = {stage: _recorded_seconds(paths) for stage, paths in runs.items()}
    rows = [f"| {name} | {target} | |" if target.startswith("not made") else
            f"| {name} | [{target}]({target}) | {seconds:.0f} |" for name, target, seconds in made]
    return "\n".join([
        f"# Reproduction report: {req.preset}",
        "",
        f"Seeds {', '.join(map(str, req.seeds))}: " + (
            "each seed re-trains every stage (pretraining, teachers, store, fine-tuning, distillation). "
            if req.strict else
            f"a seed varies fine-tuning and distillation; the teachers, their pretraining and the store are those of "
            f"seed {req.seeds[0]}. ")
        + "Every number in the files below was computed by the runs they list; the paper's numbers stand beside "
          "ours, labelled as the paper's.",
        "",
        *_claims_summary(req.out),
        "",
        "| Artifact | File | This command, s |",
        "|---|---|---:|",
        *rows,
        "",
        f"This command: {total:.0f} s wall (finished runs are reused, so a second call costs seconds). "
        f"The runs behind Tables 1 and 2 recorded {recorded['fine-tuning']:.0f} s of fine-tuning "
        f"({len(set(map(str, runs['fine-tuning'])))} runs) and {recorded['distillation']:.0f} s of distillation "
        f"({len(set(map(str, runs['distillation'])))} runs) when they were made.",
        "",
        f"Made by: `{req.command}` (code {version}).",
    ])
