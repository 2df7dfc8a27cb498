"""Speed of one fine-tuning step (forward, backward, the preset's optimizer) of each
tiny-preset backbone at the shapes `harness finetune --preset tiny` trains with
(`harness.finetune.training_step`), and what that makes the teachers' fine-tuning cost in
compute on this machine.

The issue's budget for the four tiny teachers (pretraining + fine-tuning in under 10 minutes
on 2 cores) depends on the machine as much as on the code: runs with identical results took
twice as long in one session as in another (docs/FINETUNE.md). This report gives the step
time to normalise such figures; `harness teachers` times the VGG step beside every budget it
reports.

    pytest benchmarks/test_bench_finetune.py --benchmark-only
"""

import math

import pytest

from harness.finetune import finetune_config, training_step

TRAIN_VIDEOS = 360   # tiny split 1
C = 10
# the teachers that fine-tune each backbone in the tiny pipeline
TEACHERS = {"vgg19_teacher": 3, "prednet": 1, "alexnet": 0}


@pytest.mark.parametrize("arch", ["vgg19_teacher", "prednet", "alexnet"])
def test_finetune_step(benchmark, report_lines, arch):
    cfg = finetune_config(arch, "tiny")
    step = training_step(arch, "tiny", C)
    benchmark.group = "fine-tuning step, tiny preset shapes"
    benchmark.pedantic(step, rounds=8, warmup_rounds=2)
    steps = cfg.epochs * math.ceil(TRAIN_VIDEOS * cfg.train_frames / cfg.batch_size)
    mean = benchmark.stats.stats.mean
    line = (f"{arch}: {mean * 1e3:.0f} ms/step at batch {cfg.batch_size}; one tiny fine-tune = {steps} steps "
            f"= {steps * mean:.0f} s of compute")
    if TEACHERS[arch]:
        line += f" (x{TEACHERS[arch]} teacher{'s' if TEACHERS[arch] > 1 else ''} = {TEACHERS[arch] * steps * mean:.0f} s)"
    report_lines.append(line)
