"""The distillation runner: streams the feature store, trains the student with one method,
evaluates at video level and writes a run folder.

Run folder (``runs/distill/<preset>/<method>-<fingerprint>``): ``run.json`` (config, code
version, store manifest and fingerprint), ``metrics.jsonl`` (one row per epoch: every loss
term, lr, test metric), ``last.pt`` (resume point: student, method, optimiser, scheduler,
RNG state), ``final.json`` (final metrics and the learned graph: G_l adjacency, G_r vertex
weights), ``student.pt``. Killed runs resume from ``last.pt``; because the reader's order
and views depend only on (seed, epoch), a resumed CPU run equals an uninterrupted one.

On GPU: ``amp`` (bfloat16 autocast) and ``torchrun`` DDP (NCCL; gloo on CPU) are supported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.cache import schema
from harness.cache.reader import StreamingReader
from harness.cache.store import FeatureStore, is_url
from harness.cache.teachers import teacher_store_problem
from harness.checkpoints import save_atomic
from harness.config import apply_overrides, check_bounds, check_choice, keyless_default, resolve, to_dict
from harness.data.frames import evaluate, save_predictions, video_level_predict
from harness.data.transforms import apply_views_torch
from harness.distill.label_noise import LabelNoise, check_noise
from harness.distill.losses.em import class_ground_cost
from harness.distill.methods import (METHODS, MethodContext, MethodError, MethodSettings, TeacherBatch, build_method,
                                     settings_read)
from harness.dist import dist_env
from harness.errors import HarnessError
from harness.models import MODEL_PRESETS, build_model
from harness.provenance import fingerprint, sha256_file
from harness.runs import RunDir
from harness.utils import ADAM_KERNELS, AdamKernel, adam, pick_device, seed_everything


@dataclass(frozen=True)
class DistillConfig:
    epochs: int                    # training epochs
    batch_size: int                # items per step
    lr: float                      # Adam learning rate
    lr_step_epochs: int            # lr multiplied by lr_gamma every lr_step_epochs (paper: 0.5 / 50)
    lr_gamma: float = 0.5          # lr factor every lr_step_epochs
    betas: tuple = (0.9, 0.999)    # Adam, "momentum 0.9" in the paper
    weight_decay: float = 5e-4     # Adam weight decay
    grad_clip: float = 10.0        # gradient norm clip (0 = off)
    amp: bool = True               # bfloat16 autocast, only on CUDA
    shuffle_buffer: int = 4        # store chunks the reader shuffles within
    prefetch: int = 2              # batches read ahead
    device: str = "auto"           # "auto" | "cpu" | "cuda"
    optimizer_kernel: AdamKernel = keyless_default("foreach")   # Adam's kernel: "foreach" (bit-identical to torch's loop) or "fused" (faster, other rounding; paper preset)
    method: MethodSettings = field(default_factory=MethodSettings)

    def __post_init__(self):
        check_bounds(self, (("epochs", 1, False), ("batch_size", 1, False), ("lr", 0, True), ("lr_step_epochs", 1, False),
                            ("lr_gamma", 0, True), ("weight_decay", 0, False), ("grad_clip", 0, False),
                            ("shuffle_buffer", 1, False), ("prefetch", 1, False), ("betas", 0, False)))
        check_choice(self, "device", ("auto", "cpu", "cuda"))
        check_choice(self, "optimizer_kernel", ADAM_KERNELS)


DISTILL_PRESETS = {
    "smoke": DistillConfig(epochs=2, batch_size=32, lr=1e-3, lr_step_epochs=1, shuffle_buffer=2,
                           method=MethodSettings(gr_d=64)),
    # Scaled from the paper's schedule to the embedded benchmark: same optimiser, lambda and
    # halving, fewer epochs, a learning rate AlexNet without batch norm trains at from scratch.
    # The shuffle buffer holds the whole tiny store (15 chunks, ~250 MB): with 4 chunks a window
    # of ~16 batches drew from a third of the videos and the BatchNorm student learned far slower
    # (labels-only student 19% vs 35% on split 1, seed 0; docs/DISTILL.md).
    "tiny": DistillConfig(epochs=12, batch_size=32, lr=1e-3, lr_step_epochs=4, shuffle_buffer=16,
                          method=MethodSettings(gr_d=128)),
    # The paper: 350 epochs, Adam (momentum 0.9), batch 128, lr 0.01 halved every 50, lambda 0.6.
    # Adam's fused kernel: no committed numbers to keep, and a quarter of foreach's time over
    # AlexNet's 57 M parameters (docs/SPEED.md, figure 1).
    "paper": DistillConfig(epochs=350, batch_size=128, lr=0.01, lr_step_epochs=50, optimizer_kernel="fused"),
}


class DistillError(HarnessError):
    pass


class _StoreVideos:
    """The store's test videos seen as the minimal index ``frames.evaluate`` scores against."""

    def __init__(self, targets: np.ndarray, classes: list[str], multilabel: bool):
        self._targets, self.classes, self.multilabel = targets, classes, multilabel
        self.num_classes = len(classes)

    def targets(self) -> np.ndarray:
        return self._targets

    def __len__(self) -> int:
        return len(self._targets)


class _Trainable(nn.Module):
    """Student and method in one module, so DDP and the optimiser see one parameter set."""

    def __init__(self, student: nn.Module, method: nn.Module):
        super().__init__()
        self.student, self.method = student, method

    def forward(self, x, tb):
        return self.method(self.student, x, tb)


def optimiser_parameters(model: _Trainable) -> list[nn.Parameter]:
    """What the optimiser trains: the student's parameters (for methods that train it) and
    every parameter of the method (graph edges, vertex weights, edge networks, heads)."""
    source = model.parameters() if model.method.trains_student else model.method.parameters()
    return [p for p in source if p.requires_grad]


def teacher_names(store: FeatureStore) -> list[str]:
    names = schema.teacher_names(f.name for f in store.fields)
    if not names:
        raise DistillError(f"{store.path}: the store holds no teacher outputs")
    return names


def ground_cost(store: FeatureStore, names: list[str]) -> torch.Tensor | None:
    """EM ground cost C[i, j] = 1 - cos(w_i, w_j), w_c = the teachers' class prototypes
    (mean logit vectors on the training split) concatenated over teachers."""
    extras = set(store.extras())
    keys = [schema.prototypes_key(n) for n in names]
    if not all(k in extras for k in keys):
        return None
    protos = torch.cat([torch.from_numpy(np.asarray(store.get_extra(k), dtype=np.float32)) for k in keys], 1)
    return class_ground_cost(protos)


def _batch_to_teachers(batch: dict, names: list[str]) -> TeacherBatch:
    logits = [batch.get(schema.teacher_field(n, "logits")) for n in names]
    conv4 = [batch.get(schema.teacher_field(n, "conv4")) for n in names]
    return TeacherBatch(
        logits=torch.stack(logits, 1) if logits[0] is not None else None,
        conv4=conv4 if conv4[0] is not None else None,
        target=batch["label"],
    )


def _fields(method: str, names: list[str], *extra: str) -> list[str]:
    """The store fields a run of ``method`` streams: the student's input and target, ``extra``,
    and the teacher outputs the method declares."""
    return [*schema.STUDENT_FIELDS, *extra, *schema.teacher_fields(names, METHODS[method].outputs)]


def _student_input(batch: dict, size: int) -> torch.Tensor:
    return apply_views_torch(batch["frames"], batch["views"], size)


def distill(method: str, preset: str = "tiny", seed: int = 0, store: str | os.PathLike | None = None,
            overrides: dict[str, Any] | None = None, runs_root: Path | None = None,
            progress: bool = True, stop_after_epoch: int | None = None, label_noise: float = 0.0) -> RunDir:
    """Train (or resume, or reuse) one method's student from ``store``; returns its run folder.

    ``label_noise``: the rate of seeded symmetric noise on the student's training labels
    (``harness.distill.label_noise``); part of the run's key when non-zero.

    ``stop_after_epoch`` ends the process's work after that epoch without finishing the run
    (used by the resume tests; a later call continues from ``state.pt``).
    """
    if method not in METHODS:
        raise MethodError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cfg = _resolve_config(preset, overrides)
    store_path = (store if is_url(store) else Path(store)) if store is not None else Path("cache") / f"{preset}.zarr"
    st = FeatureStore.open(store_path)
    problem = teacher_store_problem(st)   # a field missing would fail later, with less to go on
    if problem:
        raise DistillError(problem)
    if not st.is_complete():
        raise DistillError(f"{store_path}: the feature store is incomplete; run `harness cache-teachers` to finish it")
    manifest = st.manifest
    if manifest.get("preset", preset) != preset:
        raise DistillError(f"{store_path}: the store was built for preset {manifest['preset']!r}, not {preset!r}; "
                           f"pass --preset {manifest['preset']}")
    run_config = {"kind": "distill", "method": method, "preset": preset, "seed": seed,
                  "config": run_settings(method, cfg), "store_fingerprint": fingerprint(manifest)}
    if METHODS[method].teachers is not None:   # a teacher subset is part of what the run is
        run_config["teachers"] = list(METHODS[method].teachers)
    if check_noise(label_noise) > 0:            # so are noisy labels (absent at 0: clean runs keep their keys)
        run_config["label_noise"] = float(label_noise)
    run = RunDir.for_config("distill", preset, method, run_config, runs_root)
    if run.is_finished():
        return run
    job = _Job(run, run_config, method, preset, seed, cfg, st, store_path, *dist_env())
    # rank 0 owns the run folder; the other DDP ranks only train
    with run.exclusive() if job.rank == 0 else contextlib.nullcontext():
        if not run.is_finished():   # finished by another process while this one waited to start
            _train(job, progress, stop_after_epoch)
    return run


@dataclass
class _Job:
    """One process's share of one distillation run."""

    run: RunDir
    run_config: dict
    method: str
    preset: str
    seed: int
    cfg: DistillConfig
    store: FeatureStore
    store_path: Path | str   # a local folder or an fsspec URL
    rank: int
    world: int
    local_rank: int

    @property
    def label_noise(self) -> float:
        return float(self.run_config.get("label_noise", 0.0))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.run_config)


def _device(job: _Job) -> torch.device:
    """The device this process trains on, with the process group started under torchrun."""
    device = pick_device(job.cfg.device)
    if job.world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", job.local_rank)
            torch.cuda.set_device(device)
    return device


@dataclass
class _Setup:
    """What a run trains: the student and method in one module, the optimiser and schedule,
    and what the store says about the teachers and classes."""

    model: "_Trainable"
    params: list
    opt: Any
    sched: Any
    names: list[str]
    classes: list[str]
    multilabel: bool
    noise: LabelNoise


def method_context(st: FeatureStore, names: list[str], student: nn.Module) -> MethodContext:
    """What a method is built from: the store's classes, teachers' conv4 channels and EM ground
    cost for teachers ``names``, and ``student``'s channels."""
    return MethodContext(num_classes=len(st.manifest["dataset"]["classes"]), teacher_names=names,
                         teacher_channels=[st.field(schema.teacher_field(n, "conv4")).item_shape[1] for n in names],
                         student_channels=student.conv4_shape()[0],
                         multilabel=bool(st.manifest["dataset"].get("multilabel", False)),
                         ground_cost=ground_cost(st, names), student_stage_channels=tuple(student.stage_channels))


def _build(job: _Job, device: torch.device) -> _Setup:
    st, manifest = job.store, job.store.manifest
    names = teacher_names(st)
    subset = METHODS[job.method].teachers
    if subset is not None:
        missing = [n for n in subset if n not in names]
        if missing:
            raise MethodError(f"{job.store_path}: method {job.method!r} distils from {', '.join(missing)}, which the "
                              f"store does not hold (it has {', '.join(names)})")
        names = list(subset)
    classes = list(manifest["dataset"]["classes"])
    multilabel = bool(manifest["dataset"].get("multilabel", False))
    student = build_model("alexnet", len(classes), job.preset)
    c4 = st.field(schema.teacher_field(names[0], "conv4")).item_shape
    _, s_h, s_w = student.conv4_shape()
    if tuple(c4[-2:]) != (s_h, s_w):
        raise DistillError(f"{job.store_path}: teacher conv4 maps are {c4[-2:]} but the {job.preset} student's "
                           f"conv4 is {(s_h, s_w)}; rebuild the cache for this preset")
    ctx = method_context(st, names, student)
    model = _Trainable(student, build_method(job.method, ctx, job.cfg.method)).to(device)
    params = optimiser_parameters(model)
    cfg = job.cfg
    opt = (adam(params, cfg.optimizer_kernel, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
           if params else None)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.lr_step_epochs, cfg.lr_gamma) if opt else None
    noise = LabelNoise(job.label_noise, job.seed, len(classes), multilabel, str(job.store_path))
    return _Setup(model, params, opt, sched, names, classes, multilabel, noise)


def _train(job: _Job, progress: bool, stop_after_epoch: int | None) -> None:
    run, cfg, method = job.run, job.cfg, job.method
    device = _device(job)
    if job.rank == 0:
        run.start(job.run_config, inputs={"store": str(job.store_path), "store_manifest": job.store.manifest})
    seed_everything(job.seed)
    s = _build(job, device)
    meth = s.model.method
    epochs = cfg.epochs if s.params else 0
    start_epoch, rows = 0, []
    state = run.load_state(job.fingerprint)
    if state is not None:
        s.model.load_state_dict(state["model"])
        if s.opt:
            s.opt.load_state_dict(state["optimizer"])
            s.sched.load_state_dict(state["scheduler"])
        start_epoch, rows = state["epoch"] + 1, state["rows"]
    train_model = s.model
    if job.world > 1 and s.params:
        # methods that train a head on teacher features leave the student's parameters unused,
        # and staged-kd's cascade phases leave the later blocks and the classifier unused
        train_model = nn.parallel.DistributedDataParallel(
            s.model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not meth.trains_student or meth.partial_graph)
    extra = ("video",) if job.label_noise > 0 else ()   # noisy labels are drawn per video
    reader = StreamingReader(job.store, _fields(method, s.names, *extra), cfg.batch_size, split="train", shuffle=True,
                             seed=job.seed, shuffle_buffer=cfg.shuffle_buffer, prefetch=cfg.prefetch, device=device,
                             view="random", rank=job.rank, world_size=job.world, even_batches=job.world > 1,
                             drop_last=True)
    amp = cfg.amp and device.type == "cuda"
    size = MODEL_PRESETS[job.preset].input_size
    t0 = time.time()
    for epoch in range(start_epoch, epochs):
        row = _train_epoch(job, s, train_model, reader, epoch, epochs, device, size, amp, progress)
        if job.rank == 0:
            row.update({f"test_{k}": v for k, v in _evaluate(s, job, device, size, amp).items()
                        if k in ("value", "metric")})
            rows.append(row)
            run.save_state({"model": s.model.state_dict(), "optimizer": s.opt.state_dict(),
                            "scheduler": s.sched.state_dict(), "epoch": epoch}, rows, job.fingerprint)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs:
            return
    if job.rank == 0:
        result = _evaluate(s, job, device, size, amp)
        save_predictions(run.path, *result.pop("_predictions"))
        save_atomic(s.model.student.state_dict(), run.path / "student.pt")
        run.finish({"method": method, "label": METHODS[method].label, "preset": job.preset, "seed": job.seed,
                    "label_noise": job.label_noise,
                    "metric": result["metric"], "value": result["value"], "test": result,
                    "epochs": epochs, "train_seconds_this_process": round(time.time() - t0, 2),
                    "student_sha256": sha256_file(run.path / "student.pt"),
                    "artifacts": meth.artifacts(), "store": str(job.store_path)}, rows)


def _train_epoch(job: _Job, s: _Setup, train_model: nn.Module, reader: StreamingReader, epoch: int, epochs: int,
                 device: torch.device, size: int, amp: bool, progress: bool) -> dict:
    """One pass over the store's training items; the epoch's row (mean of every term)."""
    meth = s.model.method
    reader.set_epoch(epoch)
    meth.set_epoch(epoch, epochs)   # a schedule that depends only on the epoch number survives resuming
    train_model.train()
    sums: dict[str, float] = {}
    n_batches = 0
    # how long the step waits for the reader (the time spent inside next()), against the epoch
    bar = _bar(reader, progress and job.rank == 0, f"{job.method} epoch {epoch + 1}/{epochs}")
    batches = iter(bar)
    waited, t_epoch = 0.0, time.perf_counter()
    try:
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - t0
            if batch is None:
                break
            tb = _batch_to_teachers(batch, s.names)
            if job.label_noise > 0:
                target, flipped = s.noise(batch)
                tb = dataclasses.replace(tb, target=target)
                sums["label_noise/flipped_share"] = sums.get("label_noise/flipped_share", 0.0) + flipped / len(target)
            x = _student_input(batch, size)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                _, terms = train_model(x, tb)
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                raise DistillError(f"{job.run.path}: {job.method}: the loss went non-finite at epoch {epoch + 1}, "
                                   f"step {n_batches + 1}; first non-finite term: {bad[0] if bad else 'the sum'} "
                                   f"({shown}); try a lower lr")
            s.opt.zero_grad(set_to_none=True)
            loss.backward()
            if job.cfg.grad_clip:
                nn.utils.clip_grad_norm_(s.params, job.cfg.grad_clip)
            s.opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in meth.stats().items():     # logged, not part of the loss
                sums[k] = sums.get(k, 0.0) + float(v)
            n_batches += 1
    finally:
        # a failing step clears its progress bar before the error prints, and stops the reader
        # here, in this thread (left to the garbage collector, the pass would end in any thread)
        if hasattr(batches, "close"):
            batches.close()
        if hasattr(bar, "close"):
            bar.close()
    s.sched.step()
    elapsed = time.perf_counter() - t_epoch
    return {"epoch": epoch + 1, "lr": s.opt.param_groups[0]["lr"], "batches": n_batches,
            **{k: v / max(n_batches, 1) for k, v in sums.items()},
            "time/epoch_s": round(elapsed, 3), "time/reader_wait_s": round(waited, 3),
            "time/reader_wait_share": round(waited / elapsed, 4) if elapsed > 0 else 0.0}


def run_settings(method: str, cfg: DistillConfig) -> dict:
    """The config a run of ``method`` is keyed by: the runner's settings and, of the method
    settings, only the keys the method reads (``settings_read``)."""
    out = to_dict(cfg)
    out["method"] = json.loads(json.dumps(settings_read(method, cfg.method), default=str))
    return out


def _resolve_config(preset: str, overrides: dict[str, Any] | None) -> DistillConfig:
    """``--set`` keys are DistillConfig fields or MethodSettings fields (``lam=0.5``)."""
    method_fields = {f.name for f in dataclasses.fields(MethodSettings)}
    overrides = overrides or {}
    # method keys are applied to the method settings directly, so errors name them as typed
    cfg = resolve(DISTILL_PRESETS, preset, {k: v for k, v in overrides.items() if k not in method_fields})
    method = apply_overrides(cfg.method, {k: v for k, v in overrides.items() if k in method_fields})
    return dataclasses.replace(cfg, method=method)


@torch.no_grad()
def _evaluate(s: "_Setup", job: "_Job", device, size: int, amp: bool) -> dict:
    """Video-level metric on the store's test items, centre view (view 0), mean softmax."""
    model, st, names, classes, multilabel = s.model, job.store, s.names, s.classes, s.multilabel
    model.eval()
    reader = StreamingReader(st, _fields(job.method, names, "video"), 256, split="test", shuffle=False, view=0,
                             device=device, prefetch=job.cfg.prefetch)
    probs, videos, labels = [], [], []
    for batch in reader:
        tb = _batch_to_teachers(batch, names)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            scores = model.method.predict(model.student, _student_input(batch, size), tb)
        probs.append(torch.sigmoid(scores.float()) if multilabel else torch.softmax(scores.float(), -1))
        videos.append(batch["video"])
        labels.append(batch["label"])
    video_ids = torch.cat(videos).cpu().numpy()
    label = torch.cat(labels).cpu().numpy()
    scores = video_level_predict(torch.cat(probs), video_ids)
    present = np.unique(video_ids)
    targets = np.zeros((scores.shape[0],) + label.shape[1:], dtype=label.dtype)
    targets[video_ids] = label
    result = evaluate(scores[present], _StoreVideos(targets[present], classes, multilabel))
    result["chance"] = (1.0 / len(classes)) if not multilabel else None
    result = {k: v for k, v in result.items() if not isinstance(v, float) or math.isfinite(v)}
    result["_predictions"] = (scores[present], targets[present], present)   # saved when the run finishes
    return result


def _bar(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, leave=False, unit="batch")
