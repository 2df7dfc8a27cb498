"""Small datasets in the official UCF101, HMDB51 and CCV layouts, written with real codecs.

Each clip shows a class-coloured square moving across noise, so a class can be learned, and
the clips differ the way the real releases do: xvid-style MPEG-4 and H.264, AVI and MP4,
odd frame sizes (the ratios of 320x240, 176x144 and 400x226), 15 / 25 / 30 fps and a
grayscale clip. Split files are written in the official formats (CRLF for UCF101, the
trailing space of HMDB51's lines, CCV's id lists and label matrices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.video import write_video

CLASSES = ("ApplyEyeMakeup", "Basketball", "Drumming", "YoYo")
HMDB_CLASSES = ("brush_hair", "cartwheel", "climb", "jump")
# (container suffix, codec, fps, (height, width), grayscale)
VARIANTS = (
    (".avi", "mpeg4", 25, (30, 40), False),     # UCF101's own: xvid-style MPEG-4 in AVI, 320x240 ratio
    (".avi", "mpeg4", 15, (36, 44), False),     # 176x144 ratio (HMDB51's smallest), 15 fps
    (".mp4", "libx264", 30, (28, 50), False),   # 400x226 ratio, H.264 in MP4
    (".avi", "mpeg4", 25, (30, 40), True),      # a grayscale clip
)
FRAMES = 16


def clip(label: int, variant: int, seed: int) -> np.ndarray:
    """(FRAMES, H, W, 3) uint8: noise, and a square of the class's colour moving right."""
    _, _, _, (h, w), gray = VARIANTS[variant % len(VARIANTS)]
    rng = np.random.default_rng([label, variant, seed])
    frames = rng.integers(0, 80, (FRAMES, h, w, 3), dtype=np.uint8)
    colour = np.array([(255, 40, 40), (40, 255, 40), (40, 40, 255), (255, 255, 40)][label % 4], dtype=np.uint8)
    side = max(4, h // 3)
    for t in range(FRAMES):
        x = (t * (w - side)) // (FRAMES - 1)
        frames[t, h // 3: h // 3 + side, x: x + side] = colour
    if gray:
        frames[:] = frames.mean(-1, keepdims=True).astype(np.uint8)
    return frames


def _write(path: Path, label: int, variant: int, seed: int, suffix: str | None = None) -> Path:
    ext, codec, fps, _, _ = VARIANTS[variant % len(VARIANTS)]
    path = path.with_suffix(suffix or ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, clip(label, variant, seed), fps=fps, codec=codec)
    return path


def make_ucf101(root: Path, groups: int = 4, clips: int = 2) -> Path:
    """``UCF-101/`` + ``ucfTrainTestlist/``; split k tests on group k (the official lists test
    groups 1-7, 8-14, 15-21; the parser only reads the lists)."""
    lists, videos = root / "ucfTrainTestlist", root / "UCF-101"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_bytes("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(CLASSES)).encode())
    names = []
    for ci, c in enumerate(CLASSES):
        for g in range(1, groups + 1):
            for k in range(1, clips + 1):
                rel = f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi"
                # every name ends in .avi as in the release; one variant per clip, all four in each class
                _write(videos / rel, ci, g + k, seed=ci * 100 + g * 10 + k, suffix=".avi")
                names.append((rel, ci, g))
    for split in (1, 2, 3):
        train = "".join(f"{rel} {ci + 1}\r\n" for rel, ci, g in names if g != split)
        test = "".join(f"{rel}\r\n" for rel, ci, g in names if g == split)
        (lists / f"trainlist{split:02d}.txt").write_bytes(train.encode())
        (lists / f"testlist{split:02d}.txt").write_bytes(test.encode())
    return root


def make_hmdb51(root: Path, clips: int = 9) -> Path:
    """Class folders + ``testTrainMulti_7030_splits/`` (tags 1 train, 2 test, 0 unused)."""
    lists = root / "testTrainMulti_7030_splits"
    lists.mkdir(parents=True, exist_ok=True)
    for ci, c in enumerate(HMDB_CLASSES):
        files = []
        for k in range(clips):
            name = f"{c}_clip_{k}_u_nm_np1_fr_goo_{k}.avi"
            _write(root / c / name, ci, k, seed=ci * 100 + k, suffix=".avi")
            files.append(name)
        for split in (1, 2, 3):
            tags = [2 if (k + split) % 3 == 0 else (0 if k == clips - 1 else 1) for k in range(clips)]
            (lists / f"{c}_test_split{split}.txt").write_text("".join(f"{n} {t} \n" for n, t in zip(files, tags)))
    return root


def make_ccv(root: Path, n_train: int = 16, n_test: int = 8) -> Path:
    """``videos/`` (MP4) + ``trainVidID.txt`` / ``testVidID.txt`` + label matrices (20 columns,
    one row per id); the first 4 classes carry the clips' colours, each of the others tags one
    clip in 16 (every class has a training video, as in the release)."""
    for subset, n in (("train", n_train), ("test", n_test)):
        ids = [f"{subset[:2]}{i:07d}" for i in range(n)]
        mat = np.zeros((n, 20), dtype=int)
        for i, vid in enumerate(ids):
            label = i % 4
            mat[i, label] = 1
            mat[i, 4 + i % 16] = 1          # the 16 other classes tagged once each in training
            _write(root / "videos" / vid, label, 2, seed=i + (0 if subset == "train" else 1000), suffix=".mp4")
        (root / f"{subset}VidID.txt").write_text("\n".join(ids) + "\n")
        (root / f"{subset}Label.txt").write_text("\n".join(" ".join(map(str, r)) for r in mat) + "\n")
    return root
