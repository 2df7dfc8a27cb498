"""What the deterministic mode costs: one training step of the tiny student (AlexNet) and of
the tiny VGG teacher with the mode off and on, side by side in one run.

The mode fixes ATen's kernel level when torch loads, so each setting runs in its own process;
the two alternate (off, on, off, on, ...) so that a change in the machine's load hits both.
Each process times its steps after warm-up and reports the median.

    pytest benchmarks/test_bench_determinism.py --benchmark-only
"""

import os
import statistics
import subprocess
import sys

import pytest

from harness import determinism

STEPS, WARMUP, ROUNDS = 10, 3, 3
_WORKER = """
import statistics, sys, time
from harness import determinism
determinism.apply()
import torch
from harness.finetune import training_step
step = training_step(sys.argv[1], "tiny", 10)
for _ in range(int(sys.argv[3])):
    step()
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(statistics.median(times), torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())
"""


def _median_step(arch: str, on: bool) -> tuple[float, int, str]:
    """Median seconds per step of ``arch`` in a fresh process with the mode ``on`` or off, its
    thread count and kernel level."""
    env = {k: v for k, v in os.environ.items() if k != determinism.ENV}
    if on:
        env[determinism.ENV] = "1"
    done = subprocess.run([sys.executable, "-c", _WORKER, arch, str(STEPS), str(WARMUP)], env=env,
                          capture_output=True, text=True, check=True, timeout=900)
    seconds, threads, kernels = done.stdout.split()
    return float(seconds), int(threads), kernels


@pytest.mark.parametrize("arch", ["alexnet", "vgg19_teacher"])
def test_deterministic_mode_cost(benchmark, report_lines, arch):
    runs = {False: [], True: []}

    def side_by_side():
        for _ in range(ROUNDS):
            for on in (False, True):
                runs[on].append(_median_step(arch, on))

    benchmark.group = "deterministic mode, tiny training step (off and on, alternating processes)"
    benchmark.pedantic(side_by_side, rounds=1, iterations=1)
    off, on = (statistics.median(s for s, _, _ in runs[m]) for m in (False, True))
    (_, t_off, k_off), (_, t_on, k_on) = runs[False][0], runs[True][0]
    benchmark.extra_info.update(off_ms=off * 1e3, on_ms=on * 1e3, ratio=on / off)
    report_lines.append(f"{arch} tiny step: {off * 1e3:.0f} ms off ({t_off} threads, {k_off} kernels), "
                        f"{on * 1e3:.0f} ms deterministic ({t_on} thread, {k_on} kernels, oneDNN off): "
                        f"x{on / off:.2f}")
