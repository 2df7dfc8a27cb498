"""Difficulty check of the synthetic benchmark: is it learnable, and not by trivial statistics?

Trains a small frame-level CNN from scratch (plain torch) on split 1's train list and reports
chance, a mean-colour baseline (logistic regression on per-video mean RGB), the CNN's
frame-level and video-level (mean softmax over evenly spaced frames) accuracy on testlist01,
and the training time. The figures in docs/DATASET.md come from this script.

    OMP_NUM_THREADS=1 python scripts/measure_synth.py --root /tmp/synth_tiny --seed 0 --frames 16 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.data.synth import CLASS_TABLE, SYNTH_PRESETS, generate
from harness.data.video import evenly_spaced, read_video
from harness.utils import seed_everything, set_cpu_threads


def read_lists(root: Path, split: int):
    """(relative path, 0-based label) pairs of the train and test list, parsed from the official files."""
    lists = root / "ucfTrainTestlist"
    classes = {}
    for line in (lists / "classInd.txt").read_text().splitlines():
        if line.strip():
            idx, name = line.split()
            classes[name] = int(idx) - 1
    train = []
    for line in (lists / f"trainlist0{split}.txt").read_text().splitlines():
        if line.strip():
            rel, idx = line.split()
            train.append((rel, int(idx) - 1))
    test = []
    for line in (lists / f"testlist0{split}.txt").read_text().splitlines():
        if line.strip():
            rel = line.strip()
            test.append((rel, classes[rel.split("/")[0]]))
    return sorted(classes, key=classes.get), train, test


def decode(root: Path, items, frames_per_video: int):
    """uint8 (N, F, H, W, 3) of ``frames_per_video`` evenly spaced frames, labels (N,), mean RGB (N, 3)."""
    clips, labels, means = [], [], []
    for rel, label in items:
        path = root / "UCF-101" / rel
        full = read_video(path)  # every frame: the mean-colour baseline sees the whole video
        idx = evenly_spaced(len(full), frames_per_video)
        clips.append(full[idx])
        means.append(full.reshape(-1, 3).mean(0) / 255.0)
        labels.append(label)
    return np.stack(clips), np.array(labels), np.stack(means)


class SmallCNN(nn.Module):
    """Four conv blocks, global average pooling, a linear classifier."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(chans[-1], num_classes))

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def to_input(frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (reflect-padded, same size) and horizontal flip, per example."""
    B, _, H, W = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    oy = torch.randint(0, 2 * pad + 1, (B,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (B,), generator=gen)
    flip = torch.rand(B, generator=gen) < 0.5
    out = torch.empty_like(x)
    for b in range(B):
        crop = xp[b, :, oy[b]:oy[b] + H, ox[b]:ox[b] + W]
        out[b] = crop.flip(-1) if flip[b] else crop
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="dataset root (generated if missing)")
    ap.add_argument("--preset", default="tiny", choices=["smoke", "tiny"])
    ap.add_argument("--seed", type=int, default=0, help="dataset seed (when generating) and training seed")
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16, help="evenly spaced frames per video (train pool and test)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    set_cpu_threads()
    if not (args.root / "synth.json").is_file():
        t0 = time.perf_counter()
        generate(args.root, SYNTH_PRESETS[args.preset], seed=args.seed, progress=False)
        print(f"generated {args.root} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    meta = json.loads((args.root / "synth.json").read_text())

    classes, train_items, test_items = read_lists(args.root, args.split)
    t0 = time.perf_counter()
    xtr, ytr, mtr = decode(args.root, train_items, args.frames)
    xte, yte, mte = decode(args.root, test_items, args.frames)
    decode_s = time.perf_counter() - t0
    n_cls = len(classes)

    # trivial statistics: per-video mean colour, standardised, multinomial logistic regression
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    lr_model.fit(mtr, ytr)
    colour_acc = float((lr_model.predict(mte) == yte).mean())
    colour_train_acc = float((lr_model.predict(mtr) == ytr).mean())

    # frame-level CNN from scratch: each step draws random (video, frame) pairs from the pool
    seed_everything(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = SmallCNN(n_cls)
    n_train_frames = xtr.shape[0] * xtr.shape[1]
    steps_per_epoch = max(1, n_train_frames // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    flat_x = xtr.reshape(-1, *xtr.shape[2:])
    flat_y = np.repeat(ytr, xtr.shape[1])
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n_train_frames, generator=gen).numpy()
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            x = augment(to_input(flat_x[idx]), gen)
            loss = F.cross_entropy(model(x), torch.from_numpy(flat_y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / steps_per_epoch:.3f} "
              f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    train_s = time.perf_counter() - t0

    model.eval()
    with torch.no_grad():
        probs = torch.cat([F.softmax(model(to_input(xte[i:i + 32].reshape(-1, *xte.shape[2:]))), -1)
                           for i in range(0, len(xte), 32)]).view(len(xte), xte.shape[1], n_cls).numpy()
        tr_probs = torch.cat([F.softmax(model(to_input(xtr[i:i + 32].reshape(-1, *xtr.shape[2:]))), -1)
                              for i in range(0, len(xtr), 32)]).view(len(xtr), xtr.shape[1], n_cls).numpy()
    train_frame_acc = float((tr_probs.argmax(-1) == ytr[:, None]).mean())
    frame_acc = float((probs.argmax(-1) == yte[:, None]).mean())
    video_pred = probs.mean(1).argmax(-1)
    video_acc = float((video_pred == yte).mean())
    # how much of the CNN's success is the shape alone (each shape is shared by two classes)
    shape_of = {name: shape for name, shape, _ in CLASS_TABLE}
    shapes = np.array([shape_of[c] for c in classes])
    shape_acc = float((shapes[video_pred] == shapes[yte]).mean())

    result = {
        "dataset": str(args.root), "dataset_fingerprint": meta["fingerprint"], "dataset_seed": meta["seed"],
        "split": args.split, "num_classes": n_cls, "train_videos": len(train_items),
        "test_videos": len(test_items), "frames_per_video": args.frames, "epochs": args.epochs,
        "train_seed": args.seed, "torch_threads": torch.get_num_threads(),
        "chance": 1.0 / n_cls,
        "mean_colour_logreg_test_acc": colour_acc, "mean_colour_logreg_train_acc": colour_train_acc,
        "cnn_train_frame_acc": train_frame_acc, "cnn_frame_acc": frame_acc, "cnn_video_acc": video_acc, "cnn_video_shape_acc": shape_acc,
        "cnn_train_seconds": round(train_s, 1), "decode_seconds": round(decode_s, 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
