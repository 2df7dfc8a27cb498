"""Decode figures of docs/DATASET.md, on generated UCF101-sized clips (320x240 mpeg4 AVI, 25 fps,
a keyframe every 12 frames): an evaluation pass over test videos (25 frames x 10 crops per
video, no in-memory cache) decoding each video once against once per item from its start
(what evaluation did before), and the peak memory of pretraining's decoding of N unlabeled
videos into RAM (before) against into the on-disk frame cache (each mode in its own process).

    OMP_NUM_THREADS=1 python scripts/measure_decoding.py --out /tmp/decoding --videos 3 --unlabeled 40
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness.data.video import _converter, _linear_decode, read_video, write_video

FRAMES, HEIGHT, WIDTH, GOP = 180, 240, 320, 12


def clip(seed: int, frames: int = FRAMES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    noise = rng.integers(0, 40, (HEIGHT, WIDTH, 1), dtype=np.uint8)
    out = np.empty((frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(frames):
        out[t] = ((np.sin((xx + 3 * t + seed) / 9.0) + np.cos((yy - 2 * t) / 13.0)) * 50 + 110)[..., None] + noise
    return out


def write_clips(folder: Path, n: int, frames: int = FRAMES) -> list[Path]:
    paths = []
    for i in range(n):
        p = folder / f"v{i}.avi"
        if not p.exists():
            write_video(p, clip(i, frames), keyframe_every=GOP)
        paths.append(p)
    return paths


def evaluation_pass(paths: list[Path]) -> dict:
    """Seconds per video of a test pass: the FrameDataset as it is (one decode per video)
    beside one decode from the start per item (the same items)."""
    from harness.data.frames import FrameDataset
    from harness.data.index import VideoIndex, VideoRecord

    index = VideoIndex([VideoRecord(p.stem, p, 0, None, "synth") for p in paths], ("a",), "synth")
    ds = FrameDataset(index, 25, train=False, size=224, seed=0, decode_size=256, cache_decoded=False, test_crops=10)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    once = (time.perf_counter() - t0) / len(paths)
    convert = _converter((256, 256), "squash")
    t0 = time.perf_counter()
    for i in range(len(ds)):
        v, rem = divmod(i, ds.items_per_video)
        f = int(ds.plan(v)[0][rem // ds.test_crops])
        _linear_decode(paths[v], [f], convert)   # per item, from the first frame (before)
    per_item = (time.perf_counter() - t0) / len(paths)
    return {"items_per_video": ds.items_per_video, "once_per_video_s": round(once, 2),
            "decode_per_item_s": round(per_item, 2), "ratio": round(per_item / once, 1)}


def decode_memory(mode: str, folder: Path, n: int) -> dict:
    """Peak RSS of decoding ``n`` unlabeled videos the way pretraining does (``disk``) or did (``ram``)."""
    import os

    from harness.data.frame_cache import DiskVideos, decode_once

    paths = sorted((folder / "unlabeled").glob("v*.avi"))[:n]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if mode == "ram":
        videos = [read_video(p, size=(128, 128)) for p in paths]
        total = sum(v.nbytes for v in videos)
    else:
        os.environ["HARNESS_FRAME_CACHE"] = str(folder / "frames")
        rows = [decode_once(p, {"size": 128}, lambda q: read_video(q, size=(128, 128)), folder / "frames")
                for p in paths]
        videos = DiskVideos(*zip(*rows))
        total = sum(int(np.prod(s)) for s in videos.shapes)
        for v in videos:        # touch every frame, as a pretext task's motion scan does
            float(v[:, ::8, ::8].mean())
    return {"mode": mode, "videos": n, "decoded_mb": round(total / 1e6, 1), "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_mb": round(before / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--unlabeled", type=int, default=40)
    ap.add_argument("--memory-only", choices=["ram", "disk"], default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory_only:
        print(json.dumps(decode_memory(args.memory_only, args.out, args.unlabeled)))
        return
    result = {"evaluation": evaluation_pass(write_clips(args.out / "test", args.videos))}
    write_clips(args.out / "unlabeled", args.unlabeled, frames=90)   # here: the measured processes only decode
    for mode in ("ram", "disk"):
        line = subprocess.run([sys.executable, __file__, "--out", str(args.out), "--unlabeled", str(args.unlabeled),
                               "--memory-only", mode], check=True, capture_output=True, text=True).stdout
        result[f"memory_{mode}"] = json.loads(line)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
