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

from harness import determinism

STEPS, WARMUP, ROUNDS = 10, 3, 3
ARCHS = ("alexnet", "vgg19_teacher")
# One process per setting and round times both models: starting Python and torch costs more
# than the steps themselves, so a process per model doubled the file's time.
_WORKER = """
import statistics, sys, time
from harness import determinism
determinism.apply()
import torch
from harness.finetune import training_step
for arch in sys.argv[3:]:
    step = training_step(arch, "tiny", 10)
    for _ in range(int(sys.argv[2])):
        step()
    wall, cpu = [], []
    for _ in range(int(sys.argv[1])):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(arch, statistics.median(wall), statistics.median(cpu), torch.get_num_threads(),
          torch.backends.cpu.get_cpu_capability())
"""


SETTINGS = {"off": {}, "off, 1 thread": {"OMP_NUM_THREADS": "1"}, "on": {determinism.ENV: "1"}}


def _median_steps(setting: dict) -> dict[str, tuple[float, float, str]]:
    """Per model of ARCHS: median wall and CPU seconds per step in one fresh process with
    ``setting`` in its environment, and the thread count and kernel level it ran with."""
    env = {k: v for k, v in os.environ.items() if k != determinism.ENV}
    env.update(setting)
    done = subprocess.run([sys.executable, "-c", _WORKER, str(STEPS), str(WARMUP), *ARCHS], env=env,
                          capture_output=True, text=True, check=True, timeout=900)
    out = {}
    for line in done.stdout.splitlines():
        arch, wall, cpu, threads, kernels = line.split()
        out[arch] = (float(wall), float(cpu), f"{threads} thread(s), {kernels} kernels")
    assert sorted(out) == sorted(ARCHS), done.stdout
    return out


def test_deterministic_mode_cost(benchmark, report_lines):
    runs = {arch: {name: [] for name in SETTINGS} for arch in ARCHS}

    def side_by_side():
        for _ in range(ROUNDS):
            for name, setting in SETTINGS.items():
                for arch, result in _median_steps(setting).items():
                    runs[arch][name].append(result)

    benchmark.group = "deterministic mode, tiny training step (settings in alternating processes)"
    benchmark.pedantic(side_by_side, rounds=1, iterations=1)
    for arch in ARCHS:
        _report(benchmark, report_lines, arch, runs[arch])


def _report(benchmark, report_lines, arch, runs):
    wall = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r[1] for r in rs) for name, rs in runs.items()}
    benchmark.extra_info.update({f"{arch} {name} wall ms": w * 1e3 for name, w in wall.items()})
    parts = [f"{name} ({runs[name][0][2]}) {wall[name] * 1e3:.0f} ms wall, {cpu[name] * 1e3:.0f} ms CPU"
             for name in SETTINGS]
    report_lines.append(f"{arch} tiny step: " + "; ".join(parts) + f". On / off: x{wall['on'] / wall['off']:.2f} "
                        f"wall; on / off at 1 thread: x{wall['on'] / wall['off, 1 thread']:.2f} wall, "
                        f"x{cpu['on'] / cpu['off, 1 thread']:.2f} CPU")
