"""A simple patch tracker that works on any video: seed where frames change, follow by NCC.

Wang & Gupta (2015) seed patches with SURF + IDT motion and follow them with KCF; here the
seed is the patch with the largest frame-difference energy and tracking is template matching
by normalised cross-correlation (NCC) in a small search window, frame after frame. Good
enough for rigid moving objects, which is what the tracking and pose tasks need from it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def motion_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference over the colour channels of two frames, ``(H, W)`` float32."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1)


def box_sums(values: np.ndarray, size: int) -> np.ndarray:
    """Sum of ``values`` over every ``size`` x ``size`` box; entry (y, x) is the box at top-left (y, x)."""
    ii = np.pad(np.cumsum(np.cumsum(values.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    return ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]


def seed_box(frames: np.ndarray, t: int, size: int, rng: np.random.Generator | None = None,
             top_k: int = 1) -> tuple[int, int]:
    """Top-left (y, x) of the ``size`` box with the most change between frames t and t+1.

    With ``rng`` and ``top_k > 1`` the box is drawn uniformly among the ``top_k`` best, for
    variety across samples of one video.
    """
    h, w = frames.shape[1:3]
    if size > min(h, w):
        raise ValueError(f"patch size {size} is larger than the frame {h}x{w}")
    t1 = min(t + 1, len(frames) - 1)
    energy = box_sums(motion_map(frames[t], frames[t1]), size)
    flat = energy.ravel()
    if rng is None or top_k <= 1:
        best = int(np.argmax(flat))
    else:
        k = min(top_k, flat.size)
        best = int(rng.choice(np.argpartition(-flat, k - 1)[:k]))
    return divmod(best, energy.shape[1])


def ncc_match(frame: np.ndarray, template: np.ndarray, y: int, x: int, radius: int) -> tuple[int, int, float]:
    """Best top-left (y, x) for ``template`` in ``frame`` within ``radius`` pixels of (y, x), and its NCC.

    NCC over all channels: sum((P - mean P)(T - mean T)) / (|P - mean P| |T - mean T|). Ties go
    to the candidate closest to the previous position (a flat region does not make the track jump).
    """
    size = template.shape[0]
    h, w = frame.shape[:2]
    y0, y1 = max(y - radius, 0), min(y + radius, h - size)
    x0, x1 = max(x - radius, 0), min(x + radius, w - size)
    region = frame[y0:y1 + size, x0:x1 + size].astype(np.float32)
    windows = sliding_window_view(region, template.shape)[:, :, 0]  # (ny, nx, size, size, C)
    ny, nx = windows.shape[:2]
    p = windows.reshape(ny * nx, -1)
    p = p - p.mean(axis=1, keepdims=True)
    tmpl = template.astype(np.float32).ravel()
    tmpl = tmpl - tmpl.mean()
    denom = np.linalg.norm(p, axis=1) * np.linalg.norm(tmpl) + 1e-6
    score = (p @ tmpl) / denom
    yy, xx = np.divmod(np.arange(ny * nx), nx)
    dist = (yy + y0 - y) ** 2 + (xx + x0 - x) ** 2
    # best score first, then the smallest move
    order = np.lexsort((dist, -np.round(score, 6)))
    best = int(order[0])
    return int(yy[best] + y0), int(xx[best] + x0), float(score[best])


def track(frames: np.ndarray, t0: int, y: int, x: int, size: int, steps: int, radius: int = 4,
          update_template: bool = True) -> np.ndarray:
    """Follow the ``size`` patch at (y, x) in frame ``t0`` for ``steps`` frames.

    Returns ``(steps + 1, 2)`` int top-left positions for frames t0 .. t0+steps. With
    ``update_template`` the template is the patch found in the previous frame (follows slow
    appearance changes); otherwise it stays the first patch (no drift on rigid objects).
    """
    if t0 + steps >= len(frames):
        raise ValueError(f"tracking {steps} frames from frame {t0} runs past the video's {len(frames)} frames")
    pos = np.zeros((steps + 1, 2), np.int64)
    pos[0] = (y, x)
    template = frames[t0, y:y + size, x:x + size]
    for i in range(1, steps + 1):
        y, x, _ = ncc_match(frames[t0 + i], template, y, x, radius)
        pos[i] = (y, x)
        if update_template:
            template = frames[t0 + i, y:y + size, x:x + size]
    return pos
