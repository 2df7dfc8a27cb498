"""Power of the tiny benchmark, measured rather than projected (docs/DATASET.md).

Trains (or reuses) seeds 0..N-1 of some Table 2 methods on the tiny store, then for every pair
of the claims table among them reports the paired standard error of the difference measured
with 3 seeds and with all N, the error ``harness claims --power`` projects to N seeds from the
first 3, and the error projected from all N seeds to more test videos. A projection that
resamples 3 observed seeds cannot show how much per-video noise more seeds average out; the
N-seed measurement can.

    OMP_NUM_THREADS=2 python scripts/measure_power.py --seeds 10 --out /tmp/power.json

With more test clips (docs/DATASET.md, Power): generate the dataset, then name it and its own store

    harness data synth --root data/synth-tiny-t10 --preset tiny --set test_clips_per_group=8
    OMP_NUM_THREADS=2 python scripts/measure_power.py --seeds 10 --data-root data/synth-tiny-t10 \
        --store cache/tiny-t10.zarr --out /tmp/power-t10.json
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DEFAULT_METHODS = "gl+gr,mmgd+gr,gl,mmgd,kd,gr,feat"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated Table 2 methods")
    ap.add_argument("--store", default="cache/tiny.zarr")
    ap.add_argument("--data-root", default=None, help="dataset folder (default: the tiny preset's own)")
    ap.add_argument("--boot", type=int, default=4000, help="bootstrap replicates per standard error")
    ap.add_argument("--videos", default="700,1400", help="test-video counts to project the N-seed error to")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)

    from harness import pipeline
    from harness.provenance import run_record, write_json_atomic
    from harness.tables.claims import TABLE2_CLAIMS, cells_from_runs, measured_power

    methods = [m for m in args.methods.split(",") if m]
    seeds = list(range(args.seeds))
    started = time.time()
    runs = {}
    for m in methods:   # one method at a time, so an interrupted job leaves whole cells to reuse
        runs.update(pipeline.table2_runs([m], "tiny", seeds, store=args.store, data_root=args.data_root,
                                        progress=False))
        print(f"{m}: {len(runs[m])} seeds ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    cells = cells_from_runs(runs)
    videos = tuple(int(v) for v in args.videos.split(",") if v)
    rows = measured_power(cells, TABLE2_CLAIMS, args.boot, from_seeds=3, project_videos=videos)

    head = (f"| A | B | 3 seeds: diff (SE) | {args.seeds} seeds projected from 3: SE | {args.seeds} seeds measured: "
            f"diff (95% interval), SE | verdict | " + " | ".join(f"{args.seeds} seeds x {v} videos, projected SE"
                                                              for v in videos) + " |")
    print(head)
    print("|" + "---|" * (5 + len(videos)) + "---|")
    for r in rows:
        cols = [r["better"], r["than"], f"{r['diff_3']:+.1f} ({r['se_3']:.2f})", f"{r['se_projected_from_3']:.2f}",
                f"{r['diff_n']:+.1f} ({r['ci_n'][0]:+.1f}, {r['ci_n'][1]:+.1f}), {r['se_n']:.2f}", r["verdict_n"]]
        cols += [f"{r[f'se_n_projected_{v}_videos']:.2f}" for v in videos]
        print("| " + " | ".join(cols) + " |")
    med = {k: float(np.median([r[k] for r in rows])) for k in ("se_3", "se_projected_from_3", "se_n")}
    print(f"\nmedian SE: 3 seeds {med['se_3']:.2f}, projected to {args.seeds} seeds {med['se_projected_from_3']:.2f}, "
          f"measured at {args.seeds} seeds {med['se_n']:.2f}")
    if args.out:   # the runs' own record: the script's arguments, code version, machine, time
        write_json_atomic(args.out, {"rows": rows, "median": med, "methods": methods, "seeds": seeds,
                                     "seconds": round(time.time() - started, 1), "record": run_record(vars(args)),
                                     "runs": {m: [str(r.path) for r in rs] for m, rs in runs.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
