"""The generic self-supervised pretraining loop: one pretext task, one backbone, one run folder.

``pretrain(task, preset, seed, data_root, out_dir, overrides)`` decodes the unlabeled videos
once into the on-disk frame cache (read back as memory maps, so RAM holds about one video),
holds a fixed share of them out for the pretext metric, trains backbone + task head with
Adam on freshly sampled batches, and writes a run folder (the ``RunDir``
contract; keyed by the config and the unlabeled list's fingerprint):

- ``run.json``: config, code version, data fingerprint, machine;
- ``metrics.jsonl``: one line per epoch (mean loss, train pretext metric, time);
- ``state.pt``: the resume point (backbone, head, optimizer, RNG) while unfinished;
- ``checkpoint.pt``: backbone state_dict, arch, model preset, task, config, seed, code
  version, sha256 of the backbone weights (what fine-tuning loads);
- ``final.json``: held-out pretext metric before and after training, its chance level and
  the loss curve; its presence means "finished".

An unfinished run resumes from its last epoch; a finished one is returned as is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from harness.checkpoints import load_verified, load_weights, save_atomic, weights_sha256
from harness.config import ConfigError, check_bounds, check_choice, keyless_default, resolve, to_dict
from harness.data.index import open_index
from harness.data.screening import SHORT_POLICIES, VideoReport, screen
from harness.data.video import RESIZE_MODES
from harness.errors import HarnessError
from harness.pretext.base import PretextTask, get_task
from harness.provenance import code_version, fingerprint
from harness.runs import RunDir
from harness.utils import adam, pick_device, seed_everything, set_cpu_threads


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Settings of one pretraining run (``task`` holds the task's own knobs, filled per task)."""

    epochs: int                  # epochs of iters_per_epoch steps (a checkpoint and log row each)
    iters_per_epoch: int         # optimizer steps per epoch, each on a freshly sampled batch
    batch_size: int              # pretext examples sampled per step
    lr: float                    # Adam learning rate (constant)
    weight_decay: float = 0.0    # Adam L2 weight decay
    eval_fraction: float = 0.2   # share of the unlabeled videos held out for the pretext metric
    eval_batches: int = 8        # held-out batches (of batch_size) the metric is measured on
    split_seed: int = 0          # fixes the held-out videos and batches, whatever the run's seed
    decode_size: int = 0         # frames decoded at decode_size x decode_size; 0 = native size
    max_videos: int = 0          # 0 = every unlabeled video
    model_preset: str = ""       # MODEL_PRESETS entry; "" = the run's preset
    device: str = "auto"         # torch device; "auto" = cuda if available, else cpu
    task: Any = None             # the task's own knobs (its Knobs dataclass; --set task.<knob>=...)
    resize: str = keyless_default("squash")    # to decode_size: "squash" (aspect lost) or "crop" (aspect kept, centre crop)
    sample_fps: float = keyless_default(0.0)   # > 0: videos resampled to this frame rate, so frame gaps are fixed times; 0 = native frames
    short_videos: str = keyless_default("skip")  # videos with fewer frames than the task needs: "skip", "pad" or "refuse"
    skip_bad: bool = keyless_default(False)    # unreadable or truncated videos: left out and counted (--skip-bad), else an error

    def __post_init__(self):
        check_bounds(self, (("epochs", 1, False), ("iters_per_epoch", 1, False), ("batch_size", 1, False),
                            ("lr", 0, True), ("weight_decay", 0, False), ("eval_batches", 1, False),
                            ("decode_size", 0, False), ("max_videos", 0, False), ("sample_fps", 0, False)))
        check_choice(self, "resize", RESIZE_MODES)
        check_choice(self, "short_videos", SHORT_POLICIES)
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"config key 'eval_fraction': must lie in (0, 1), got {self.eval_fraction!r}")


PRETRAIN_PRESETS: dict[str, PretrainConfig] = {
    "smoke": PretrainConfig(epochs=2, iters_per_epoch=3, batch_size=4, lr=1e-3, eval_batches=2, eval_fraction=0.25),
    # ~1 minute per teacher on 2 CPU cores; tasks adjust batch/iterations in their train_presets
    "tiny": PretrainConfig(epochs=5, iters_per_epoch=40, batch_size=16, lr=3e-4, eval_batches=8),
    # real videos: the aspect ratio kept (centre crop) and every clip resampled to 25 fps, so a
    # task's frame gaps mean the same time on UCF101 (25 fps) and HMDB51 (30 fps)
    "paper": PretrainConfig(epochs=50, iters_per_epoch=1000, batch_size=64, lr=1e-4, eval_batches=50,
                            decode_size=128, weight_decay=5e-4, resize="crop", sample_fps=25.0),
}


class PretrainError(HarnessError):
    """A pretraining run that cannot start or resume (bad data root, mismatched checkpoint)."""


def task_config(task_name: str, preset: str, overrides: Mapping[str, Any] | None = None) -> PretrainConfig:
    """The resolved config of ``task_name`` on ``preset``: preset, then the task's own preset
    changes, then ``overrides`` (``{"lr": "1e-3", "task.k1": "3"}``)."""
    cls = get_task(task_name)
    base = resolve(PRETRAIN_PRESETS, preset)
    base = dataclasses.replace(base, task=cls.knobs_for(preset), **cls.train_presets.get(preset, {}))
    return resolve({preset: base}, preset, overrides or {})


def default_out_dir(task_name: str, preset: str, seed: int, config: dict) -> Path:
    """``<runs>/pretrain/<preset>/<task>-seed<S>-<config fingerprint>``: a changed task config
    (new knobs, other budgets) gets its own run instead of colliding with an old one."""
    from harness.determinism import keyed
    from harness.runs import runs_root

    return runs_root() / "pretrain" / preset / f"{task_name}-seed{seed}-{fingerprint(keyed(config))[:10]}"


def ensure_data(data_root: str | os.PathLike | None, preset: str, dataset: str = "synth") -> Path:
    """The data root to read (for the synthetic set it must hold ``unlabeled.txt``); the
    default synthetic set of smoke/tiny is generated if missing."""
    from harness.data.roots import data_root as resolve

    return resolve(preset, data_root, dataset, needs="unlabeled.txt" if dataset == "synth" else None,
                   error=PretrainError)


def decode_unlabeled(root: Path, cfg: PretrainConfig, min_frames: int = 1, progress: bool = True, index=None):
    """The unlabeled videos of ``root`` (``index``, default its ``unlabeled.txt``) decoded once into the on-disk frame cache
    (:mod:`harness.data.frame_cache`; one video in RAM at a time) and screened
    (:mod:`harness.data.screening`: short videos per ``cfg.short_videos``, unreadable or
    truncated ones per ``cfg.skip_bad``). Returns the videos (memory maps), their ids, the
    index fingerprint and the screening report."""
    from tqdm import tqdm

    from harness.data.frame_cache import DiskVideos, decode_once, frame_cache_root

    index = index if index is not None else open_index("synth", root, subset="unlabeled")
    records = list(index)[: cfg.max_videos or None]
    if not records:
        raise PretrainError(f"{', '.join(map(str, index.source)) or root}: lists no videos to pretrain on")
    size = (cfg.decode_size, cfg.decode_size) if cfg.decode_size else None
    settings = {"size": size, "resize": cfg.resize, "sample_fps": cfg.sample_fps}
    cache_root = frame_cache_root()
    decoded: dict[str, tuple[Path, tuple]] = {}     # video id -> (cache file, shape)

    def frames_of(record) -> int:
        decoded[record.video_id] = decode_once(record.path, settings, lambda p: _decode(p, size, cfg), cache_root)
        return decoded[record.video_id][1][0]

    report = VideoReport("unlabeled", min_frames, cfg.short_videos)
    bar = tqdm(records, desc="decode", unit="video", disable=not progress, leave=False)
    kept = [records[i] for i in screen(bar, frames_of, report, cfg.skip_bad)]
    videos = DiskVideos([decoded[r.video_id][0] for r in kept], [decoded[r.video_id][1] for r in kept],
                        pad_to=min_frames if cfg.short_videos == "pad" else 0)
    sizes = sorted({s[1:3] for s in videos.shapes})
    if len(sizes) > 1:   # the tasks stack frames of different videos into one batch
        raise PretrainError(f"{root / 'unlabeled.txt'}: the videos have {len(sizes)} frame sizes "
                            f"({', '.join(f'{w}x{h}' for h, w in sizes[:4])}); decode them to one with "
                            f"--set decode_size=N")
    return videos, [r.video_id for r in kept], index.fingerprint(), report


def _decode(path: Path, size, cfg: PretrainConfig) -> np.ndarray:
    """One video as pretraining reads it: resized, and resampled in time when ``sample_fps`` > 0."""
    from harness.data.video import read_video, resampled_indices

    if cfg.sample_fps > 0:
        return read_video(path, indices=resampled_indices(path, cfg.sample_fps), size=size, resize=cfg.resize)
    return read_video(path, size=size, resize=cfg.resize)


def split_videos(n: int, eval_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out video indices: a seeded permutation, at least one video on each side."""
    if n < 2:
        raise PretrainError(f"pretraining needs at least 2 unlabeled videos (one held out), got {n}")
    perm = np.random.default_rng([split_seed, 7]).permutation(n)
    n_eval = min(max(1, int(round(n * eval_fraction))), n - 1)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def _subset(videos, indices):
    """The videos at ``indices``: a list of arrays, or the frame cache's own selection."""
    return videos.select(indices) if hasattr(videos, "select") else [videos[int(i)] for i in indices]


def evaluate(task: PretextTask, backbone, head, batches: list[dict], device) -> dict:
    """The pretext metric and its chance level on fixed batches (eval mode, no gradients)."""
    backbone.eval()
    head.eval()
    total: dict[str, float] = {}
    losses = []
    with torch.no_grad():
        for batch in batches:
            loss, stats = task.step(backbone, head, batch, device)
            losses.append(float(loss))
            for k, v in stats.items():
                total[k] = total.get(k, 0.0) + v
    backbone.train()
    head.train()
    return {"metric": task.metric(total), "chance": task.chance(total), "baseline": task.baseline(total),
            "loss": float(np.mean(losses)), "stats": total}


def pretrain(task_name: str, preset: str = "tiny", seed: int = 0, data_root: str | os.PathLike | None = None,
             out_dir: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
             progress: bool = True, dataset: str = "synth", split: int = 1,
             unlabeled: str | os.PathLike | None = None) -> Path:
    """Pretrain the backbone of ``task_name`` on the unlabeled videos; return ``checkpoint.pt``'s path.

    The videos are ``harness.data.index.unlabeled_index``: the ``unlabeled`` list, else the
    root's ``unlabeled.txt``, else ``dataset``'s training split ``split`` without its labels.
    Real videos of mixed sizes are decoded to the model's input size unless ``decode_size`` is
    set. The run is keyed by the config and the unlabeled list's fingerprint, so a run trained
    on other videos is never returned for these."""
    from harness.data.index import unlabeled_index
    from harness.models import MODEL_PRESETS

    set_cpu_threads()
    cls = get_task(task_name)
    cfg = task_config(task_name, preset, overrides)
    root = ensure_data(data_root, preset, dataset)
    index = unlabeled_index(dataset, root, split, unlabeled)
    if dataset != "synth" and not cfg.decode_size:   # one frame size, whatever the release holds
        cfg = dataclasses.replace(cfg, decode_size=MODEL_PRESETS[cfg.model_preset or preset].input_size)
    data_fp = index.fingerprint()
    cfg_dict = {"task_name": task_name, "preset": preset, "seed": int(seed), **to_dict(cfg),
                "data": {"unlabeled_index": data_fp}}
    run = RunDir(Path(out_dir) if out_dir is not None else default_out_dir(task_name, preset, seed, cfg_dict))
    fp = fingerprint(cfg_dict)
    recorded = run.path / "run.json"
    if recorded.is_file() and json.loads(recorded.read_text()).get("config_fingerprint") != fp:
        raise PretrainError(f"{recorded}: belongs to a run with another config; choose another --out or delete "
                            f"that folder")
    if not run.is_finished():
        with run.exclusive():
            if not run.is_finished():   # finished by another process while this one waited
                _pretrain_run(run, cls, task_name, preset, seed, cfg, cfg_dict, fp, root, progress, index)
    return run.path / "checkpoint.pt"


def _pretrain_run(run: RunDir, cls, task_name: str, preset: str, seed: int, cfg, cfg_dict: dict, fp: str,
                  root: Path, progress: bool, index=None) -> None:
    from harness.models import build_model

    t_run = time.perf_counter()
    model_preset = cfg.model_preset or preset
    seed_everything(seed)
    device = pick_device(cfg.device)
    # the backbone's own classifier is unused while pretraining (heads sit on the embedding);
    # fine-tuning replaces it with reset_classifier
    backbone = build_model(cls.arch, 1, model_preset).to(device)
    task = cls(cfg.task, input_size=backbone.input_size)
    task.bind_model(backbone)
    # decoding draws no torch random numbers: the model is initialised as if it came first
    videos, video_ids, data_fp, report = decode_unlabeled(root, cfg, task.min_frames(), progress, index)
    report.warn()
    run.start(cfg_dict, {"data_root": str(root), "unlabeled_index": data_fp})
    train_idx, eval_idx = split_videos(len(videos), cfg.eval_fraction, cfg.split_seed)
    train_videos, eval_videos = _subset(videos, train_idx), _subset(videos, eval_idx)
    head = task.build_head(backbone.embedding_dim).to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # fixed held-out batches: the same questions before and after training, for every seed
    eval_rng = np.random.default_rng([cfg.split_seed, 11])
    eval_batches = [task.sample(eval_videos, cfg.batch_size, eval_rng) for _ in range(cfg.eval_batches)]

    state = run.load_state(fp)   # restores the torch RNG it saved
    if state is None:
        start_epoch, log, initial = 0, [], evaluate(task, backbone, head, eval_batches, device)
    else:
        backbone.load_state_dict(state["backbone"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, log, initial = state["epoch"], state["rows"], state["initial_eval"]
    resumed_loop_s = log[-1]["elapsed_s"] if log else 0.0  # the loop time of earlier processes
    log = _pretrain_epochs(run, task, backbone, head, opt, train_videos, cfg, seed, fp, start_epoch, log, initial,
                           time.perf_counter() - resumed_loop_s, task_name, progress)

    final = evaluate(task, backbone, head, eval_batches, device)
    ckpt = _checkpoint(backbone, cls, task_name, preset, model_preset, cfg_dict, seed, cfg.epochs)
    save_atomic(ckpt, run.path / "checkpoint.pt")
    run.finish({
        "task": task_name, "arch": cls.arch, "preset": preset, "seed": int(seed),
        "metric_name": cls.metric_name, "higher_is_better": cls.higher_is_better,
        "metric": final["metric"], "chance": final["chance"], "chance_note": cls.chance_note,
        "baseline": final["baseline"], "baseline_note": cls.baseline_note,
        "metric_at_init": initial["metric"], "eval_loss": final["loss"], "eval_loss_at_init": initial["loss"],
        "eval_items": final["stats"].get("n"), "eval_videos": len(eval_videos), "train_videos": len(train_videos),
        "videos": report.as_dict(),
        "loss_curve": [line["loss"] for line in log], "train_metric_curve": [line["train_metric"] for line in log],
        "train_seconds": log[-1]["elapsed_s"] if log else 0.0,
        # this process from decoding to here, plus the training loop of earlier processes when
        # resumed (their decoding is not counted)
        "run_seconds": round(time.perf_counter() - t_run + resumed_loop_s, 2),
        "weights_sha256": ckpt["weights_sha256"], "code_version": code_version(),
    }, log)


def _pretrain_epochs(run: RunDir, task, backbone, head, opt, train_videos, cfg, seed: int, fp: str,
                     start_epoch: int, log: list[dict], initial: dict, t_start: float, task_name: str,
                     progress: bool) -> list[dict]:
    """The training loop from ``start_epoch``; the resume state is saved after every epoch."""
    from tqdm import tqdm

    device = next(backbone.parameters()).device
    bar = tqdm(total=cfg.epochs * cfg.iters_per_epoch, initial=start_epoch * cfg.iters_per_epoch,
               desc=f"pretrain {task_name}", unit="it", disable=not progress, leave=False)
    backbone.train()
    head.train()
    for epoch in range(start_epoch, cfg.epochs):
        # one generator per epoch from (seed, epoch): a resumed run samples what it would have
        rng = np.random.default_rng([int(seed), epoch])
        losses, total = [], {}
        for _ in range(cfg.iters_per_epoch):
            batch = task.sample(train_videos, cfg.batch_size, rng)
            loss, stats = task.step(backbone, head, batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            for k, v in stats.items():
                total[k] = total.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        log = [*log, {"epoch": epoch + 1, "iteration": (epoch + 1) * cfg.iters_per_epoch,
                      "loss": float(np.mean(losses)), "train_metric": task.metric(total),
                      "train_chance": task.chance(total), "elapsed_s": round(time.perf_counter() - t_start, 2)}]
        run.save_state({"backbone": backbone.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                        "epoch": epoch + 1, "initial_eval": initial}, log, fp)
    bar.close()
    return log


def _checkpoint(backbone, cls, task_name, preset, model_preset, cfg_dict, seed, epoch) -> dict:
    """The pretrained backbone as fine-tuning loads it (``load_backbone``)."""
    sd = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    return {
        "backbone": sd, "arch": cls.arch, "preset": preset, "model_preset": model_preset, "task": task_name,
        "config": cfg_dict, "config_fingerprint": fingerprint(cfg_dict), "seed": int(seed),
        "code_version": code_version(), "weights_sha256": weights_sha256(sd),
        "embedding_dim": backbone.embedding_dim, "epoch": epoch, "finished": True,
    }


def load_backbone(path: str | os.PathLike, num_classes: int | None = None, verify: bool = True):
    """The pretrained backbone of ``checkpoint.pt`` (and the checkpoint dict).

    ``num_classes`` replaces its classifier (``reset_classifier``); ``verify`` checks the
    weights against the recorded sha256.
    """
    from harness.models import build_model

    path = Path(path)
    ckpt = load_verified(path, PretrainError, "pretraining checkpoint", "backbone", ("arch",), verify)
    model = build_model(ckpt["arch"], 1, ckpt.get("model_preset", ckpt["preset"]))
    load_weights(model, ckpt["backbone"], path, PretrainError,
                 f"pretraining checkpoint ({ckpt['arch']} by its 'arch' entry)")
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model, ckpt
