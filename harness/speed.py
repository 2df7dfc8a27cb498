"""The speed table behind the paper's "faster": parameters, FLOPs per frame and measured
inference frames/s of each teacher, of the four together and of the student, at a preset's
model shapes, on the device that ran it.

Models carry random weights (speed does not depend on them) and run in eval mode under
``torch.no_grad`` on a batch of random inputs. A frame is one prediction: the image models
classify one image, PredNet reads the clip of ``clip_length`` frames ending at the frame, as
``cache-teachers`` runs it. Timing rounds are interleaved (every model once per round) so a
busy machine slows every row alike; the four teachers together take, per round, the sum of
their times (they run one after another); each row is the median over rounds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from harness.cache.teachers import TEACHER_TASKS
from harness.models import MODEL_PRESETS, build_model, model_cost
from harness.pretext import get_task
from harness.provenance import processor_name
from harness.utils import pick_device

STUDENT = "student"
TEACHERS_TOGETHER = "four teachers"
# the model shapes the table of each preset measures: tiny also at the paper's shapes (CPU
# allows a small batch), smoke only its own (the tests)
SHAPES = {"smoke": ("smoke",), "tiny": ("tiny", "paper"), "paper": ("paper",)}


@dataclass(frozen=True)
class SpeedSettings:
    batch: int          # frames per timed forward
    rounds: int         # timed rounds (one forward of every model each); rows are medians
    num_classes: int    # classifier outputs (the preset's dataset)


# the paper batch is scaled down on CPU: one prediction of the four teachers is ~450 GFLOPs
# (PredNet reads a 10-frame clip), about 20 s on 2 cores
SETTINGS = {"smoke": SpeedSettings(batch=4, rounds=2, num_classes=4),
            "tiny": SpeedSettings(batch=32, rounds=3, num_classes=10),
            "paper": SpeedSettings(batch=1, rounds=2, num_classes=101)}
CUDA_PAPER_BATCH = 32


def model_archs() -> dict[str, str]:
    """Row name -> arch: the four teachers (by pretext task) and the AlexNet student."""
    return {**{task: get_task(task).arch for task in TEACHER_TASKS}, STUDENT: "alexnet"}


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU model with the torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{processor_name()} ({torch.get_num_threads()} torch threads)"


def _input(model, batch: int, device: torch.device) -> torch.Tensor:
    size = model.input_size
    shape = (batch, model.clip_length, 3, size, size) if model.arch == "prednet" else (batch, 3, size, size)
    return torch.randn(shape, device=device)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_shapes(shapes: str, settings: SpeedSettings, device: torch.device) -> list[dict]:
    """One row per model and one for the four teachers together, at ``shapes``'s model sizes."""
    archs = model_archs()
    models = {name: build_model(arch, settings.num_classes, shapes).to(device).eval() for name, arch in archs.items()}
    inputs = {name: _input(m, settings.batch, device) for name, m in models.items()}
    teachers = [n for n in archs if n != STUDENT]

    def forward(name):
        def run():
            models[name].forward_features(inputs[name])
            _sync(device)
        return run

    runs = {n: forward(n) for n in models}
    for run in runs.values():   # warm-up: allocator, oneDNN primitive caches
        run()
    seconds = {n: [] for n in runs}
    for _ in range(settings.rounds):
        for n, run in runs.items():
            seconds[n].append(_timed(run))
    # the four run one after another (as cache-teachers runs them): their time in a round is the sum
    seconds[TEACHERS_TOGETHER] = [sum(round_s) for round_s in zip(*(seconds[n] for n in teachers))]
    costs = {n: model_cost(m) for n, m in models.items()}
    rows = []
    for n in [*teachers, TEACHERS_TOGETHER, STUDENT]:
        parts = teachers if n == TEACHERS_TOGETHER else [n]
        median = statistics.median(seconds[n])
        rows.append({
            "shapes": shapes, "model": n, "arch": " + ".join(archs[p] for p in parts),
            "input": MODEL_PRESETS[shapes].input_size,
            "params": sum(costs[p]["params"] for p in parts),
            # per frame the model sees (PredNet: its clip divided by the clip length) ...
            "gflops_per_frame": sum(costs[p]["mflops_per_frame"] for p in parts) / 1e3,
            # ... and per prediction (PredNet: the whole clip ending at the frame)
            "gflops_per_prediction": sum(costs[p]["mflops_per_frame"] * models[p].clip_length for p in parts) / 1e3,
            "frames_per_s": settings.batch / median,
            "batch": settings.batch, "rounds": settings.rounds,
            "seconds": [round(s, 5) for s in seconds[n]],
        })
    return rows


def speed_table(preset: str, device: str = "auto") -> dict:
    """Every row of the speed table of ``preset`` and the student-vs-teachers ratios."""
    dev = pick_device(device)
    rows, ratios = [], []
    for shapes in SHAPES[preset]:
        settings = SETTINGS[shapes]
        if shapes == "paper" and dev.type == "cuda":
            settings = SpeedSettings(CUDA_PAPER_BATCH, settings.rounds, settings.num_classes)
        measured = measure_shapes(shapes, settings, dev)
        rows += measured
        ratios.append(student_ratios(measured))
    return {"preset": preset, "device": device_name(dev), "device_type": dev.type, "rows": rows, "ratios": ratios}


def student_ratios(rows: list[dict]) -> dict:
    """The four teachers together against the student: how many times more parameters and
    FLOPs they have, and how many times more frames/s the student runs."""
    by = {r["model"]: r for r in rows}
    four, student = by[TEACHERS_TOGETHER], by[STUDENT]
    return {"shapes": student["shapes"],
            "params": four["params"] / student["params"],
            "gflops_per_prediction": four["gflops_per_prediction"] / student["gflops_per_prediction"],
            "frames_per_s": student["frames_per_s"] / four["frames_per_s"]}
