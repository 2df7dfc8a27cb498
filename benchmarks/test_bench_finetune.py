"""Speed of one fine-tuning step (forward, backward, Adam) of each tiny-preset backbone at the
shapes `harness finetune --preset tiny` trains with, and what that makes the teachers'
fine-tuning cost in compute on this machine.

The issue's budget for the four tiny teachers (pretraining + fine-tuning in under 10 minutes
on 2 cores) depends on the machine as much as on the code: runs with identical results took
twice as long in one session as in another (docs/FINETUNE.md). This report gives the step
time to normalise such figures: run it beside a budget measurement.

    pytest benchmarks/test_bench_finetune.py --benchmark-only
"""

import math

import pytest
import torch

from harness.finetune import finetune_config
from harness.models import build_model

TRAIN_VIDEOS = 360   # tiny split 1
C = 10
# the teachers that fine-tune each backbone in the tiny pipeline
TEACHERS = {"vgg19_teacher": 3, "prednet": 1, "alexnet": 0}


@pytest.mark.parametrize("arch", ["vgg19_teacher", "prednet", "alexnet"])
def test_finetune_step(benchmark, report_lines, arch):
    torch.manual_seed(0)
    cfg = finetune_config(arch, "tiny")
    model = build_model(arch, C, "tiny")
    clip = cfg.clip_length or model.clip_length
    shape = (cfg.batch_size, 3, model.input_size, model.input_size)
    x = torch.randn(shape if clip == 1 else (cfg.batch_size, clip, *shape[1:]))
    y = torch.randint(0, C, (cfg.batch_size,))
    opt = torch.optim.Adam(model.parameters(), cfg.lr)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    benchmark.group = "fine-tuning step, tiny preset shapes"
    benchmark.pedantic(step, rounds=8, warmup_rounds=2)
    steps = cfg.epochs * math.ceil(TRAIN_VIDEOS * cfg.train_frames / cfg.batch_size)
    mean = benchmark.stats.stats.mean
    line = (f"{arch}: {mean * 1e3:.0f} ms/step at batch {cfg.batch_size}; one tiny fine-tune = {steps} steps "
            f"= {steps * mean:.0f} s of compute")
    if TEACHERS[arch]:
        line += f" (x{TEACHERS[arch]} teacher{'s' if TEACHERS[arch] > 1 else ''} = {TEACHERS[arch] * steps * mean:.0f} s)"
    report_lines.append(line)
