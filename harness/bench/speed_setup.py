"""What the figures of test_bench_speed.py share: feature stores at a preset's shapes written
by the store's own writer (random contents; speed does not depend on them), students stepped
as the distillation runner steps them, and the frozen teachers run online on a batch's frames.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from harness.cache import schema
from harness.cache.reader import StreamingReader
from harness.cache.store import FeatureStore, teacher_schema
from harness.cache.teachers import TEACHER_TASKS
from harness.cache.writer import write_store
from harness.data.transforms import apply_views_torch
from harness.distill.methods import METHODS, MethodContext, MethodSettings, TeacherBatch, build_method
from harness.distill.runner import (DISTILL_PRESETS, _batch_to_teachers, _student_input, _Trainable,
                                    optimiser_parameters, teacher_names)
from harness.distill.runner import method_context as runner_method_context
from harness.models import MODEL_PRESETS, build_model
from harness.pretext import get_task
from harness.allocator import keep_freed_memory
from harness.utils import adam

keep_freed_memory()   # as every harness command does (harness.allocator): the arms are timed as they run

NUM_CLASSES = {"smoke": 4, "tiny": 10, "paper": 101}
FRAME_SIZE = {"smoke": (32, 32), "tiny": (64, 64), "paper": (240, 320)}
VIEWS = {"smoke": 2, "tiny": 4, "paper": 2}
GR_D = {"smoke": 64, "tiny": 128, "paper": 512}


def teacher_models(preset: str) -> dict:
    """The four teachers at ``preset``'s shapes, random weights, frozen, eval mode."""
    out = {}
    for task in TEACHER_TASKS:
        model = build_model(get_task(task).arch, NUM_CLASSES[preset], preset).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        out[task] = model
    return out


def store_fields(preset: str) -> list:
    """The fields cache-teachers writes at ``preset``: conv4 pooled to the student's conv4."""
    student = build_model("alexnet", NUM_CLASSES[preset], preset)
    _, h, w = student.conv4_shape()
    with torch.device("meta"):
        shapes = {t: (m.conv4_shape()[0], h, w) for t, m in teacher_models(preset).items()}
    return teacher_schema(FRAME_SIZE[preset], VIEWS[preset], shapes, NUM_CLASSES[preset])


def random_chunk(fields, a: int, b: int, n_train: int, num_classes: int) -> dict[str, np.ndarray]:
    """Items ``a..b`` with every field filled (conv4 ReLU-like, views valid crops); items from
    ``n_train`` on are the test split."""
    rng = np.random.default_rng(a)
    n = b - a
    items = np.arange(a, b)
    out = {}
    for f in fields:
        shape = (n, *f.item_shape)
        if f.name == "frames":
            out[f.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif f.name == "views":
            v = np.empty(shape, np.float32)
            v[..., :2] = rng.random((*shape[:-1], 2)) * 0.2
            v[..., 2:4] = 0.8
            v[..., 4] = rng.integers(0, 2, shape[:-1])
            out[f.name] = v
        elif f.name.endswith("conv4"):
            out[f.name] = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0).astype(f.dtype)
        elif f.name.endswith("logits"):
            out[f.name] = rng.standard_normal(shape, dtype=np.float32)
    out["video"], out["frame"] = items // 4, items % 4
    out["label"] = (items // 4) % num_classes
    out["split"] = (items >= n_train).astype(np.uint8)
    return out


def write_random_store(path: Path, preset: str, n_items: int, n_train: int, chunk_items: int) -> FeatureStore:
    """A complete store of ``preset``'s shapes that ``harness distill --store`` accepts."""
    fields = store_fields(preset)
    c = NUM_CLASSES[preset]
    manifest = {"kind": "teacher-features", "preset": preset, "bench": "random contents",
                "dataset": {"name": "bench", "classes": [f"c{i}" for i in range(c)], "multilabel": False}}
    st = write_store(path, fields, n_items, chunk_items, manifest,
                     lambda i: random_chunk(fields, i * chunk_items, min((i + 1) * chunk_items, n_items), n_train, c),
                     progress=False)
    rng = np.random.default_rng(0)
    for name in teacher_names(st):   # random class prototypes: any (C, C) gives a valid EM ground cost
        st.put_extra(schema.prototypes_key(name), rng.standard_normal((c, c)).astype(np.float32))
    return FeatureStore.open(path)


def method_context(store: FeatureStore, preset: str) -> MethodContext:
    """What the runner builds a method from, for this store and the preset's student."""
    return runner_method_context(store, teacher_names(store), build_model("alexnet", NUM_CLASSES[preset], preset))


class Trainee:
    """One student with one method and its Adam optimiser (the preset's kernel, as the runner
    builds it), stepped as the runner steps it (forward, summed loss, backward, gradient clip,
    optimiser step)."""

    def __init__(self, method: str, ctx: MethodContext, preset: str, seed: int):
        torch.manual_seed(seed)
        student = build_model("alexnet", ctx.num_classes, preset)
        self.model = _Trainable(student, build_method(method, ctx, MethodSettings(gr_d=GR_D[preset]))).train()
        self.params = optimiser_parameters(self.model)
        self.opt = adam(self.params, DISTILL_PRESETS[preset].optimizer_kernel, lr=1e-3)

    def step(self, x: torch.Tensor, tb: TeacherBatch) -> None:
        _, terms = self.model(x, tb)
        loss = sum(terms.values())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 10.0)
        self.opt.step()


def stream(reader: StreamingReader):
    """The reader's batches epoch after epoch, as the runner draws them: one iterator (its
    producer thread and prefetch) per epoch, not one per batch."""
    while True:
        yield from reader
        reader.set_epoch(reader.epoch + 1)


def reader_fields(method: str, store: FeatureStore) -> list[str]:
    """What a run of ``method`` streams (the runner's choice)."""
    return [*schema.STUDENT_FIELDS, *schema.teacher_fields(teacher_names(store), METHODS[method].outputs)]


def train_reader(store: FeatureStore, fields, batch: int, seed: int = 0) -> StreamingReader:
    return StreamingReader(store, fields, batch, split="train", seed=seed, shuffle_buffer=4, prefetch=2,
                           view="random", drop_last=True)


def student_input(batch: dict, preset: str) -> torch.Tensor:
    return _student_input(batch, MODEL_PRESETS[preset].input_size)


def student_batch(batch: dict, preset: str, names: list[str]) -> tuple[torch.Tensor, TeacherBatch]:
    return student_input(batch, preset), _batch_to_teachers(batch, names)


class OnlineTeachers:
    """The frozen teachers run on a batch's stored frames, as cache-teachers runs them: each
    item's view cropped at the teachers' input size, conv4 pooled to the student's size. The
    store keeps one frame per item, so PredNet's clip repeats it (a real clip costs the same)."""

    def __init__(self, preset: str):
        self.preset, self.models = preset, teacher_models(preset)
        student = build_model("alexnet", NUM_CLASSES[preset], preset)
        self.conv4_hw = student.conv4_shape()[1:]
        self.size = MODEL_PRESETS[preset].input_size

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        conv4, logits = [], []
        for model in self.models.values():
            inp = x[:, None].expand(-1, model.clip_length, -1, -1, -1) if model.arch == "prednet" else x
            out = model.forward_features(inp)
            conv4.append(torch.nn.functional.adaptive_avg_pool2d(out.conv4.float(), self.conv4_hw))
            logits.append(out.logits.float())
        return conv4, logits

    def __call__(self, batch: dict) -> TeacherBatch:
        conv4, logits = self.outputs(apply_views_torch(batch["frames"], batch["views"], self.size))
        return TeacherBatch(logits=torch.stack(logits, 1), conv4=conv4, target=batch["label"])


def interleaved(arms: dict, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each arm per round, the arms run one after another within every round (so a
    busy machine slows them alike); ``warmup`` untimed rounds first."""
    seconds = {k: [] for k in arms}
    for r in range(warmup + rounds):
        for k, fn in arms.items():
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                seconds[k].append(time.perf_counter() - t0)
    return seconds


def evict(path: Path) -> None:
    """Drop every file under ``path`` from the page cache (``posix_fadvise(DONTNEED)``, which a
    process may do to files it can open; synced first, since only clean pages are dropped)."""
    for f in Path(path).rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def resident_share(path: Path) -> float | None:
    """The share of the bytes of the files under ``path`` that are in the page cache, from
    util-linux's ``fincore``; None where it is missing or fails (then a cold read is unproven)."""
    files = [str(f) for f in Path(path).rglob("*") if f.is_file()]
    exe = shutil.which("fincore")
    if not files or exe is None:
        return None
    try:
        out = subprocess.run([exe, "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", *files],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    res = size = 0
    for line in out.splitlines():
        r, n = line.split()
        res, size = res + int(r), size + int(n)
    return res / size if size else None


def median(xs) -> float:
    return statistics.median(xs)
