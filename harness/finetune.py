"""Fine-tuning a backbone for classification and scoring it at the video level.

``finetune(arch, init, preset, seed, ...)`` trains ``arch`` frame by frame on the labeled
training split (random frames, random views; clips ending at the sampled frame for PredNet)
and scores it on the test split at the video level (mean softmax over evenly spaced frames
and fixed test views, :func:`harness.data.frames.evaluate`: accuracy, or mAP for CCV).

Initialisations (the rows of Table 1):

- ``random``: the model's own initialisation (the AlexNet_ran row);
- ``pretext``: the backbone of a ``harness pretrain`` checkpoint (keys that do not fit, e.g.
  the pretext head, are skipped and listed in ``final.json``);
- ``supervised``: a first training stage on the synthetic set's ``disjoint`` classes (none of
  them a benchmark class), with its own run folder, then fine-tuning (the AlexNet_pre row on
  smoke/tiny, the stand-in for ImageNet pretraining);
- ``file``: a local ``.pth`` (e.g. torchvision's ImageNet ``alexnet`` weights for the paper
  preset) loaded with :func:`harness.models.load_matching_state_dict`.

Every run writes a :class:`~harness.runs.RunDir` keyed by the fingerprint of its config (the
training settings, the init source's weight hash and the dataset index fingerprints):
``run.json``, ``metrics.jsonl`` (per epoch: lr, train loss/accuracy, test metric),
``checkpoint.pt`` (the fine-tuned model, see :func:`load_finetuned`) and ``final.json``. An
unfinished run resumes from ``state.pt`` (model, optimizer, scheduler, epoch, torch RNG);
a finished one is returned without training. See docs/FINETUNE.md.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from harness.checkpoints import load_verified, save_atomic, weights_sha256
from harness.config import resolve, to_dict
from harness.errors import HarnessError
from harness.provenance import code_version, fingerprint, sha256_file
from harness.runs import RunDir
from harness.utils import pick_device, seed_everything, set_cpu_threads

INITS = ("random", "pretext", "supervised", "file")


class FinetuneError(HarnessError):
    """A fine-tuning run that cannot start (bad init/checkpoint, missing data); one line."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (``--set key=value`` overrides any field)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"                    # "sgd" (with momentum) | "adam"
    momentum: float = 0.9                     # SGD momentum (Adam: beta1 stays 0.9)
    weight_decay: float = 5e-4
    schedule: str = "cosine"                  # "cosine" (to 0 over the epochs) | "step" | "constant"
    step_epochs: int = 10                     # "step": lr *= gamma every step_epochs epochs
    gamma: float = 0.1
    train_frames: int = 2                     # frames per training video and epoch (one per segment)
    test_frames: int = 5                      # evenly spaced frames per test video
    test_crops: int = 1                       # fixed test views per frame: 1 centre, 5 +corners, 10 +mirrors
    view_scale: tuple[float, float] = (0.5, 1.0)   # random crop area range of training views
    center_scale: float = 0.875               # side of the centre test crop / the short side
    clip_length: int = 0                      # frames per item; 0 = the model's (PredNet's clip, else 1)
    decode_size: int = 0                      # decode frames at decode_size^2; 0 = native size
    cache_decoded: bool = True                # keep decoded videos in memory (small sets only)
    num_workers: int = 0                      # DataLoader worker processes; 0 = load in the main process
    eval_every: int = 1                       # test metric every k epochs (always after the last)
    supervised_epochs: int = 0                # init "supervised": epochs of the disjoint-class stage
    supervised_holdout: float = 0.2           # share of disjoint videos held out to score that stage
    model_preset: str = ""                    # MODEL_PRESETS entry; "" = the run's preset
    device: str = "auto"


FINETUNE_PRESETS: dict[str, FinetuneConfig] = {
    # seconds on a CPU, for tests
    "smoke": FinetuneConfig(epochs=2, batch_size=16, lr=0.01, train_frames=1, test_frames=2,
                            supervised_epochs=1),
    # about a minute per model on 2 CPU cores (docs/FINETUNE.md has the timings). 8 frames per
    # video and epoch: with 4 the BN AlexNet was still near chance after 10 epochs. The
    # supervised stage needs 24 epochs: shapes start to be learned around epoch 8-10, and with
    # 10 cosine epochs the lr has decayed by then (held-out 0.34 vs 0.74 with 24).
    "tiny": FinetuneConfig(epochs=12, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=1e-4,
                           train_frames=8, test_frames=4, eval_every=4, supervised_epochs=24),
    # UCF101/HMDB51/CCV on a GPU: the usual fine-tuning recipe of the self-supervised video
    # papers the Table 1 rows come from (SGD, step decay, 25 test frames, ten-crop)
    "paper": FinetuneConfig(epochs=30, batch_size=128, lr=0.01, schedule="step", step_epochs=10, gamma=0.1,
                            train_frames=5, test_frames=25, test_crops=10, decode_size=256, eval_every=5,
                            supervised_epochs=30, cache_decoded=False, num_workers=8),
}

# Per-arch changes applied on top of a preset (before user overrides): a PredNet item is a
# clip of clip_length frames, so it gets fewer items per epoch to keep the same time budget.
ARCH_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {},
    "tiny": {"prednet": {"epochs": 6, "train_frames": 1, "test_frames": 2, "batch_size": 16, "eval_every": 3,
                         "supervised_epochs": 6},
             # SGD for the AlexNet rows: with Adam the from-scratch fine-tune was seed-unstable
             # (random init 44.3 / 12.1 / 39.3% over seeds 0-2; 36.4 / 46.4 / 50.0% with SGD) and
             # the shuffle / odd-one-out inits stalled (20.0 / 23.6%; 44.3 / 50.7% with SGD)
             "alexnet": {"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4}},
    "paper": {"prednet": {"batch_size": 32}},
}


def finetune_config(arch: str, preset: str, overrides: Mapping[str, Any] | None = None) -> FinetuneConfig:
    """The resolved config: ``FINETUNE_PRESETS[preset]``, then ``ARCH_PRESETS[preset][arch]``,
    then ``overrides`` (strings from ``--set`` are converted to the field's type)."""
    base = resolve(FINETUNE_PRESETS, preset)
    base = dataclasses.replace(base, **ARCH_PRESETS.get(preset, {}).get(arch, {}))
    cfg = resolve({preset: base}, preset, overrides or {})
    _check_config(cfg)
    return cfg


def _check_config(cfg: FinetuneConfig) -> None:
    from harness.config import ConfigError
    from harness.data.frames import FIXED_CROP_COUNTS

    problems = [
        (cfg.epochs >= 1, "epochs must be >= 1"),
        (cfg.batch_size >= 1, "batch_size must be >= 1"),
        (cfg.lr > 0, "lr must be > 0"),
        (cfg.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}"),
        (cfg.schedule in ("cosine", "step", "constant"),
         f"schedule must be 'cosine', 'step' or 'constant', got {cfg.schedule!r}"),
        (cfg.step_epochs >= 1, "step_epochs must be >= 1"),
        (cfg.train_frames >= 1 and cfg.test_frames >= 1, "train_frames and test_frames must be >= 1"),
        (cfg.test_crops in FIXED_CROP_COUNTS, f"test_crops must be one of {FIXED_CROP_COUNTS}"),
        (cfg.clip_length >= 0, "clip_length must be >= 0"),
        (cfg.eval_every >= 1, "eval_every must be >= 1"),
        (cfg.num_workers >= 0, "num_workers must be >= 0"),
        (0.0 < cfg.supervised_holdout < 1.0, "supervised_holdout must be in (0, 1)"),
    ]
    for ok, msg in problems:
        if not ok:
            raise ConfigError(f"finetune config: {msg}")


# ---- data ---------------------------------------------------------------------------------

def resolve_data_root(dataset: str, data_root: str | os.PathLike | None, preset: str) -> Path:
    """The dataset folder to read (``harness.data.roots.data_root``)."""
    from harness.data.roots import data_root as resolve

    return resolve(preset, data_root, dataset, error=FinetuneError)


# Decoded videos shared by every run of this process (table1 fine-tunes several models on
# the same split): each video is decoded once. Only filled when cache_decoded is on.
_DECODE_CACHE: dict = {}


def clear_decode_cache() -> None:
    """Free the decoded videos kept for the runs of this process."""
    _DECODE_CACHE.clear()


def _frame_dataset(index, cfg: FinetuneConfig, train: bool, size: int, clip_length: int, seed: int):
    from harness.data.frames import FrameDataset

    ds = FrameDataset(index, cfg.train_frames if train else cfg.test_frames, train=train, size=size, seed=seed,
                      decode_size=cfg.decode_size or None, view_scale=tuple(cfg.view_scale),
                      center_scale=cfg.center_scale, clip_length=clip_length,
                      test_crops=1 if train else cfg.test_crops, cache_decoded=cfg.cache_decoded,
                      shared_cache=_DECODE_CACHE if cfg.cache_decoded else None)
    return ds.preload()


def chance_level(index) -> dict:
    """The metric a guess without looking reaches: accuracy 1/C for uniform random guesses
    (and the majority-class rate, a stronger blind baseline); for mAP, the mean prevalence of
    the scored classes (the expected AP of random scores)."""
    y = index.targets()
    if index.multilabel:
        prev = y.mean(0)
        prev = prev[y.sum(0) > 0]
        return {"chance": float(prev.mean()), "chance_note": "mean class prevalence (expected AP of random scores)"}
    counts = np.bincount(y, minlength=index.num_classes)
    return {"chance": 1.0 / index.num_classes, "majority_rate": float(counts.max() / counts.sum()),
            "chance_note": "1 / number of classes (uniform random guess)"}


# ---- model and init --------------------------------------------------------------------------

def _read_pretext_checkpoint(path: Path) -> dict:
    ckpt = load_verified(path, FinetuneError, "pretraining checkpoint", "backbone", ("arch",))
    if not ckpt.get("finished", True):
        raise FinetuneError(f"{path}: pretraining has not finished (epoch {ckpt.get('epoch')}); run it to the end first")
    return ckpt


def _init_source(init: str, arch: str, model_preset: str, checkpoint, stage_fp: str | None) -> dict:
    """What identifies the starting weights (goes into the run's config fingerprint)."""
    if init == "random":
        if checkpoint is not None:
            raise FinetuneError(f"{checkpoint}: --checkpoint is only used with --init pretext or file")
        return {}
    if init == "supervised":
        if checkpoint is not None:
            raise FinetuneError(f"{checkpoint}: --init supervised trains its own first stage; drop --checkpoint")
        return {"stage_config_fingerprint": stage_fp}
    if checkpoint is None:
        raise FinetuneError(f"--init {init} needs --checkpoint PATH")
    path = Path(checkpoint)
    if init == "pretext":
        ckpt = _read_pretext_checkpoint(path)
        if ckpt["arch"] != arch:
            raise FinetuneError(f"{path}: a {ckpt['arch']} checkpoint (task {ckpt.get('task')}), not {arch}")
        got = ckpt.get("model_preset", ckpt.get("preset"))
        if got != model_preset:
            raise FinetuneError(f"{path}: trained with model preset {got!r}, this run uses {model_preset!r}")
        return {"task": ckpt.get("task"), "weights_sha256": ckpt["weights_sha256"],
                "pretext_config_fingerprint": ckpt.get("config_fingerprint")}
    if not path.is_file():
        raise FinetuneError(f"{path}: weights file not found")
    return {"file_sha256": sha256_file(path)}


def _apply_init(model, init: str, checkpoint, stage_ckpt: Path | None, num_classes: int) -> dict:
    """Load the starting weights into ``model``; return the loaded/skipped summary."""
    from harness.models import load_matching_state_dict

    if init == "random":
        return {"source": None, "loaded": 0, "skipped": [], "classifier_reset": False}
    if init == "pretext":
        ckpt = _read_pretext_checkpoint(Path(checkpoint))
        # the pretext head is offered too, so the summary names it among the skipped keys
        sd = dict(ckpt["backbone"])
        sd.update({f"pretext_head.{k}": v for k, v in (ckpt.get("head") or {}).items()})
        loaded, skipped = load_matching_state_dict(model, sd)
        source = str(checkpoint)
    elif init == "supervised":
        loaded, skipped = load_matching_state_dict(model, stage_ckpt)
        source = str(stage_ckpt)
    else:
        loaded, skipped = load_matching_state_dict(model, checkpoint)
        source = str(checkpoint)
    # a fresh last layer for this dataset's classes, whatever the source's head was
    model.reset_classifier(num_classes)
    return {"source": source, "loaded": len(loaded), "loaded_keys": loaded,
            "skipped": [list(s) for s in skipped], "classifier_reset": True}


# ---- training and evaluation -----------------------------------------------------------------

def _lr_factor(cfg: FinetuneConfig, epoch: int) -> float:
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + float(np.cos(np.pi * epoch / cfg.epochs)))
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // cfg.step_epochs)
    return 1.0


def _optimizer(model, cfg: FinetuneConfig):
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: _lr_factor(cfg, e))
    return opt, sched


def _batches(dataset, order, batch_size: int, num_workers: int = 0):
    """Collated batches of ``dataset`` items in ``order`` (the same batches with or without workers)."""
    from torch.utils.data import DataLoader, default_collate

    if num_workers > 0:
        # A generator of its own: DataLoader seeds its workers by drawing from the global torch
        # RNG unless given one, which shifted the training run's dropout stream and made the
        # result depend on num_workers (items are seeded by (seed, epoch, video), not by workers)
        yield from DataLoader(dataset, batch_size=batch_size, sampler=[int(i) for i in order],
                              num_workers=num_workers, persistent_workers=False,
                              generator=torch.Generator().manual_seed(0))
        return
    for start in range(0, len(order), batch_size):
        yield default_collate([dataset[int(i)] for i in order[start:start + batch_size]])


def _loss(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels)


def _hits(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> int:
    """Training items whose top class is right (multi-label: is one of the positives)."""
    top = logits.argmax(1)
    if multilabel:
        return int(labels.gather(1, top[:, None]).gt(0.5).sum())
    return int((top == labels).sum())


def training_step(arch: str, preset: str, num_classes: int = 10, seed: int = 0) -> Callable[[], None]:
    """One fine-tuning step of ``arch`` (forward, loss, backward, the preset's optimizer) at the
    shapes ``finetune`` trains with on ``preset`` (batch, clip length, input side), on random
    inputs, on the device it trains on, as a callable. The unit of compute of a fine-tune: the
    speed report times it (benchmarks/test_bench_finetune.py), and ``harness teachers`` times
    it beside a budget so that budgets measured on machines of different speed can be compared."""
    from harness.models import build_model

    cfg = finetune_config(arch, preset)
    device = pick_device(cfg.device)
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG stream is left as it was
        torch.manual_seed(seed)
        model = build_model(arch, num_classes, cfg.model_preset or preset).train()
        clip = cfg.clip_length or model.clip_length
        image = (3, model.input_size, model.input_size)
        x = torch.randn((cfg.batch_size, *image) if clip == 1 else (cfg.batch_size, clip, *image))
        y = torch.randint(0, num_classes, (cfg.batch_size,))
    model, x, y = model.to(device), x.to(device), y.to(device)
    opt, _ = _optimizer(model, cfg)

    def step() -> None:
        loss = _loss(model(x), y, multilabel=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def reference_step_ms(preset: str, rounds: int = 7, steps: int = 3) -> float:
    """Median milliseconds of one fine-tuning step of the preset's VGG teacher (its batch,
    shapes and optimizer; ``harness.finetune.training_step``) on this machine, now."""
    step = training_step("vgg19_teacher", preset)
    # CUDA runs asynchronously: wait for the queued steps before reading the clock
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    step()  # warm-up: allocator and kernel selection
    sync()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - t0) / steps)
    return 1e3 * statistics.median(times)


@torch.no_grad()
def predict_videos(model, dataset, batch_size: int, device, multilabel: bool = False,
                   progress: bool = False, num_workers: int = 0) -> np.ndarray:
    """Video-level scores ``(len(dataset.index), C)``: the mean over each video's items
    (frames x test views) of the softmax (sigmoid for multi-label sets) of the model's logits."""
    from tqdm import tqdm

    from harness.data.frames import video_level_predict

    was_training = model.training
    model.eval()
    probs, vids = [], []
    order = np.arange(len(dataset))
    n_batches = -(-len(order) // batch_size)
    for batch in tqdm(_batches(dataset, order, batch_size, num_workers), total=n_batches, desc="eval", unit="batch",
                      disable=not progress, leave=False):
        logits = model(batch["frames"].to(device)).float()
        p = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
        probs.append(p.cpu())
        vids.append(batch["video"])
    model.train(was_training)
    return video_level_predict(torch.cat(probs), torch.cat(vids), len(dataset.index))


def _evaluate(model, test_ds, cfg, device, multilabel, progress) -> dict:
    from harness.data.frames import evaluate

    scores = predict_videos(model, test_ds, cfg.batch_size, device, multilabel, progress, cfg.num_workers)
    return evaluate(scores, test_ds.index)


def _train(run: RunDir, model, train_ds, test_ds, cfg: FinetuneConfig, cfg_fp: str, seed: int, device,
           multilabel: bool, desc: str, progress: bool, on_epoch_end: Callable[[int, dict], None] | None) -> dict:
    """Train ``model`` for ``cfg.epochs`` in ``run`` (resuming from ``state.pt``), scoring it
    on ``test_ds`` every ``eval_every`` epochs and after the last; return the final test
    result, the per-epoch log and the elapsed seconds."""
    from tqdm import tqdm

    opt, sched = _optimizer(model, cfg)
    log: list[dict] = []
    start_epoch, elapsed_before = 0, 0.0
    state = run.load_state(cfg_fp)   # restores the torch RNG it saved
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, log, elapsed_before = state["epoch"], state["rows"], state["elapsed_s"]
    t0 = time.perf_counter()
    last_eval = None
    bar = tqdm(range(start_epoch, cfg.epochs), initial=start_epoch, total=cfg.epochs, desc=desc, unit="epoch",
               disable=not progress)
    model.train()
    for epoch in bar:
        train_ds.set_epoch(epoch)
        # the order depends on (seed, epoch) only: a resumed run sees what it would have seen
        order = np.random.default_rng([int(seed), epoch, 1]).permutation(len(train_ds))
        lr = opt.param_groups[0]["lr"]
        loss_sum, hits, n = 0.0, 0, 0
        n_batches = -(-len(order) // cfg.batch_size)
        for batch in tqdm(_batches(train_ds, order, cfg.batch_size, cfg.num_workers), total=n_batches, desc=f"epoch {epoch + 1}",
                          unit="batch", disable=not progress, leave=False):
            x, y = batch["frames"].to(device), batch["label"].to(device)
            logits = model(x)
            loss = _loss(logits, y, multilabel)
            if not torch.isfinite(loss):
                raise FinetuneError(f"{run.path}: training diverged (loss {float(loss)} at epoch {epoch + 1}); "
                                    f"lower lr with --set lr=...")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(x)
            hits += _hits(logits.detach(), y, multilabel)
            n += len(x)
        sched.step()
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n, "train_accuracy": hits / n}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            last_eval = _evaluate(model, test_ds, cfg, device, multilabel, progress)
            row["test_metric"], row["test_value"] = last_eval["metric"], last_eval["value"]
        row["elapsed_s"] = round(elapsed_before + time.perf_counter() - t0, 3)
        log.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", **({"test": f"{row['test_value']:.3f}"}
                                                            if "test_value" in row else {}))
        run.save_state({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "epoch": epoch + 1, "elapsed_s": row["elapsed_s"]}, log, cfg_fp)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    bar.close()
    if last_eval is None:  # resumed after the last epoch's state was saved but before finishing
        last_eval = _evaluate(model, test_ds, cfg, device, multilabel, progress)
    return {"eval": last_eval, "log": log, "elapsed_s": elapsed_before + time.perf_counter() - t0}


def _finish(run: RunDir, model, result: dict, meta: dict, index, cfg_dict: dict, seed: int) -> None:
    """Write ``checkpoint.pt`` then ``final.json`` (the marker of a finished run); drop state.pt."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    sha = weights_sha256(sd)
    ckpt = {"state_dict": sd, "arch": meta["arch"], "preset": meta["preset"], "model_preset": meta["model_preset"],
            "num_classes": index.num_classes, "classes": list(index.classes), "multilabel": index.multilabel,
            "clip_length": meta["clip_length"], "input_size": model.input_size, "init": meta["init"],
            "config": cfg_dict, "config_fingerprint": fingerprint(cfg_dict), "seed": int(seed),
            "code_version": code_version(), "weights_sha256": sha}
    save_atomic(ckpt, run.path / "checkpoint.pt")
    ev = result["eval"]
    final = {**meta, "metric": ev["metric"], "value": ev["value"], "eval": ev,
             "test_curve": [[r["epoch"], r["test_value"]] for r in result["log"] if "test_value" in r],
             "train_loss_curve": [r["train_loss"] for r in result["log"]],
             "run_seconds": round(result["elapsed_s"], 2), "weights_sha256": sha,
             "checkpoint_sha256": sha256_file(run.path / "checkpoint.pt"), "seed": int(seed),
             "code_version": code_version(), **chance_level(index)}
    if isinstance(meta.get("split"), int):
        final["per_split"] = {str(meta["split"]): ev["value"]}
    run.finish(final, result["log"])


# ---- the supervised first stage (init "supervised") -----------------------------------------

# Overrides that reach the supervised stage; the others (lr, epochs, ...) change only the
# fine-tuning, so trying fine-tuning settings reuses one finished stage.
STAGE_KEYS = ("supervised_epochs", "supervised_holdout", "model_preset", "device", "decode_size",
              "cache_decoded", "num_workers")


def _stage_plan(arch: str, preset: str, seed: int, root: Path, overrides: Mapping[str, Any] | None):
    from harness.data.index import open_index

    cfg = finetune_config(arch, preset, {k: v for k, v in (overrides or {}).items() if k in STAGE_KEYS})
    if cfg.supervised_epochs < 1:
        raise FinetuneError(f"init 'supervised' needs supervised_epochs >= 1 (preset {preset!r} has "
                            f"{cfg.supervised_epochs}); pass --set supervised_epochs=N")
    index = open_index("synth", root, 1, "disjoint")
    # the held-out videos are fixed by the data, not by the run's seed (as in pretraining)
    perm = np.random.default_rng([0, 17]).permutation(len(index))
    n_hold = min(max(1, int(round(len(index) * cfg.supervised_holdout))), len(index) - 1)
    train_idx, hold_idx = index.select(np.sort(perm[n_hold:])), index.select(np.sort(perm[:n_hold]))
    stage_cfg = dataclasses.replace(cfg, epochs=cfg.supervised_epochs)
    train = {k: v for k, v in to_dict(stage_cfg).items() if not k.startswith("supervised_") or k == "supervised_holdout"}
    cfg_dict = {"stage": "supervised-pretrain", "arch": arch, "preset": preset,
                "model_preset": cfg.model_preset or preset, "seed": int(seed), "train": train,
                "data": {"dataset": "synth", "subset": "disjoint", "index": index.fingerprint()}}
    return cfg_dict, stage_cfg, train_idx, hold_idx


def supervised_pretrain(arch: str, preset: str = "tiny", seed: int = 0, data_root: str | os.PathLike | None = None,
                        overrides: Mapping[str, Any] | None = None, progress: bool = True) -> RunDir:
    """Supervised training of ``arch`` from scratch on the synthetic ``disjoint`` classes (the
    AlexNet_pre stand-in), ``supervised_epochs`` epochs, scored on a fixed held-out share of
    those videos, with the preset's other settings (of ``overrides`` only :data:`STAGE_KEYS`
    apply). Its own run folder (``<runs>/pretrain-supervised/<preset>/...``), reused when
    finished; ``checkpoint.pt`` as in :func:`finetune`."""
    set_cpu_threads()
    root = resolve_data_root("synth", data_root, preset)
    cfg_dict, stage_cfg, train_idx, hold_idx = _stage_plan(arch, preset, seed, root, overrides)
    run = RunDir.for_config("pretrain-supervised", preset, f"{arch}-disjoint-seed{seed}", cfg_dict)
    if run.is_finished():
        return run
    run.start(cfg_dict, {"data_root": str(root), "disjoint_index": cfg_dict["data"]["index"]})
    _run_training(run, arch, "random", preset, seed, cfg_dict, stage_cfg, train_idx, hold_idx, None, None,
                  {"dataset": "synth", "subset": "disjoint"}, progress, None)
    return run


def _run_training(run, arch, init, preset, seed, cfg_dict, cfg, train_index, test_index, checkpoint, stage_ckpt,
                  extra_meta, progress, on_epoch_end) -> None:
    from harness.models import build_model

    model_preset = cfg.model_preset or preset
    device = pick_device(cfg.device)
    seed_everything(seed)
    model = build_model(arch, train_index.num_classes, model_preset)
    init_summary = _apply_init(model, init, checkpoint, stage_ckpt, train_index.num_classes)
    model = model.to(device)
    clip_length = cfg.clip_length or model.clip_length
    t0 = time.perf_counter()
    train_ds = _frame_dataset(train_index, cfg, True, model.input_size, clip_length, seed)
    test_ds = _frame_dataset(test_index, cfg, False, model.input_size, clip_length, seed)
    decode_s = time.perf_counter() - t0
    result = _train(run, model, train_ds, test_ds, cfg, fingerprint(cfg_dict), seed, device, train_index.multilabel,
                    f"{run.path.name[:40]}", progress, on_epoch_end)
    meta = {"arch": arch, "preset": preset, "model_preset": model_preset, "init": init, "init_summary": init_summary,
            "clip_length": clip_length, "epochs": cfg.epochs, "train_videos": len(train_index),
            "test_videos": len(test_index), "train_items_per_epoch": len(train_ds), "test_items": len(test_ds),
            "decode_seconds": round(decode_s, 2), **extra_meta}
    _finish(run, model, result, meta, test_index, cfg_dict, seed)


# ---- fine-tuning ---------------------------------------------------------------------------

def _splits_of(dataset: str, split) -> list[int]:
    if split == "all":
        return [1] if dataset == "ccv" else [1, 2, 3]
    try:
        s = int(split)
    except (TypeError, ValueError):
        raise FinetuneError(f"split must be 1, 2, 3 or 'all', got {split!r}") from None
    if s not in (1, 2, 3):
        raise FinetuneError(f"split must be 1, 2, 3 or 'all', got {split!r}")
    return [s]


def finetune(arch: str, init: str, preset: str = "tiny", seed: int = 0, dataset: str = "synth",
             data_root: str | os.PathLike | None = None, split: int | str = 1,
             checkpoint: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
             progress: bool = True, on_epoch_end: Callable[[int, dict], None] | None = None) -> RunDir:
    """Fine-tune ``arch`` from ``init`` on ``dataset``'s labeled train split ``split`` and score
    it on the test split at the video level; return the finished run folder.

    ``checkpoint``: the pretext ``checkpoint.pt`` (init "pretext") or weights file (init
    "file"). ``split="all"``: one run per split (CCV has one) and a summary run whose
    ``final.json`` holds the per-split values and their mean (no checkpoint of its own).
    ``on_epoch_end(epoch, row)`` is called after each epoch's state is saved (tests use it
    to interrupt a run). A finished run with the same config fingerprint is returned as is.
    """
    from harness.data.index import open_index
    from harness.models import MODEL_REGISTRY

    set_cpu_threads()
    if arch not in MODEL_REGISTRY:
        raise FinetuneError(f"unknown arch {arch!r}; choose one of {', '.join(sorted(MODEL_REGISTRY))}")
    if init not in INITS:
        raise FinetuneError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    splits = _splits_of(dataset, split)
    if split == "all":
        return _finetune_all(arch, init, preset, seed, dataset, data_root, splits, checkpoint, overrides, progress)
    split = splits[0]
    cfg = finetune_config(arch, preset, overrides)
    model_preset = cfg.model_preset or preset
    root = resolve_data_root(dataset, data_root, preset)
    train_index = open_index(dataset, root, split, "train")
    test_index = open_index(dataset, root, split, "test")
    if train_index.classes != test_index.classes:
        raise FinetuneError(f"{root}: train and test splits list different classes")

    stage_run, stage_fp = None, None
    if init == "supervised":
        if dataset != "synth":
            raise FinetuneError(f"init 'supervised' pretrains on the synthetic set's disjoint classes; for {dataset} "
                                f"use --init file --checkpoint <ImageNet weights .pth>")
        stage_fp = fingerprint(_stage_plan(arch, preset, seed, root, overrides)[0])
    source = _init_source(init, arch, model_preset, checkpoint, stage_fp)

    train = to_dict(cfg)
    if init != "supervised":  # the stage's knobs do not change this run
        train = {k: v for k, v in train.items() if not k.startswith("supervised_")}
    cfg_dict = {"stage": "finetune", "arch": arch, "init": init, "init_source": source, "preset": preset,
                "model_preset": model_preset, "seed": int(seed), "dataset": dataset, "split": split, "train": train,
                "data": {"train_index": train_index.fingerprint(), "test_index": test_index.fingerprint()}}
    name = f"{arch}-{init}" + (f"-{source['task']}" if init == "pretext" else "") + f"-{dataset}-s{split}-seed{seed}"
    run = RunDir.for_config("finetune", preset, name, cfg_dict)
    if run.is_finished():
        return run
    if init == "supervised":
        stage_run = supervised_pretrain(arch, preset, seed, root, overrides, progress)
    inputs = {"data_root": str(root), "train_index": train_index.fingerprint(),
              "test_index": test_index.fingerprint()}
    if checkpoint is not None:
        inputs["checkpoint"] = str(checkpoint)
    if stage_run is not None:
        inputs["supervised_stage"] = str(stage_run.path)
    run.start(cfg_dict, inputs)
    extra = {"dataset": dataset, "split": split}
    if stage_run is not None:
        st = stage_run.final()
        extra["supervised_stage"] = {"run": str(stage_run.path), "heldout_metric": st["metric"],
                                     "heldout_value": st["value"], "chance": st["chance"]}
    _run_training(run, arch, init, preset, seed, cfg_dict, cfg, train_index, test_index, checkpoint,
                  stage_run.path / "checkpoint.pt" if stage_run is not None else None, extra, progress, on_epoch_end)
    return run


def _finetune_all(arch, init, preset, seed, dataset, data_root, splits, checkpoint, overrides, progress) -> RunDir:
    runs = [finetune(arch, init, preset, seed, dataset, data_root, s, checkpoint, overrides, progress) for s in splits]
    finals = [r.final() for r in runs]
    cfg_dict = {"stage": "finetune-all-splits", "splits": {str(s): r.path.name for s, r in zip(splits, runs)}}
    run = RunDir.for_config("finetune", preset, f"{arch}-{init}-{dataset}-all-seed{seed}", cfg_dict)
    if run.is_finished():
        return run
    run.start(cfg_dict, {str(s): str(r.path) for s, r in zip(splits, runs)})
    values = [f["value"] for f in finals]
    run.finish({"arch": arch, "init": init, "preset": preset, "dataset": dataset, "split": "all", "seed": int(seed),
                "metric": finals[0]["metric"], "value": float(np.mean(values)),
                "per_split": {str(s): v for s, v in zip(splits, values)},
                "runs": {str(s): str(r.path) for s, r in zip(splits, runs)},
                "chance": float(np.mean([f["chance"] for f in finals])), "chance_note": finals[0]["chance_note"],
                "run_seconds": round(sum(f["run_seconds"] for f in finals), 2), "code_version": code_version()})
    return run


def finetune_pretext(task: str, preset: str = "tiny", seed: int = 0, dataset: str = "synth",
                     data_root: str | os.PathLike | None = None, split: int | str = 1,
                     overrides: Mapping[str, Any] | None = None, pretext_overrides: Mapping[str, Any] | None = None,
                     progress: bool = True) -> RunDir:
    """One Table 1 row: pretrain ``task`` (reusing its finished checkpoint) and fine-tune its
    backbone; returns the fine-tuning run."""
    from harness.pretext.base import get_task
    from harness.pretext.train import pretrain

    cls = get_task(task)
    # pretrain() keys its run folder by config, returns a finished checkpoint at once and
    # resumes an unfinished one
    unlabeled_root = data_root if data_root is not None else (
        resolve_data_root(dataset, None, preset) if dataset == "synth" else None)
    ckpt = pretrain(task, preset, seed, unlabeled_root, None, pretext_overrides, progress)
    return finetune(cls.arch, "pretext", preset, seed, dataset, data_root, split, ckpt, overrides, progress)


def load_finetuned(path: str | os.PathLike, verify: bool = True):
    """The fine-tuned model of a ``checkpoint.pt`` written by :func:`finetune` (eval mode) and
    the checkpoint dict; ``verify`` checks the weights against their recorded sha256."""
    from harness.models import build_model

    path = Path(path)
    ckpt = load_verified(path, FinetuneError, "fine-tuned checkpoint", "state_dict", ("arch", "num_classes"), verify)
    model = build_model(ckpt["arch"], ckpt["num_classes"], ckpt["model_preset"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt
