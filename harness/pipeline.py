"""The end-to-end pipeline on demand: each step finds its finished input or makes it.

    data (synth)  ->  teachers (pretrain + finetune)  ->  store (cache-teachers)  ->  distill

Every step is keyed by its config (run folders by fingerprint, the store by its manifest),
so asking for a Table 2 row runs only what is missing and reuses everything else.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.cache.teachers import TEACHER_TASKS, cache_teachers, default_store_path
from harness.errors import HarnessError


def ensure_data(preset: str, data_root: str | os.PathLike | None = None, dataset: str = "synth") -> Path:
    """The dataset root: ``data_root`` if given, else the synthetic set of smoke/tiny
    (generated on first use, regenerated if stale); a real dataset needs its ``data_root``."""
    from harness.data.roots import data_root as resolve

    return resolve(preset, data_root, dataset)


def check_classes(dataset: str, root: Path, split: int = 1) -> None:
    """A class of the labeled split without a training video is refused up front, in one line."""
    from harness.data.index import check_trainable, open_index

    check_trainable(open_index(dataset, root, split, "train"), root, split)


def default_dataset(preset: str) -> str:
    """What ``--dataset`` means when not given: the paper preset's UCF101, else the synthetic set."""
    return "ucf101" if preset == "paper" else "synth"


def data_store_path(preset: str, dataset: str = "synth", split: int = 1, fmt: str = "zarr") -> Path:
    """The default store of a dataset and split: the preset's own for the synthetic set's
    split 1 (``cache/<preset>.zarr``), ``cache/<preset>-<dataset>-split<k>.zarr`` otherwise, so
    stores of different data never share a path."""
    path = default_store_path(preset, fmt)
    if dataset == "synth" and int(split) == 1:
        return path
    return path.with_name(f"{path.stem}-{dataset}-split{int(split)}{path.suffix}")


def _cache_overrides(dataset: str, split: int) -> dict | None:
    """The cache settings that name the data (absent for the synthetic split 1: the defaults)."""
    return None if dataset == "synth" and int(split) == 1 else {"dataset": dataset, "split": int(split)}


def teacher_checkpoints(preset: str, seed: int = 0, data_root: str | os.PathLike | None = None,
                        tasks: tuple[str, ...] = TEACHER_TASKS, pretext_overrides: dict | None = None,
                        progress: bool = True, dataset: str = "synth", split: int = 1) -> dict[str, Path]:
    """The fine-tuned teacher of each task (self-supervised pretraining, with
    ``pretext_overrides``, then fine-tuning on ``dataset``'s ``split``), trained now if no
    finished run with the same config exists."""
    from harness.finetune import finetune_pretext

    return {task: finetune_pretext(task, preset, seed, dataset=dataset, data_root=data_root, split=split,
                                   pretext_overrides=pretext_overrides, progress=progress).path / "checkpoint.pt"
            for task in tasks}


def over_splits(plan: str, preset: str, dataset: str, split: int | str, runs_of) -> dict:
    """``runs_of(k)`` (a plan's ``{key: [RunDir per seed]}`` on split ``k``) for ``split``; with
    ``"all"``, every split's plan is run and each (key, seed) becomes one ``splits_summary`` run:
    the mean over the splits, whose predictions are the three test sets together. A key that
    cannot be made on some split is missing (an empty list)."""
    from harness.finetune import splits_of
    from harness.runs import splits_summary

    if split != "all":
        return runs_of(int(split))
    splits = splits_of(dataset, split)
    per = {k: runs_of(k) for k in splits}
    out = {}
    for key, first in per[splits[0]].items():
        lists = [per[k][key] for k in splits]
        name = "-".join(str(x) for x in key) if isinstance(key, tuple) else str(key)
        out[key] = [] if not all(lists) else [
            splits_summary("all-splits", preset, f"{plan}-{name}-{dataset}-seed{runs[0].final()['seed']}",
                           dict(zip(splits, runs)), f"{plan}-all-splits") for runs in zip(*lists)]
    return out


def ensure_store(preset: str, seed: int = 0, fmt: str = "zarr", store: str | os.PathLike | None = None,
                 data_root: str | os.PathLike | None = None, progress: bool = True, dataset: str = "synth",
                 split: int = 1, pretext_overrides: dict | None = None) -> Path:
    """The teacher feature store of ``dataset``'s ``split`` (teachers pretrained with
    ``pretext_overrides``), built (or resumed) if not complete."""
    path = Path(store) if store is not None else data_store_path(preset, dataset, split, fmt)
    root = ensure_data(preset, data_root, dataset)
    check_classes(dataset, root, split)   # before any teacher is trained
    ckpts = teacher_checkpoints(preset, seed, root, progress=progress, dataset=dataset, split=split,
                                pretext_overrides=pretext_overrides)
    st = cache_teachers(preset, ckpts, root, store=path, fmt=fmt, progress=progress,
                        overrides=_cache_overrides(dataset, split))
    if not st.is_complete():
        raise HarnessError(f"{path}: other writer processes have not finished their chunks yet")
    return path


def student_store(preset: str, seed: int = 0, store: str | os.PathLike | None = None,
                  data_root: str | os.PathLike | None = None, progress: bool = True, dataset: str = "synth",
                  split: int = 1) -> Path:
    """The store a student is distilled from. A complete store named by ``store`` is used as it
    is: its manifest records its teachers and data, so neither is needed (nor trained). Any
    other store (the preset's default, a missing or unfinished one) is built or resumed from
    the default teachers, which are trained first if missing."""
    from harness.cache.store import FeatureStore, is_url

    if store is not None and (is_url(store) or Path(store).exists()):
        with FeatureStore.open(store) as st:
            if st.is_complete():
                return store if is_url(store) else Path(store)
    if store is not None and is_url(store):   # a URL is only read: nothing can be built there
        raise HarnessError(f"{store}: no complete feature store at this URL; build it locally with "
                           f"`harness cache-teachers`, then copy the folder up")
    return ensure_store(preset, seed, store=store, data_root=data_root, progress=progress, dataset=dataset, split=split)


def run_method(method: str, preset: str, seed: int = 0, overrides: dict | None = None,
               store: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
               progress: bool = True, teacher_seed: int = 0, label_noise: float = 0.0, dataset: str = "synth",
               split: int = 1):
    """One Table 2 row: the store (``student_store`` of the teachers of ``teacher_seed``) then
    the distillation run of ``seed`` (reused if finished), with ``label_noise`` on its training
    labels."""
    from harness.distill.label_noise import check_noise
    from harness.distill.methods import METHODS, MethodError
    from harness.distill.runner import _resolve_config, distill

    if method not in METHODS:  # before any expensive step
        raise MethodError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    _resolve_config(preset, overrides)   # a bad --set fails here, before teachers or a store are made
    check_noise(label_noise)
    path = student_store(preset, teacher_seed, store=store, data_root=data_root, progress=progress, dataset=dataset,
                         split=split)
    return distill(method, preset, seed, path, overrides=overrides, progress=progress, label_noise=label_noise)


# ---- the runs behind each table ---------------------------------------------------------------
# A table is a list of rows, each made by one run; the plan says which run, the tables package
# only renders finished runs (harness.tables).

# Table 1: (row key, how the row's run is made). Single-task rows are the pretext backbone
# fine-tuned on the labeled split (docs/PRETEXT.md); the last row is the distilled student.
TABLE1_PLAN = (
    ("alexnet_ran", ("finetune", "alexnet", "random")),
    ("alexnet_pre", ("finetune", "alexnet", "supervised")),
    ("track", ("pretext", "track")),
    ("shuffle", ("pretext", "shuffle")),
    ("pose", ("pretext", "pose")),
    ("sort", ("pretext", "sort")),
    ("oddoneout", ("pretext", "oddoneout")),
    ("motion", ("pretext", "motion")),
    ("predict", ("pretext", "predict")),
    ("gl+gr", ("distill", "gl+gr")),
)


# Seeds a table is averaged over when --seeds is not given. A seed varies the stages after the
# teachers: fine-tuning (Table 1's rows, from pretraining of the base seed) and distillation
# (from the store of the base seed's teachers); the teachers and the store stay fixed.
DEFAULT_SEEDS = {"smoke": 1, "tiny": 3, "paper": 1}


def seed_list(preset: str, seed: int = 0, seeds: int | None = None) -> list[int]:
    """``seeds`` consecutive seeds from ``seed`` (the preset's default count when None)."""
    n = DEFAULT_SEEDS.get(preset, 1) if seeds is None else int(seeds)
    if n < 1:
        raise HarnessError(f"--seeds must be >= 1, got {n}")
    return list(range(int(seed), int(seed) + n))


def _upstream_seeds(seeds: list[int], strict: bool, store: str | os.PathLike | None) -> dict[int, int]:
    """``{seed: seed of its pretraining, teachers and store}``: ``seeds[0]`` for every seed, or
    each seed's own with ``strict`` (then one ``--store`` cannot hold them all)."""
    if strict and store is not None and len(seeds) > 1:
        raise HarnessError(f"--store {store}: a store holds one seed's teachers; --strict-seeds builds one per seed "
                           "under cache/ (leave out --store)")
    return {s: (s if strict else seeds[0]) for s in seeds}


def seed_store_path(preset: str, seed: int, base_seed: int, store: str | os.PathLike | None,
                    dataset: str = "synth", split: int = 1) -> Path | str | None:
    """The store of the teachers of ``seed``: ``store`` (or the data's default) for the base
    seed, the data's default with ``-teachers-seed<N>`` added for the others."""
    if seed == base_seed:
        return store
    path = data_store_path(preset, dataset, split)
    return path.with_name(f"{path.stem}-teachers-seed{seed}{path.suffix}")


def table1_runs(preset: str, seeds: list[int], data_root: str | os.PathLike | None = None,
                store: str | os.PathLike | None = None, progress: bool = True, strict: bool = False,
                dataset: str = "synth", split: int | str = 1, pretrained_weights: str | os.PathLike | None = None) -> dict:
    """``{row key: [finished RunDir per seed]}`` for every Table 1 row, each run or reused. The
    pretraining (and AlexNet_pre's supervised stage) and the store use ``seeds[0]``, or each
    seed its own with ``strict``. A row that cannot be made is an empty list, with its reason
    in ``table1_missing``."""
    from harness.finetune import finetune, finetune_pretext

    if split == "all":
        return over_splits("table1", preset, dataset, split, lambda k: table1_runs(
            preset, seeds, data_root, _split_store(store, k), progress, strict, dataset, k, pretrained_weights))
    root = ensure_data(preset, data_root, dataset)
    check_classes(dataset, root, split)
    up = _upstream_seeds(seeds, strict, store)
    missing = table1_missing(dataset, pretrained_weights)
    runs = {}
    for key, (kind, *what) in TABLE1_PLAN:
        if key in missing:
            runs[key] = []
        elif kind == "finetune":
            arch, init = what
            checkpoint = None
            if init == "supervised" and dataset != "synth":   # ImageNet weights from a local file
                init, checkpoint = "file", pretrained_weights
            runs[key] = [finetune(arch, init, preset, s, dataset, root, split, checkpoint, progress=progress,
                                  pretrain_seed=up[s]) for s in seeds]
        elif kind == "pretext":
            runs[key] = [finetune_pretext(what[0], preset, s, dataset, root, split, progress=progress,
                                          pretrain_seed=up[s]) for s in seeds]
        else:
            runs[key] = [run_method(what[0], preset, s, progress=progress, store=_seed_store(
                preset, s, up, seeds, store, root, progress, dataset, split)) for s in seeds]
    return runs


def _split_store(store, split: int):
    """``--store`` holds one split's teachers: with ``--split all`` each split uses its default."""
    if store is not None:
        raise HarnessError(f"--store {store}: a store holds one split's teachers; --split all builds one per split "
                           "under cache/ (leave out --store)")
    return None


def table1_missing(dataset: str = "synth", pretrained_weights: str | os.PathLike | None = None) -> dict[str, str]:
    """``{row key: why it is not made}``: on a real dataset AlexNet_pre needs ImageNet weights
    (``--pretrained-weights``, a torchvision-format AlexNet state_dict); the synthetic set
    pretrains it on its own disjoint classes."""
    if dataset != "synth" and pretrained_weights is None:
        return {"alexnet_pre": "missing: needs ImageNet AlexNet weights (--pretrained-weights PATH, a torchvision "
                               "state_dict)"}
    if pretrained_weights is not None and not Path(pretrained_weights).is_file():
        raise HarnessError(f"{pretrained_weights}: --pretrained-weights file not found")
    return {}


def _seed_store(preset, s, up, seeds, store, data_root, progress, dataset="synth", split=1) -> Path:
    return student_store(preset, up[s], store=seed_store_path(preset, up[s], seeds[0], store, dataset, split),
                         data_root=data_root, progress=progress, dataset=dataset, split=split)


def _seed_stores(preset, seeds, strict, store, data_root, progress, dataset, split) -> dict[int, Path]:
    """``{seed: the store its students distil from}`` (``_upstream_seeds`` decides whose teachers)."""
    up = _upstream_seeds(seeds, strict, store)
    return {s: _seed_store(preset, s, up, seeds, store, data_root, progress, dataset, split) for s in seeds}


def table2_runs(methods: list[str], preset: str, seeds: list[int], store: str | os.PathLike | None = None,
                data_root: str | os.PathLike | None = None, progress: bool = True, strict: bool = False,
                dataset: str = "synth", split: int | str = 1) -> dict:
    """``{method: [finished RunDir per seed]}``, each run or reused, from the store of the
    teachers of ``seeds[0]`` (with ``strict``: each seed's from its own teachers' store)."""
    from harness.distill.methods import METHODS, MethodError

    unknown = [m for m in methods if m not in METHODS]
    if unknown:  # before any expensive step
        raise MethodError(f"unknown method {unknown[0]!r}; choose one of {', '.join(METHODS)}")
    if split == "all":
        return over_splits("table2", preset, dataset, split, lambda k: table2_runs(
            methods, preset, seeds, _split_store(store, k), data_root, progress, strict, dataset, k))
    paths = _seed_stores(preset, seeds, strict, store, data_root, progress, dataset, split)
    missing = table2_missing(methods, dataset)
    return {m: [] if m in missing else [run_method(m, preset, s, store=paths[s], progress=progress) for s in seeds]
            for m in methods}


def table2_missing(methods: list[str], dataset: str = "synth") -> dict[str, str]:
    """``{method: why it is not run}``: single-label methods on a multi-label dataset (CCV)."""
    from harness.distill.methods import METHODS

    if dataset != "ccv":
        return {}
    return {m: "missing: single-label only; CCV is multi-label" for m in methods if METHODS[m].single_label}


def teacher_runs(preset: str, seed: int = 0, data_root: str | os.PathLike | None = None,
                 progress: bool = True, dataset: str = "synth", split: int = 1) -> dict:
    """The four teachers' fine-tuning runs (pretraining first), each run or reused, with the
    machine's speed measured just before and each step's wall time: what ``harness teachers``
    reports (``harness.tables.teachers.render_teachers``)."""
    import time

    import torch

    from harness.finetune import finetune_pretext, reference_step_ms
    from harness.utils import set_cpu_threads

    set_cpu_threads()  # as the training runs do, so the step is timed with their threads
    root = ensure_data(preset, data_root, dataset)  # data generation is not part of the budget
    step_ms = reference_step_ms(preset)
    started = time.time()
    t_all = time.perf_counter()
    runs, walls = {}, {}
    for task in TEACHER_TASKS:
        t0 = time.perf_counter()
        runs[task] = finetune_pretext(task, preset, seed, dataset, root, split, progress=progress)
        walls[task] = time.perf_counter() - t0
    return {"runs": runs, "wall_seconds": walls, "total_wall_seconds": time.perf_counter() - t_all,
            "started": started, "reference_step_ms": step_ms, "torch_threads": torch.get_num_threads()}


# The weak-supervision table: staged KD (built for noisy labels) against KD and G_l+G_r, each
# trained on the same store with a seeded share of its training labels corrupted.
LABEL_NOISE_METHODS = ("staged-kd", "kd", "gl+gr")
LABEL_NOISE_RATES = (0.0, 0.2, 0.4)


def label_noise_runs(preset: str, seeds: list[int], rates=LABEL_NOISE_RATES, methods=LABEL_NOISE_METHODS,
                     store: str | os.PathLike | None = None, data_root: str | os.PathLike | None = None,
                     progress: bool = True, strict: bool = False, dataset: str = "synth", split: int | str = 1) -> dict:
    """``{(method, rate): [finished RunDir per seed]}``, each run or reused, from the stores of
    ``table2_runs``; rate 0 is the clean run Table 2 already has."""
    from harness.distill.label_noise import check_noise

    for rate in rates:  # before any expensive step
        check_noise(rate)
    if split == "all":
        return over_splits("label-noise", preset, dataset, split, lambda k: label_noise_runs(
            preset, seeds, rates, methods, _split_store(store, k), data_root, progress, strict, dataset, k))
    paths = _seed_stores(preset, seeds, strict, store, data_root, progress, dataset, split)
    return {(m, float(r)): [run_method(m, preset, s, store=paths[s], progress=progress, label_noise=r)
                            for s in seeds] for r in rates for m in methods}


# Fig. 4b: the distilled student against the volume of unlabeled video its teachers were
# pretrained on. Each volume is the first share of the unlabeled list (the pretext metric is
# held out from those videos); the labeled data, fine-tuning and distillation are unchanged.
UNLABELED_VOLUMES = (0.25, 0.5, 1.0)


def unlabeled_counts(preset: str, volumes=UNLABELED_VOLUMES, data_root: str | os.PathLike | None = None) -> dict:
    """``{volume: number of unlabeled videos}`` (at least 2 each: one is held out)."""
    from harness.data.index import open_index

    for v in volumes:
        if not 0.0 < float(v) <= 1.0:
            raise HarnessError(f"an unlabeled volume must be in (0, 1], got {v}")
    n = len(open_index("synth", ensure_data(preset, data_root), subset="unlabeled"))
    return {float(v): max(2, int(round(float(v) * n))) for v in volumes}


def volume_runs(preset: str, seeds: list[int], volumes=UNLABELED_VOLUMES, method: str = "gl+gr",
                data_root: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """``{number of unlabeled videos: [finished RunDir of ``method`` per seed]}``: per volume the
    four teachers pretrained on that many unlabeled videos (seed ``seeds[0]``), fine-tuned, cached
    into their own store (the full volume uses the preset's default store), then distilled. The
    synthetic set only (its ``unlabeled.txt`` is the volume's source)."""
    root = ensure_data(preset, data_root)
    counts = unlabeled_counts(preset, volumes, root)
    out = {}
    for v, n in sorted(counts.items()):
        full = v == 1.0
        path = data_store_path(preset)
        if not full:
            path = path.with_name(f"{path.stem}-unlabeled{n}{path.suffix}")
        ensure_store(preset, seeds[0], store=path, data_root=root, progress=progress,
                     pretext_overrides=None if full else {"max_videos": n})
        out[n] = [run_method(method, preset, s, store=path, progress=progress) for s in seeds]
    return out
