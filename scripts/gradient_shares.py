"""How hard each imitation term pulls, along one student's training: the gradient norms of
the weighted cross-entropy, KD, G_l (EM) and MMGD logit terms, measured on the same batches.

    python scripts/gradient_shares.py [--method gl] [--seed 0] [--store cache/tiny.zarr] \
        [--at 0,1,2,3,6,12] [--batches 8] [--out gradient_shares.json]

It trains (or resumes, or reuses) the run ``harness distill --method M --seed S`` would make,
stopping after each epoch of ``--at`` to read the student from the run's resume state (epoch 0
is the initial student, seeded as the runner seeds it; the last epoch is the finished
``student.pt``), so the trajectory is that run's, with its run key. At each point, on the first
``--batches`` training batches of the store (view 0, unshuffled, the same at every point), every
term is weighted as the objective weights it (CE by 1 - lambda, each logit term by lambda; MMGD
with its own edge network at initialisation and its weight ``mmgd_w_logit``; G_l with uniform
edges, where the run's own stay within 0.002 at ``gl_gd_reg`` = 10), and the gradient
of each term alone is taken with respect to the student's logits (mean per-item norm) and to
the student's parameters (global norm, and its cosine with the cross-entropy's). Prints one
table and writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from harness.cache.reader import StreamingReader
from harness.cache.store import FeatureStore
from harness.distill.methods import PARTS, build_method
from harness.distill.runner import (_batch_to_teachers, _fields, _resolve_config, _student_input, distill,
                                    method_context, teacher_names)
from harness.models import MODEL_PRESETS, build_model
from harness.runs import RunDir
from harness.utils import seed_everything

TERMS = ("ce", "kd", "gl", "mmgd")


def _student_at(method: str, preset: str, seed: int, store: Path, epoch: int, cfg, ctx) -> tuple[torch.nn.Module, dict]:
    """The student of the run after ``epoch`` epochs, and that epoch's metrics row."""
    seed_everything(seed)
    student = build_model("alexnet", ctx.num_classes, preset)
    build_method(method, ctx, cfg.method)     # drawn after the student, as the runner draws them
    if epoch == 0:
        return student, {}
    run: RunDir = distill(method, preset, seed, store, progress=False, stop_after_epoch=epoch)
    rows = run.rows()
    if epoch >= cfg.epochs:
        student.load_state_dict(torch.load(run.path / "student.pt", weights_only=True))
    else:
        if not run.state_path.is_file():
            raise SystemExit(f"{run.path}: the run is finished, so its epoch-{epoch} state is gone; measure the "
                             f"epochs before the last in an empty runs folder (HARNESS_RUNS=...)")
        state = torch.load(run.state_path, weights_only=False)
        if state["epoch"] + 1 != epoch:
            raise SystemExit(f"{run.state_path}: holds epoch {state['epoch'] + 1}, not {epoch}; "
                             f"ask for the epochs in increasing order from a fresh run")
        student.load_state_dict({k[len("student."):]: v for k, v in state["model"].items()
                                 if k.startswith("student.")})
    return student, rows[epoch - 1]


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads if g is not None])


def measure(student, parts, weights, batches) -> dict:
    """Per term: mean per-item logit-gradient norm, parameter-gradient norm, its cosine with
    the cross-entropy's (``parts`` must hold "ce"), and the weighted value; train mode (batch
    statistics, dropout with a fixed mask per batch), as in a training step."""
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    sums = {t: {"logits": 0.0, "params": 0.0, "cos_ce": 0.0, "value": 0.0} for t in parts}
    for i, (x, tb) in enumerate(batches):
        torch.manual_seed(i)   # the same dropout masks at every point of the trajectory
        out = student.forward_features(x)
        flat = {}
        for name, part in parts.items():
            # the part's label or imitation term (not its graph regulariser or representation term)
            term = weights[name] * next(v for k, v in part(out, tb).items() if part.groups[k] in ("hard", "logit"))
            g_logits, *g_params = torch.autograd.grad(term, [out.logits, *params], retain_graph=True,
                                                      allow_unused=True)
            flat[name] = _flat(g_params)
            sums[name]["logits"] += float(g_logits.norm(dim=1).mean()) * len(x)   # per item (mean loss over B)
            sums[name]["params"] += float(flat[name].norm())
            sums[name]["value"] += float(term.detach())
        for name in parts:
            sums[name]["cos_ce"] += float(torch.nn.functional.cosine_similarity(flat[name], flat["ce"], dim=0))
    n = len(batches)
    return {t: {k: v / n for k, v in s.items()} for t, s in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="gl")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--at", default="0,1,2,3,6,12")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("gradient_shares.json"))
    a = ap.parse_args()
    store = a.store or Path("cache") / f"{a.preset}.zarr"
    st = FeatureStore.open(store)
    cfg = _resolve_config(a.preset, None)
    names = teacher_names(st)
    ctx = method_context(st, names, build_model("alexnet", len(st.manifest["dataset"]["classes"]), a.preset))
    lam = cfg.method.lam
    reader = StreamingReader(st, _fields("gl+gr", names), cfg.batch_size, split="train", shuffle=False, view=0,
                             drop_last=True)
    size = MODEL_PRESETS[a.preset].input_size
    batches = []
    for b in reader:
        batches.append((_student_input(b, size), _batch_to_teachers(b, names)))
        if len(batches) == a.batches:
            break
    torch.manual_seed(1234)   # the comparison parts' own parameters (MMGD's edge network)
    parts = {t: PARTS[t](ctx, cfg.method) for t in TERMS}
    # Eq. 2: the label term by 1 - lambda, every imitation (logit) term by lambda
    weights = {t: 1.0 - lam if "hard" in p.groups.values() else lam for t, p in parts.items()}
    results = []
    print(f"{a.method} seed {a.seed}: gradient norm of each weighted term alone "
          f"(CE x {1 - lam:.1f}, logit terms x {lam:.1f}); {len(batches)} batches of {cfg.batch_size}")
    print(f"{'epoch':>5} {'test':>6} | " + " | ".join(f"{t:>6} logits  params  cos" for t in TERMS))
    for epoch in [int(v) for v in a.at.split(",")]:
        student, row = _student_at(a.method, a.preset, a.seed, store, epoch, cfg, ctx)
        m = measure(student, parts, weights, batches)
        acc = row.get("test_value")
        results.append({"epoch": epoch, "test_value": acc, "terms": m})
        print(f"{epoch:>5} {'' if acc is None else f'{acc:.3f}':>6} | " + " | ".join(
            f"{m[t]['logits']:>13.4f} {m[t]['params']:>7.3f} {m[t]['cos_ce']:>4.2f}" for t in TERMS))
    a.out.write_text(json.dumps({"method": a.method, "seed": a.seed, "preset": a.preset, "store": str(store),
                                 "lam": lam, "batches": len(batches), "points": results}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
