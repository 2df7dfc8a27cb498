"""The embedded synthetic video benchmark, written in the official UCF101 layout.

Every video is rendered with numpy from a small generative process (no download) and
encoded with :func:`harness.data.video.write_video` (mpeg4 in ``.avi``, like UCF101's xvid):

- a *scene* per group (the UCF101 "same actor and background" unit): a textured
  background world (value noise + gratings, a ground band below a horizon) with its own
  palette, and an occluding pole;
- a *camera* that pans across that world (global background translation: ego-motion);
- one main *object* whose class is the pair (shape, motion pattern): a textured shape
  (stripes or checker fill, fixed in the object's own frame, so it keeps its identity
  while it moves) following a trajectory (translate, orbit, bounce, pulse, spin,
  oscillate, pan-follow);
- *clutter*: small distractor bars and ellipses that drift, some in front of the object,
  and the pole that occludes it when it passes behind;
- a per-video colour gain and offset, so the mean colour of a video says nothing about
  its class.

Each shape occurs in two classes and each motion in one or two, so a single frame shows
the shape but only part of the motion: frame-level classifiers stay well below 100%.

Layout under ``root`` (see docs/DATASET.md):

    UCF-101/<Class>/v_<Class>_gXX_cYY.avi
    ucfTrainTestlist/classInd.txt, trainlist0{1,2,3}.txt, testlist0{1,2,3}.txt
    unlabeled/u_NNNNNN.avi + unlabeled.txt        (no labels anywhere)
    disjoint/<Class>/v_<Class>_gXX_cYY.avi + disjoint/classInd.txt + disjoint/trainlist01.txt
    synth.json
"""

from __future__ import annotations

import json
import os
import sys
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from harness.config import keyless_default, to_dict
from harness.data.video import write_video
from harness.errors import HarnessError, naming_write_errors
from harness.provenance import code_version, fingerprint, write_json_atomic

#: Bumped whenever the rendering changes, so fingerprints of old datasets stop matching.
GENERATOR_VERSION = 4

#: Official UCF101 split protocol: 25 groups, split k tests on groups 7(k-1)+1 .. 7k.
NUM_SPLITS = 3
GROUPS_PER_TEST_SPLIT = 7

# The benchmark's classes, in classInd order: (class name, shape, motion). Every shape
# appears twice with different motions, so the shape alone is worth at most 50%.
CLASS_TABLE: tuple[tuple[str, str, str], ...] = (
    ("DiskBounce", "disk", "bounce"),
    ("DiskOrbit", "disk", "orbit"),
    ("SquareSpin", "square", "spin"),
    ("SquareTranslate", "square", "translate"),
    ("TrianglePulse", "triangle", "pulse"),
    ("TriangleOscillate", "triangle", "oscillate"),
    ("CrossPanFollow", "cross", "panfollow"),
    ("CrossBounce", "cross", "bounce"),
    ("RingTranslate", "ring", "translate"),
    ("RingSpin", "ring", "spin"),
    ("DiskPulse", "disk", "pulse"),
    ("SquareOrbit", "square", "orbit"),
    ("TrianglePanFollow", "triangle", "panfollow"),
    ("CrossOscillate", "cross", "oscillate"),
)

# Classes of the disjoint set: shapes never used by the benchmark; the motion is drawn at
# random per video, so the label is the object category only (the ImageNet stand-in).
DISJOINT_TABLE: tuple[tuple[str, str], ...] = (
    ("Star", "star"),
    ("Hexagon", "hexagon"),
    ("Diamond", "diamond"),
    ("Crescent", "crescent"),
    ("Semicircle", "semicircle"),
)

MOTIONS = ("translate", "orbit", "bounce", "pulse", "spin", "oscillate", "panfollow")


class SynthError(HarnessError):
    """A synthetic-dataset request that cannot be honoured (bad root, bad config)."""


@dataclass(frozen=True)
class SynthConfig:
    """Sizes and difficulty knobs of the generated benchmark."""

    num_classes: int = 10  # benchmark classes, the first of CLASS_TABLE (1..14)
    num_groups: int = 25  # scene groups (gXX) per class; splits test 7 groups each
    clips_per_group: int = 2  # labeled videos (cYY) per class and group
    # Numbered after the labeled clips: a split then scores more test videos (a tighter paired
    # comparison; docs/DATASET.md, Power) while its training videos, and every other video, stay the same.
    test_clips_per_group: int = keyless_default(0)  # extra clips per class and group, listed in the test lists only
    height: int = 64  # frame height in pixels (even, >= 16)
    width: int = 64  # frame width in pixels (even, >= 16)
    num_frames: int = 32  # frames per video
    fps: int = 25  # frame rate written into the video files
    num_unlabeled: int = 300  # videos in the unlabeled (pretraining) set
    disjoint_classes: int = 5  # classes of the disjoint (ImageNet stand-in) set (0..5)
    disjoint_per_class: int = 40  # disjoint-set videos per class
    max_distractors: int = 3  # per video, 0..max_distractors drifting clutter shapes
    occluder_prob: float = 0.6  # probability a video has the occluding pole
    max_pan: float = 0.2  # total camera travel over a clip, as a fraction of the frame width
    quality: int = 4  # mpeg4 qscale
    # Off by default: the ImageNet stand-in's videos are object-centric like ImageNet photos.
    # With clutter, 384 training videos are too few for a from-scratch AlexNet to find the shape
    # (held-out 0.25 after 12 epochs vs 0.66 without clutter, same loop; docs/FINETUNE.md) and
    # it memorises videos instead.
    disjoint_clutter: bool = False  # distractors and pole in the disjoint set's videos too
    real_data: bool = False  # the paper preset reads real datasets instead; see generate()


SYNTH_PRESETS: dict[str, SynthConfig] = {
    "smoke": SynthConfig(num_classes=4, clips_per_group=1, height=32, width=32, num_frames=16,
                         num_unlabeled=12, disjoint_classes=2, disjoint_per_class=4,
                         max_distractors=2),
    # 120 videos per disjoint class (was 40), so the supervised stage of AlexNet_pre has
    # enough object views to learn shapes from rather than memorise videos
    "tiny": SynthConfig(disjoint_per_class=120),
    # The paper's experiments read UCF101/HMDB51/CCV from a local path; there is no
    # synthetic stand-in at that scale, so generate() refuses this entry.
    "paper": SynthConfig(num_classes=10, height=112, width=112, real_data=True),
}


def class_names(cfg: SynthConfig) -> list[str]:
    """The benchmark class names of ``cfg`` in classInd order."""
    return [name for name, _, _ in CLASS_TABLE[: cfg.num_classes]]


def disjoint_class_names(cfg: SynthConfig) -> list[str]:
    return [name for name, _ in DISJOINT_TABLE[: cfg.disjoint_classes]]


def test_groups(split: int, num_groups: int = 25) -> list[int]:
    """1-based groups tested in official split ``split`` (1..3): 7(k-1)+1 .. 7k."""
    lo = GROUPS_PER_TEST_SPLIT * (split - 1) + 1
    return [g for g in range(lo, lo + GROUPS_PER_TEST_SPLIT) if g <= num_groups]


def video_name(cls: str, group: int, clip: int) -> str:
    return f"v_{cls}_g{group:02d}_c{clip:02d}.avi"


def validate(cfg: SynthConfig) -> None:
    """Refuse configs the generator cannot honour, naming the field."""
    checks = [
        (1 <= cfg.num_classes <= len(CLASS_TABLE), f"num_classes must be 1..{len(CLASS_TABLE)}"),
        (0 <= cfg.disjoint_classes <= len(DISJOINT_TABLE), f"disjoint_classes must be 0..{len(DISJOINT_TABLE)}"),
        (cfg.num_groups >= GROUPS_PER_TEST_SPLIT * NUM_SPLITS + 1,
         f"num_groups must be >= {GROUPS_PER_TEST_SPLIT * NUM_SPLITS + 1} so every split has train and test groups"),
        (cfg.num_groups <= 99, "num_groups must be <= 99 (two-digit gXX names)"),
        (1 <= cfg.clips_per_group <= 99, "clips_per_group must be 1..99"),
        (0 <= cfg.test_clips_per_group <= 99 - cfg.clips_per_group,
         "test_clips_per_group must be 0..99 - clips_per_group (two-digit cYY names)"),
        (cfg.height >= 16 and cfg.width >= 16 and cfg.height % 2 == 0 and cfg.width % 2 == 0,
         "height and width must be even and >= 16 (yuv420p)"),
        (cfg.num_frames >= 2, "num_frames must be >= 2"),
        (cfg.num_unlabeled >= 0 and cfg.disjoint_per_class >= 0, "counts must be >= 0"),
        (2 <= cfg.quality <= 31, "quality must be 2..31"),
    ]
    for ok, msg in checks:
        if not ok:
            raise SynthError(f"synthetic config: {msg}")


# ---- geometry: signed distances in the object's unit frame (radius ~ 1) -----------------

def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of ``shape`` at local coordinates ``u, v``."""
    if shape == "disk":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85
    if shape == "triangle":
        # equilateral triangle pointing up (v grows downward on screen)
        return np.maximum(np.abs(u) * 0.866 - v * 0.5, v) - 0.5
    if shape == "cross":
        a = np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.35)
        b = np.maximum(np.abs(u) - 0.35, np.abs(v) - 1.0)
        return np.minimum(a, b)
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.72) - 0.28
    if shape == "star":
        rho, theta = np.hypot(u, v), np.arctan2(v, u)
        return rho - (0.7 + 0.3 * np.cos(5 * theta))
    if shape == "hexagon":
        au, av = np.abs(u), np.abs(v)
        return np.maximum(av, au * 0.866 + av * 0.5) - 0.9
    if shape == "diamond":
        return (np.abs(u) + np.abs(v)) / 1.2 - 1.0
    if shape == "crescent":
        return np.maximum(np.hypot(u, v) - 1.0, 0.8 - np.hypot(u - 0.45, v))
    if shape == "semicircle":
        return np.maximum(np.hypot(u, v + 0.35) - 1.0, v - 0.35)
    if shape == "ellipse":
        return np.hypot(u, v * 3.0) - 1.0
    if shape == "bar":
        return np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.3)
    raise ValueError(f"unknown shape {shape!r}")


def _coverage(sdf_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (one-pixel soft edge)."""
    return np.clip(0.5 - sdf_px, 0.0, 1.0)


# ---- scenes (one per group) ---------------------------------------------------------------

@dataclass(frozen=True)
class _Scene:
    noise: np.ndarray  # (N, N) value-noise lattice
    cell: float  # lattice spacing in pixels
    gratings: np.ndarray  # (k, 4): fx, fy, phase, weight
    sky: np.ndarray  # (2, 3) palette above the horizon
    ground: np.ndarray  # (2, 3) palette below it
    horizon: float  # world y of the horizon, fraction of the height
    pole_x: float  # world x of the occluding pole, fraction of the width
    pole_w: float
    pole_rgb: np.ndarray  # (2, 3)
    pole_horizontal: bool


def _make_scene(rng: np.random.Generator, cfg: SynthConfig) -> _Scene:
    k = 4
    angles = rng.uniform(0, np.pi, k)
    freqs = rng.uniform(0.08, 0.35, k) * (64.0 / cfg.width)  # cycles/pixel scaled to resolution
    gratings = np.stack([np.cos(angles) * freqs, np.sin(angles) * freqs,
                         rng.uniform(0, 2 * np.pi, k), rng.dirichlet(np.ones(k))], axis=1)
    return _Scene(
        noise=rng.random((16, 16)),
        cell=max(cfg.width / rng.uniform(5.0, 10.0), 2.0),
        gratings=gratings,
        sky=_palette(rng),
        ground=_palette(rng),
        horizon=rng.uniform(0.55, 0.85),
        pole_x=rng.uniform(0.25, 0.75),
        pole_w=rng.uniform(0.07, 0.13),
        pole_rgb=rng.random((2, 3)),
        pole_horizontal=bool(rng.random() < 0.3),
    )


def _palette(rng: np.random.Generator) -> np.ndarray:
    """Two related colours: a textured but low-contrast surface, so objects stand out."""
    base = rng.uniform(0.1, 0.9, 3)
    return np.stack([base, np.clip(base + rng.normal(0, 0.12, 3), 0, 1)])


def _value_noise(scene: _Scene, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Bilinear value noise over the world plane (periodic lattice, so any pan is defined)."""
    n = scene.noise.shape[0]
    gx, gy = X / scene.cell, Y / scene.cell
    x0, y0 = np.floor(gx), np.floor(gy)
    fx, fy = gx - x0, gy - y0
    # smoothstep keeps the lattice from showing as a grid of kinks
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i0, j0 = x0.astype(np.int64) % n, y0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    L = scene.noise
    top = L[j0, i0] * (1 - fx) + L[j0, i1] * fx
    bot = L[j1, i0] * (1 - fx) + L[j1, i1] * fx
    return top * (1 - fy) + bot * fy


def _render_background(scene: _Scene, X: np.ndarray, Y: np.ndarray, H: int, W: int) -> np.ndarray:
    """RGB float (T, H, W, 3) of the scene seen through the camera (world coords X, Y)."""
    noise = _value_noise(scene, X, Y)
    # X, Y are the pixel grid shifted by the camera per frame, so each grating's phase is
    # a per-pixel term plus a per-frame constant: sin(a + b) = sin a cos b + cos a sin b
    # costs two sines per pixel instead of one per pixel and frame
    x0, y0 = X[0], Y[0]
    sx, sy = X[:, 0, 0] - x0[0, 0], Y[:, 0, 0] - y0[0, 0]
    grat = np.zeros_like(X)
    for fx, fy, ph, w in scene.gratings:
        a = 2 * np.pi * (fx * x0 + fy * y0) + ph
        b = 2 * np.pi * (fx * sx + fy * sy)
        grat += w * (np.sin(a)[None] * np.cos(b)[:, None, None] + np.cos(a)[None] * np.sin(b)[:, None, None])
    m = np.clip(0.6 * noise + 0.25 * grat + 0.2, 0.0, 1.0)[..., None]
    sky = scene.sky[0] * (1 - m) + scene.sky[1] * m
    # the ground has a coarser stripe texture of its own, so the horizon is a visible edge
    gm = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * X / (0.23 * W) + 3 * noise), 0, 1)[..., None]
    ground = scene.ground[0] * (1 - gm) + scene.ground[1] * gm
    below = _coverage(scene.horizon * H - Y)[..., None]
    return sky * (1 - below) + ground * below


def _draw_pole(img: np.ndarray, scene: _Scene, X: np.ndarray, Y: np.ndarray, H: int, W: int) -> None:
    if scene.pole_horizontal:
        d = np.abs(Y - scene.pole_x * H) - scene.pole_w * H / 2
        stripes = np.sin(2 * np.pi * X / (0.12 * W)) > 0
    else:
        d = np.abs(X - scene.pole_x * W) - scene.pole_w * W / 2
        stripes = np.sin(2 * np.pi * Y / (0.12 * H)) > 0
    a = _coverage(d)[..., None]
    col = np.where(stripes[..., None], scene.pole_rgb[0], scene.pole_rgb[1])
    img *= 1 - a
    img += a * col


# ---- trajectories ---------------------------------------------------------------------------

def _trajectory(motion: str, rng: np.random.Generator, T: int, size: float):
    """Screen-space (x, y, angle, scale) over ``T`` frames for ``motion``, in units of the
    frame (0..1), before the camera's effect. ``size`` is the object's base radius."""
    t = np.linspace(0.0, 1.0, T)
    c = rng.uniform(0.35, 0.65, 2)  # where the motion is centred
    angle0 = rng.uniform(0, 2 * np.pi)
    angle = np.full(T, angle0)
    scale = np.full(T, size)
    x, y = np.full(T, c[0]), np.full(T, c[1])
    jitter = lambda: rng.normal(0, 0.004, T).cumsum() * 0.5  # small hand-held wobble
    if motion == "translate":
        d = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.35, 0.6)
        x = 0.5 + (t - 0.5) * length * np.cos(d) + rng.uniform(-0.08, 0.08)
        y = 0.5 + (t - 0.5) * length * np.sin(d) + rng.uniform(-0.08, 0.08)
    elif motion == "orbit":
        r = rng.uniform(0.15, 0.25)
        turns = rng.uniform(0.6, 1.4) * rng.choice([-1, 1])
        ph = rng.uniform(0, 2 * np.pi)
        x = 0.5 + r * np.cos(2 * np.pi * turns * t + ph)
        y = 0.5 + r * np.sin(2 * np.pi * turns * t + ph)
    elif motion == "bounce":
        n = rng.uniform(1.5, 3.0)
        h = rng.uniform(0.3, 0.45)
        floor = rng.uniform(0.7, 0.8)
        y = floor - h * np.abs(np.sin(np.pi * n * t + rng.uniform(0, np.pi)))
        x = c[0] + rng.uniform(-0.15, 0.15) * (t - 0.5)
    elif motion == "pulse":
        f = rng.uniform(1.5, 3.0)
        scale = size * (1.0 + rng.uniform(0.3, 0.45) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)))
        x, y = x + jitter(), y + jitter()
    elif motion == "spin":
        turns = rng.uniform(0.7, 2.0) * rng.choice([-1, 1])
        angle = angle0 + 2 * np.pi * turns * t
        x, y = x + jitter(), y + jitter()
    elif motion == "oscillate":
        d = rng.uniform(0, np.pi)
        a = rng.uniform(0.15, 0.25)
        f = rng.uniform(1.5, 3.0)
        s = a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        x, y = 0.5 + s * np.cos(d), 0.5 + s * np.sin(d)
    elif motion == "panfollow":
        x, y = x + jitter(), y + jitter()
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return x, y, angle, scale


# ---- one video ------------------------------------------------------------------------------

def render_video(cfg: SynthConfig, scene: _Scene, shape: str, motion: str,
                 rng: np.random.Generator) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one object of ``shape`` doing ``motion`` in ``scene``."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5

    # camera: a constant pan (ego-motion), faster and following the object for panfollow
    pan_dir = rng.uniform(0, 2 * np.pi)
    travel = rng.uniform(0.0, cfg.max_pan) if motion != "panfollow" else rng.uniform(0.6, 1.0) * cfg.max_pan * 2
    tt = np.linspace(-0.5, 0.5, T)
    cam_x = (tt * travel * np.cos(pan_dir) + rng.uniform(0, 4)) * W
    cam_y = (tt * travel * np.sin(pan_dir) * 0.5) * H  # mostly horizontal, like real pans
    X = xs[None] + cam_x[:, None, None]
    Y = ys[None] + cam_y[:, None, None]

    img = _render_background(scene, X, Y, H, W)

    size = rng.uniform(0.17, 0.24)
    ox, oy, angle, scale = _trajectory(motion, rng, T, size)
    if motion == "panfollow":
        sx, sy = ox * W, oy * H  # the camera keeps the object where it is on screen
    else:
        # the object lives in the world: the pan moves it on screen too (centred mid-clip)
        sx, sy = ox * W - (cam_x - cam_x.mean()), oy * H - (cam_y - cam_y.mean())

    # distractors are placed in view mid-clip (world = screen + mean camera offset)
    distractors = _distractors(cfg, rng, H, W, cam_x.mean(), cam_y.mean())
    for d in distractors:
        if not d["front"]:
            _draw_distractor(img, d, X, Y, tt)

    # the main object: a shape with a fill texture fixed in its own frame (its identity)
    scale_px = (scale * min(H, W))[:, None, None]
    ca, sa = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dx, dy = xs[None] - sx[:, None, None], ys[None] - sy[:, None, None]
    u = (ca * dx + sa * dy) / scale_px
    v = (-sa * dx + ca * dy) / scale_px
    sdf_px = _shape_sdf(shape, u, v) * scale_px
    a = _coverage(sdf_px)[..., None]
    # a dark rim one pixel wide inside the silhouette makes the shape readable on any fill
    rim = (_coverage(sdf_px) - _coverage(sdf_px + 1.2))[..., None]
    c1, c2 = _contrasting_colours(rng, img.reshape(-1, 3).mean(0))
    freq = rng.uniform(1.2, 2.2)
    if rng.random() < 0.5:
        pattern = np.sin(np.pi * freq * (u + rng.uniform(0, 2)))
    else:
        pattern = np.sin(np.pi * freq * u) * np.sin(np.pi * freq * v)
    m = np.clip(0.5 + 2.0 * pattern, 0, 1)[..., None]
    obj = c1 * (1 - m) + c2 * m
    obj = obj * (1 - rim) + 0.08 * rim
    img *= 1 - a
    img += a * obj

    for d in distractors:
        if d["front"]:
            _draw_distractor(img, d, X, Y, tt)
    if rng.random() < cfg.occluder_prob:
        # the pole stands where the camera looks mid-clip, so it crosses the object's path
        _draw_pole(img, scene, X - cam_x.mean(), Y - cam_y.mean(), H, W)

    # per-video colour gain and offset: the mean colour of a video is noise, not a cue
    gain = rng.uniform(0.6, 1.3, 3)
    offset = rng.uniform(-0.12, 0.12, 3)
    img = img * gain + offset
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _contrasting_colours(rng: np.random.Generator, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two fill colours whose mean differs from the background enough to be seen."""
    for _ in range(20):
        c1, c2 = rng.random(3), rng.random(3)
        if np.abs((c1 + c2) / 2 - bg).sum() > 0.45 and np.abs(c1 - c2).sum() > 0.4:
            break
    return c1, c2


def _distractors(cfg: SynthConfig, rng: np.random.Generator, H: int, W: int,
                 cx: float, cy: float) -> list[dict]:
    out = []
    for _ in range(int(rng.integers(0, cfg.max_distractors + 1))):
        out.append({
            "shape": "ellipse" if rng.random() < 0.5 else "bar",
            "x": rng.uniform(0.0, 1.0) * W + cx, "y": rng.uniform(0.0, 1.0) * H + cy,
            "vx": rng.uniform(-0.15, 0.15) * W, "vy": rng.uniform(-0.15, 0.15) * H,
            "size": rng.uniform(0.05, 0.09) * min(H, W),
            "angle": rng.uniform(0, np.pi), "spin": rng.uniform(-1, 1),
            "rgb": rng.random(3), "front": bool(rng.random() < 0.35),
        })
    return out


def _draw_distractor(img, d, X, Y, tt) -> None:
    """A small drifting bar/ellipse; it lives in the world, so the pan moves it too."""
    # X, Y hold the world coordinates of every pixel; the distractor's world centre drifts
    dx = X - (d["x"] + d["vx"] * tt)[:, None, None]
    dy = Y - (d["y"] + d["vy"] * tt)[:, None, None]
    ang = d["angle"] + d["spin"] * tt
    ca, sa = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    u = (ca * dx + sa * dy) / d["size"]
    v = (-sa * dx + ca * dy) / d["size"]
    a = _coverage(_shape_sdf(d["shape"], u, v) * d["size"])[..., None]
    img *= 1 - a
    img += a * d["rgb"]


# ---- the dataset --------------------------------------------------------------------------

def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (seed, kind, ...) so each video is reproducible on its own."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *key]))


_KIND_SCENE, _KIND_LABELED, _KIND_UNLABELED, _KIND_DISJOINT, _KIND_DSCENE, _KIND_USCENE = range(6)


def _jobs(cfg: SynthConfig, seed: int):
    """Every video to write: (relative path, seed key, scene key, shape, motion or None)."""
    names = class_names(cfg)
    for ci, (name, shape, motion) in enumerate(CLASS_TABLE[: cfg.num_classes]):
        for g in range(1, cfg.num_groups + 1):
            for c in range(1, cfg.clips_per_group + cfg.test_clips_per_group + 1):
                yield (f"UCF-101/{name}/{video_name(name, g, c)}", (_KIND_LABELED, ci, g, c),
                       (_KIND_SCENE, g), shape, motion)
    # unlabeled: a class drawn at random per video, never recorded; scenes of their own so
    # no test group's background leaks into self-supervised training
    pick = _rng(seed, _KIND_UNLABELED, 10**6)
    classes = pick.integers(0, len(names), cfg.num_unlabeled)
    scenes = pick.integers(0, 50, cfg.num_unlabeled)
    for i in range(cfg.num_unlabeled):
        _, shape, motion = CLASS_TABLE[int(classes[i])]
        yield (f"unlabeled/u_{i:06d}.avi", (_KIND_UNLABELED, i), (_KIND_USCENE, int(scenes[i])), shape, motion)
    for di, (name, shape) in enumerate(DISJOINT_TABLE[: cfg.disjoint_classes]):
        for i in range(cfg.disjoint_per_class):
            g, c = i // 2 + 1, i % 2 + 1
            yield (f"disjoint/{name}/{video_name(name, g, c)}", (_KIND_DISJOINT, di, i),
                   (_KIND_DSCENE, g), shape, None)


def _split_files(cfg: SynthConfig) -> dict[str, str]:
    """Text of classInd.txt and the six official split lists."""
    names = class_names(cfg)
    out = {"classInd.txt": "".join(f"{i + 1} {n}\n" for i, n in enumerate(names))}
    for k in range(1, NUM_SPLITS + 1):
        test = set(test_groups(k, cfg.num_groups))
        train_lines, test_lines = [], []
        for ci, n in enumerate(names):
            for g in range(1, cfg.num_groups + 1):
                for c in range(1, cfg.clips_per_group + cfg.test_clips_per_group + 1):
                    rel = f"{n}/{video_name(n, g, c)}"
                    if g in test:
                        test_lines.append(f"{rel}\n")
                    elif c <= cfg.clips_per_group:   # the extra clips are test videos only
                        train_lines.append(f"{rel} {ci + 1}\n")
        out[f"trainlist0{k}.txt"] = "".join(train_lines)
        out[f"testlist0{k}.txt"] = "".join(test_lines)
    return out


def dataset_fingerprint(cfg: SynthConfig, seed: int) -> str:
    return fingerprint({"config": to_dict(cfg), "seed": int(seed), "generator": GENERATOR_VERSION})


def generate(root: str | os.PathLike, cfg: SynthConfig, seed: int = 0, progress: bool = True,
             overwrite: bool = False) -> Path:
    """Write the benchmark for ``cfg`` and ``seed`` under ``root`` and return ``root``.

    Everything is written into a hidden sibling folder that is renamed to ``root`` only
    once complete (``synth.json`` last), so an interrupted run never leaves a dataset
    that looks whole. A non-empty ``root`` is refused unless ``overwrite``.
    """
    root = Path(root)
    if cfg.real_data:
        raise SynthError("preset 'paper' uses the real UCF101/HMDB51/CCV videos from a local path; "
                         "the synthetic benchmark exists only for the smoke and tiny presets")
    validate(cfg)
    if root.exists() and not root.is_dir():
        raise SynthError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise SynthError(f"{root}: folder is not empty; choose another --root or pass --force")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        with naming_write_errors(root):   # a full disk mid-way names the set being written
            _write_all(tmp, cfg, seed, progress)
        meta = {
            "generator": "harness.data.synth", "generator_version": GENERATOR_VERSION,
            "config": to_dict(cfg), "seed": int(seed), "fingerprint": dataset_fingerprint(cfg, seed),
            "code_version": code_version(), "classes": class_names(cfg),
            "disjoint_classes": disjoint_class_names(cfg),
            "counts": {"labeled": cfg.num_classes * cfg.num_groups * (cfg.clips_per_group + cfg.test_clips_per_group),
                       "unlabeled": cfg.num_unlabeled,
                       "disjoint": cfg.disjoint_classes * cfg.disjoint_per_class},
            "generation_seconds": round(time.perf_counter() - t0, 2),
        }
        write_json_atomic(tmp / "synth.json", meta)
        if root.exists():
            old = root.parent / f".{root.name}.old-{os.getpid()}"
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _write_all(out: Path, cfg: SynthConfig, seed: int, progress: bool) -> None:
    jobs = list(_jobs(cfg, seed))
    scenes: dict[tuple, _Scene] = {}
    try:
        from tqdm import tqdm
        it = tqdm(jobs, desc="synth videos", unit="video", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        it = jobs
    # the disjoint set's own rendering knobs (see SynthConfig.disjoint_clutter)
    dcfg = cfg if cfg.disjoint_clutter else replace(cfg, max_distractors=0, occluder_prob=0.0)
    for rel, key, scene_key, shape, motion in it:
        if scene_key not in scenes:
            scenes[scene_key] = _make_scene(_rng(seed, *scene_key), cfg)
        rng = _rng(seed, *key)
        if motion is None:
            motion = MOTIONS[int(rng.integers(0, len(MOTIONS)))]
        frames = render_video(dcfg if key[0] == _KIND_DISJOINT else cfg, scenes[scene_key], shape, motion, rng)
        write_video(out / rel, frames, fps=cfg.fps, quality=cfg.quality)

    lists = out / "ucfTrainTestlist"
    lists.mkdir()
    for name, text in _split_files(cfg).items():
        (lists / name).write_text(text)
    (out / "unlabeled.txt").write_text("".join(f"unlabeled/u_{i:06d}.avi\n" for i in range(cfg.num_unlabeled)))
    dnames = disjoint_class_names(cfg)
    (out / "disjoint").mkdir(exist_ok=True)
    (out / "disjoint" / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(dnames)))
    (out / "disjoint" / "trainlist01.txt").write_text("".join(
        f"{n}/{video_name(n, i // 2 + 1, i % 2 + 1)} {di + 1}\n"
        for di, n in enumerate(dnames) for i in range(cfg.disjoint_per_class)))


def default_root(preset: str) -> Path:
    """Where the pipeline keeps the generated benchmark of ``preset``."""
    return Path("data") / f"synth-{preset}"


def ensure_generated(preset: str, seed: int = 0, progress: bool = True) -> Path:
    """The default synthetic dataset of ``preset``, generated on first use.

    ``data/synth-<preset>`` is a cache of the generator: when its ``synth.json`` records
    another config, seed or generator version it is regenerated, so no run reads stale data.
    """
    from harness.config import resolve

    cfg = resolve(SYNTH_PRESETS, preset)
    root = default_root(preset)
    meta = root / "synth.json"
    want = dataset_fingerprint(cfg, seed)
    if meta.is_file():
        try:
            have = json.loads(meta.read_text()).get("fingerprint")
        except (OSError, ValueError):
            have = None
        if have == want:
            return root
        print(f"{root}: generated by another generator version/config; regenerating", file=sys.stderr)
    return generate(root, cfg, seed=seed, progress=progress, overwrite=meta.is_file() or root.exists())
