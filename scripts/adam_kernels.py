"""Adam's foreach and fused kernels side by side in paper-shape training steps.

    python scripts/adam_kernels.py [--batches 1,8] [--rounds 7,6] [--threads 2]
    python scripts/adam_kernels.py --rounding


For each batch size: a paper-shape store of random contents (the bench's
``speed_setup.write_random_store``), and four ``speed_setup.Trainee``s (G_l+G_r and the
labels-only cross-entropy student, each with Adam's foreach and fused kernel) stepped on the
same batch, interleaved within every round after one warm-up round; medians. Prints each step's
time, figure 2's ratio under each kernel, and fused / foreach (docs/SPEED.md).

``--rounding``: how far the fused kernel's weights part from foreach's, six steps of both on
the same random gradients (scales 1e-8 to 1) over four tensors of the paper AlexNet's sizes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness" / "bench"))
import speed_setup as S  # noqa: E402  (the bench's helpers; applies the kept-memory allocator setting)

from harness.distill.runner import teacher_names  # noqa: E402


def rounding(steps: int = 6) -> None:
    torch.manual_seed(0)
    shapes = [(4096, 9216), (4096,), (101, 4096), (384, 256, 3, 3)]
    ours = [torch.randn(shape) * 0.01 for shape in shapes]
    fused = [p.clone() for p in ours]
    for p in ours + fused:
        p.requires_grad_(True)
    opts = [S.adam(ps, kernel, lr=1e-4, weight_decay=5e-4) for ps, kernel in ((ours, "foreach"), (fused, "fused"))]
    total = sum(p.numel() for p in ours)
    for step in range(1, steps + 1):
        grads = [torch.randn(shape) * 10.0 ** torch.randint(-8, 0, ()).item() for shape in shapes]
        for ps in (ours, fused):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
        for opt in opts:
            opt.step()
        apart = max((a - b).abs().max().item() for a, b in zip(ours, fused))
        differ = sum((a != b).sum().item() for a, b in zip(ours, fused))
        print(f"step {step}: at most {apart:.3g} apart, {differ} of {total} values differ ({100 * differ / total:.1f}%)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", default="7,6", help="rounds per batch size, in the same order")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounding", action="store_true", help="compare the two kernels' weights instead of timing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rounding:
        return rounding()
    batches = [int(b) for b in args.batches.split(",")]
    rounds = [int(r) for r in args.rounds.split(",")]
    if len(rounds) != len(batches):
        ap.error("--rounds needs one value per --batches value")
    for batch, n in zip(batches, rounds):
        with tempfile.TemporaryDirectory() as tmp:
            store = S.write_random_store(Path(tmp) / "paper.zarr", "paper", 2 * batch, 2 * batch, batch)
            ctx, names = S.method_context(store, "paper"), teacher_names(store)
            reader = S.train_reader(store, S.reader_fields("gl+gr", store), batch)
            x, tb = S.student_batch(next(iter(reader)), "paper", names)
            arms = {}
            for kernel in ("foreach", "fused"):
                for method in ("gl+gr", "student"):
                    trainee = S.Trainee(method, ctx, "paper", 0)
                    trainee.opt = S.adam(trainee.params, kernel, lr=1e-3)
                    arms[(method, kernel)] = lambda t=trainee: t.step(x, tb)
            med = {k: statistics.median(v) for k, v in S.interleaved(arms, rounds=n, warmup=1).items()}
        print(f"batch {batch} ({n} rounds): " + ", ".join(f"{m} {k} {t * 1e3:.0f} ms" for (m, k), t in med.items()))
        print(f"  G_l+G_r / cross-entropy: foreach {med['gl+gr', 'foreach'] / med['student', 'foreach']:.2f}, "
              f"fused {med['gl+gr', 'fused'] / med['student', 'fused']:.2f}; fused / foreach: "
              f"G_l+G_r {med['gl+gr', 'fused'] / med['gl+gr', 'foreach']:.2f}, "
              f"cross-entropy {med['student', 'fused'] / med['student', 'foreach']:.2f}")


if __name__ == "__main__":
    main()
