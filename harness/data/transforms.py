"""Augmentation views as data (FKD style), the one crop/resize, and the one normalisation.

A :class:`View` is a crop box in normalised coordinates plus a horizontal flip. Teachers
see frames through views sampled once; the views are stored in the feature cache next to
the decoded frames, and the student replays exactly the same crops later, on CPU with
:func:`apply_view` or batched on GPU with :func:`apply_views_torch` (same maths: the crop box
is rounded to whole pixels identically, then resampled with the antialiased bilinear filter
of ``torch.nn.functional.interpolate(..., antialias=True)``, i.e. PIL's BILINEAR resize).

:func:`to_tensor` is the only place where frames become normalised model input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# ImageNet statistics, RGB, for pixel values scaled to [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class View:
    """A crop box ``(y0, x0, h, w)`` as fractions of the frame height/width (top-left corner
    and size, all in [0, 1]) and whether the crop is mirrored left-right."""

    y0: float
    x0: float
    h: float
    w: float
    flip: bool = False

    def __post_init__(self):
        tol = 1e-5
        if not (self.h > 0 and self.w > 0 and self.y0 >= -tol and self.x0 >= -tol
                and self.y0 + self.h <= 1 + tol and self.x0 + self.w <= 1 + tol):
            raise ValueError(f"view box outside the unit square: {self}")

    def as_array(self) -> np.ndarray:
        """``float32 [y0, x0, h, w, flip]`` (the 5-vector stored in the feature cache)."""
        return np.array([self.y0, self.x0, self.h, self.w, float(self.flip)], dtype=np.float32)

    @classmethod
    def from_array(cls, a: Sequence[float] | np.ndarray) -> "View":
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        if a.shape != (5,):
            raise ValueError(f"a view array has 5 values (y0, x0, h, w, flip), got shape {a.shape}")
        return cls(float(a[0]), float(a[1]), float(a[2]), float(a[3]), bool(a[4] >= 0.5))


FULL_VIEW = View(0.0, 0.0, 1.0, 1.0, False)


def sample_view(rng: np.random.Generator, scale: tuple[float, float] = (0.5, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3), aspect: float = 1.0,
                flip_prob: float = 0.5) -> View:
    """A random resized crop + random flip, the RandomResizedCrop recipe in normalised form.

    ``scale`` bounds the crop's fraction of the frame area, ``ratio`` its width/height in
    pixels (log-uniform), ``aspect`` is the source frames' width/height (needed to turn a
    pixel ratio into normalised sizes). After 10 rejected tries, falls back to the largest
    centred crop whose ratio is within ``ratio``.
    """
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    view = None
    for _ in range(10):
        area = rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(log_lo, log_hi))
        # normalised w*h = area and pixel ratio (w*W)/(h*H) = r  =>  w/h = r / aspect
        w = math.sqrt(area * r / aspect)
        h = math.sqrt(area * aspect / r)
        if w <= 1.0 and h <= 1.0:
            y0 = rng.uniform(0.0, 1.0 - h)
            x0 = rng.uniform(0.0, 1.0 - w)
            view = (y0, x0, h, w)
            break
    if view is None:
        if aspect < ratio[0]:      # frame too tall: full width, height from the min ratio
            w, h = 1.0, aspect / ratio[0]
        elif aspect > ratio[1]:    # frame too wide: full height, width from the max ratio
            w, h = ratio[1] / aspect, 1.0
        else:
            w, h = 1.0, 1.0
        view = ((1.0 - h) / 2, (1.0 - w) / 2, h, w)
    flip = bool(rng.random() < flip_prob)
    return View(*view, flip=flip)


def center_view(scale: float = 0.875, aspect: float = 1.0) -> View:
    """The centred square (in pixels) crop whose side is ``scale`` times the short side
    (``0.875`` = the classic resize-256 / crop-224 test crop); ``aspect`` = width/height."""
    if aspect >= 1.0:
        h, w = scale, scale / aspect
    else:
        h, w = scale * aspect, scale
    return View((1.0 - h) / 2, (1.0 - w) / 2, h, w, False)


def _out_hw(out_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(out_size, (int, np.integer)):
        return int(out_size), int(out_size)
    oh, ow = out_size
    return int(oh), int(ow)


def pixel_box(view_arr: np.ndarray | torch.Tensor, height: int, width: int):
    """Whole-pixel crop boxes ``(top, left, crop_h, crop_w)`` of views ``(..., 5)``: corners
    and sizes rounded half-up in float64, at least one pixel, clipped to the frame. Shared
    by :func:`apply_view` and :func:`apply_views_torch` so both crop identically."""
    if isinstance(view_arr, torch.Tensor):
        v = view_arr.to(torch.float64)
        floor, clip = torch.floor, torch.clamp
    else:
        v = np.asarray(view_arr, dtype=np.float64)
        floor, clip = np.floor, np.clip
    top = clip(floor(v[..., 0] * height + 0.5), 0, height - 1)
    left = clip(floor(v[..., 1] * width + 0.5), 0, width - 1)
    ch = clip(floor(v[..., 2] * height + 0.5), 1, None)
    cw = clip(floor(v[..., 3] * width + 0.5), 1, None)
    if isinstance(v, torch.Tensor):
        ch = torch.minimum(ch, height - top)
        cw = torch.minimum(cw, width - left)
        return top.long(), left.long(), ch.long(), cw.long()
    ch = np.minimum(ch, height - top)
    cw = np.minimum(cw, width - left)
    return top.astype(np.int64), left.astype(np.int64), ch.astype(np.int64), cw.astype(np.int64)


def apply_view(frames: np.ndarray, view: View, out_size: int | Sequence[int]) -> np.ndarray:
    """Crop ``frames`` (T, H, W, 3) or (H, W, 3) uint8 to ``view``, resize to ``out_size``
    (int or (h, w)) with antialiased bilinear interpolation (float64, so the rounding to
    uint8 does not depend on the machine's SIMD width), mirror if ``view.flip``. uint8 out."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) or (H, W, 3), got {frames.dtype} {frames.shape}")
    single = frames.ndim == 3
    if single:
        frames = frames[None]
    H, W = frames.shape[1:3]
    oh, ow = _out_hw(out_size)
    top, left, ch, cw = (int(x) for x in pixel_box(view.as_array(), H, W))
    crop = frames[:, top:top + ch, left:left + cw]
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(0, 3, 1, 2).to(torch.float64)
    if (ch, cw) != (oh, ow):
        x = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)
    if view.flip:
        x = x.flip(-1)
    out = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out[0] if single else out


def _resample_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int,
                     dtype: torch.dtype) -> torch.Tensor:
    """(B, out_size, in_size) weights resampling the pixel range [start, start+length) to
    ``out_size`` samples with the antialiased triangle filter (PIL / torch ``antialias=True``):
    output i is centred at ``start + (i + 0.5) * s`` (s = length/out_size), input pixel j at
    ``j + 0.5``; the filter is stretched by ``max(s, 1)`` and rows are normalised to 1."""
    start = start.to(torch.float64)[:, None, None]
    length = length.to(torch.float64)[:, None, None]
    s = length / out_size
    i = torch.arange(out_size, dtype=torch.float64, device=start.device)[None, :, None]
    j = torch.arange(in_size, dtype=torch.float64, device=start.device)[None, None, :]
    center = start + (i + 0.5) * s
    support = torch.clamp(s, min=1.0)
    w = torch.clamp(1.0 - (j + 0.5 - center).abs() / support, min=0.0)
    w = w * ((j >= start) & (j < start + length))
    w = w / w.sum(-1, keepdim=True)
    return w.to(dtype)


def apply_views_torch(frames: torch.Tensor, views: torch.Tensor, out_size: int | Sequence[int],
                      normalize: bool = True, round_uint8: bool = True) -> torch.Tensor:
    """Batched :func:`apply_view` on any device: ``frames`` uint8 (B, H, W, 3), ``views``
    (B, 5) -> float (B, 3, out_h, out_w).

    The crop + antialiased resize is two batched matrix products (rows, then columns) with
    per-item resampling matrices, so a batch with different crops runs as one kernel. With
    ``round_uint8`` the result is rounded to 0..255 integers first (what :func:`apply_view`
    returns); with ``normalize`` it then goes through the same normalisation as
    :func:`to_tensor`, so the student sees what the teachers saw.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (B, H, W, 3), got {tuple(frames.shape)}")
    B, H, W, _ = frames.shape
    views = torch.as_tensor(views).to(frames.device)
    if views.shape != (B, 5):
        raise ValueError(f"views must be (B, 5) = ({B}, 5), got {tuple(views.shape)}")
    oh, ow = _out_hw(out_size)
    top, left, ch, cw = pixel_box(views, H, W)
    dtype = torch.float32
    wy = _resample_matrix(top, ch, H, oh, dtype)                       # (B, oh, H)
    wx = _resample_matrix(left, cw, W, ow, dtype)                      # (B, ow, W)
    flip = views[:, 4] >= 0.5
    wx = torch.where(flip[:, None, None], wx.flip(1), wx)             # mirror = reversed output columns
    x = frames.to(dtype).reshape(B, H, W * 3)
    x = torch.bmm(wy, x).reshape(B, oh, W, 3).permute(0, 3, 1, 2).reshape(B, 3 * oh, W)
    x = torch.bmm(x, wx.transpose(1, 2)).reshape(B, 3, oh, ow)
    if round_uint8:
        x = x.round().clamp(0, 255)
    return normalize_tensor(x) if normalize else x


def normalize_tensor(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float pixel values in 0..255 -> ImageNet-normalised float32."""
    mean = torch.tensor(MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x.to(torch.float32) / 255.0 - mean) / std


def to_tensor(frames_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) or (H, W, 3), numpy or torch -> float32 (N, 3, H, W)
    normalised with ImageNet :data:`MEAN` / :data:`STD` (a single frame gives N = 1)."""
    x = torch.as_tensor(np.asarray(frames_uint8) if not isinstance(frames_uint8, torch.Tensor) else frames_uint8)
    if x.dtype != torch.uint8 or x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (N, H, W, 3) or (H, W, 3), got {x.dtype} {tuple(x.shape)}")
    if x.ndim == 3:
        x = x[None]
    return normalize_tensor(x.permute(0, 3, 1, 2).contiguous())
