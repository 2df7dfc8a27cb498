"""The fine-tuning loop: initialisation, optimiser, training and video-level evaluation,
resumable through the run folder (``RunDir``)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness.checkpoints import load_verified, save_atomic, weights_sha256
from harness.errors import resumable
from harness.finetune.config import FinetuneConfig, FinetuneError, chance_level, finetune_config
from harness.finetune.data import _batches, _frame_dataset, screened_index
from harness.provenance import code_version, fingerprint, sha256_file
from harness.runs import RunDir
from harness.utils import adam, pick_device, seed_everything, sgd


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


def _lr_factor(cfg: FinetuneConfig, epoch: int) -> float:
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + float(np.cos(np.pi * epoch / cfg.epochs)))
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // cfg.step_epochs)
    return 1.0


def _optimizer(model, cfg: FinetuneConfig):
    if cfg.optimizer == "adam":
        opt = adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = sgd(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: _lr_factor(cfg, e))
    return opt, sched


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
    result = evaluate(scores, test_ds.index)
    result["_scores"] = scores   # saved with the finished run (predictions.npz), not logged
    return result


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
    ev = dict(result["eval"])
    from harness.data.frames import save_predictions

    save_predictions(run.path, ev.pop("_scores"), index.targets(), np.arange(len(index)))
    final = {**meta, "metric": ev["metric"], "value": ev["value"], "eval": ev,
             "test_curve": [[r["epoch"], r["test_value"]] for r in result["log"] if "test_value" in r],
             "train_loss_curve": [r["train_loss"] for r in result["log"]],
             "run_seconds": round(result["elapsed_s"], 2), "weights_sha256": sha,
             "checkpoint_sha256": sha256_file(run.path / "checkpoint.pt"), "seed": int(seed),
             "code_version": code_version(), **chance_level(index)}
    if isinstance(meta.get("split"), int):
        final["per_split"] = {str(meta["split"]): ev["value"]}
    run.finish(final, result["log"])


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
    train_index, train_report = screened_index(train_index, cfg, True, "train")
    test_index, test_report = screened_index(test_index, cfg, False, "test")
    train_ds = _frame_dataset(train_index, cfg, True, model.input_size, clip_length, seed)
    test_ds = _frame_dataset(test_index, cfg, False, model.input_size, clip_length, seed)
    decode_s = time.perf_counter() - t0
    with resumable(run.path):
        result = _train(run, model, train_ds, test_ds, cfg, fingerprint(cfg_dict), seed, device,
                        train_index.multilabel, f"{run.path.name[:40]}", progress, on_epoch_end)
    meta = {"arch": arch, "preset": preset, "model_preset": model_preset, "init": init, "init_summary": init_summary,
            "clip_length": clip_length, "epochs": cfg.epochs, "train_videos": len(train_index),
            "test_videos": len(test_index), "train_items_per_epoch": len(train_ds), "test_items": len(test_ds),
            "decode_seconds": round(decode_s, 2),
            "videos": {"train": train_report.as_dict(), "test": test_report.as_dict()}, **extra_meta}
    _finish(run, model, result, meta, test_index, cfg_dict, seed)
