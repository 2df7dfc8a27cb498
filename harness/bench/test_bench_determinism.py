"""What the deterministic mode costs: one training step of the tiny student (AlexNet) and of
the tiny VGG teacher with the mode off (the machine's threads, and one thread) and on, side by
side in one run.

The mode fixes ATen's kernel level when torch loads, so each setting runs in its own process;
the settings alternate (off, off at 1 thread, on, off, ...) so that a change in the machine's
load hits all three. Each process times its steps after warm-up and reports the median wall
and CPU seconds. Off at one thread against on is the price of the kernel switches alone
(portable ATen kernels, MKL's compatible branch, oneDNN and NNPACK off); off against off at
one thread is the price of the thread count, which a loaded machine hides.

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
wall, cpu = [], []
for _ in range(int(sys.argv[2])):
    start, start_cpu = time.perf_counter(), time.process_time()
    step()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(statistics.median(wall), statistics.median(cpu), torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())
"""


SETTINGS = {"off": {}, "off, 1 thread": {"OMP_NUM_THREADS": "1"}, "on": {determinism.ENV: "1"}}


def _median_step(arch: str, setting: dict) -> tuple[float, float, str]:
    """Median wall and CPU seconds per step of ``arch`` in a fresh process with ``setting`` in
    its environment, and the thread count and kernel level it ran with."""
    env = {k: v for k, v in os.environ.items() if k != determinism.ENV}
    env.update(setting)
    done = subprocess.run([sys.executable, "-c", _WORKER, arch, str(STEPS), str(WARMUP)], env=env,
                          capture_output=True, text=True, check=True, timeout=900)
    wall, cpu, threads, kernels = done.stdout.split()
    return float(wall), float(cpu), f"{threads} thread(s), {kernels} kernels"


@pytest.mark.parametrize("arch", ["alexnet", "vgg19_teacher"])
def test_deterministic_mode_cost(benchmark, report_lines, arch):
    runs = {name: [] for name in SETTINGS}

    def side_by_side():
        for _ in range(ROUNDS):
            for name, setting in SETTINGS.items():
                runs[name].append(_median_step(arch, setting))

    benchmark.group = "deterministic mode, tiny training step (settings in alternating processes)"
    benchmark.pedantic(side_by_side, rounds=1, iterations=1)
    wall = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r[1] for r in rs) for name, rs in runs.items()}
    benchmark.extra_info.update({f"{name} wall ms": w * 1e3 for name, w in wall.items()})
    parts = [f"{name} ({runs[name][0][2]}) {wall[name] * 1e3:.0f} ms wall, {cpu[name] * 1e3:.0f} ms CPU"
             for name in SETTINGS]
    report_lines.append(f"{arch} tiny step: " + "; ".join(parts) + f". On / off: x{wall['on'] / wall['off']:.2f} "
                        f"wall; on / off at 1 thread: x{wall['on'] / wall['off, 1 thread']:.2f} wall, "
                        f"x{cpu['on'] / cpu['off, 1 thread']:.2f} CPU")
