"""Views, crop/resize and normalisation against independent oracles (PIL, slicing, hand maths)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.data.transforms import (MEAN, STD, View, apply_view, apply_views_torch, center_view, pixel_box,
                                     sample_view, to_tensor)


def _frames(seed=0, shape=(3, 24, 40, 3)):
    rng = np.random.default_rng(seed)
    # smooth-ish content plus noise, like video frames
    yy, xx = np.mgrid[:shape[1], :shape[2]]
    base = (120 + 80 * np.sin(yy / 3.0)[..., None] * np.cos(xx / 5.0)[..., None]).astype(np.float64)
    noise = rng.normal(0, 30, shape)
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


def _pil_resize(img, out_hw):
    """PIL float-mode bilinear (antialiased on downscale) per channel, rounded to uint8."""
    chans = [np.asarray(Image.fromarray(img[..., c].astype(np.float32), mode="F")
                        .resize((out_hw[1], out_hw[0]), Image.BILINEAR)) for c in range(3)]
    return np.clip(np.round(np.stack(chans, -1)), 0, 255).astype(np.uint8)


def test_view_round_trip_and_validation():
    v = View(0.125, 0.25, 0.5, 0.625, True)
    a = v.as_array()
    assert a.dtype == np.float32 and a.shape == (5,) and list(a) == [0.125, 0.25, 0.5, 0.625, 1.0]
    assert View.from_array(a) == v
    rng = np.random.default_rng(3)
    for _ in range(50):
        s = sample_view(rng, aspect=1.5)
        back = View.from_array(s.as_array())
        assert back.flip == s.flip
        assert np.allclose([back.y0, back.x0, back.h, back.w], [s.y0, s.x0, s.h, s.w], atol=1e-7)
    with pytest.raises(ValueError):
        View(0.6, 0.0, 0.5, 0.5)
    with pytest.raises(ValueError):
        View(0.0, 0.0, 0.0, 0.5)
    with pytest.raises(ValueError):
        View.from_array([0, 0, 1, 1])


def test_sample_view_ranges_and_seed():
    aspect = 4 / 3              # a 240 x 320 frame
    H, W = 240, 320
    views = [sample_view(np.random.default_rng(7), aspect=aspect) for _ in range(2)]
    assert views[0] == views[1]
    rng = np.random.default_rng(11)
    vs = [sample_view(rng, scale=(0.3, 0.9), ratio=(0.75, 4 / 3), aspect=aspect) for _ in range(400)]
    for v in vs:
        assert 0 <= v.y0 and v.y0 + v.h <= 1 + 1e-9 and 0 <= v.x0 and v.x0 + v.w <= 1 + 1e-9
        assert 0.3 - 1e-9 <= v.h * v.w <= 0.9 + 1e-9                     # area fraction
        assert 0.75 - 1e-9 <= (v.w * W) / (v.h * H) <= 4 / 3 + 1e-9     # pixel aspect of the crop
    flips = np.mean([v.flip for v in vs])
    assert 0.4 < flips < 0.6
    assert len({(v.y0, v.x0) for v in vs}) == len(vs)
    # impossible request (area > 1 with an extreme ratio) falls back to a centred crop
    fb = sample_view(np.random.default_rng(0), scale=(1.0, 1.0), ratio=(3.0, 3.0), aspect=1.0, flip_prob=0.0)
    assert np.allclose(fb.as_array(), [1 / 3, 0.0, 1 / 3, 1.0, 0.0])


def test_center_view_by_hand():
    assert center_view(0.875) == View(0.0625, 0.0625, 0.875, 0.875, False)
    v = center_view(0.5, aspect=2.0)         # H x 2H frame: square of side H/2
    assert (v.h, v.w, v.y0, v.x0) == (0.5, 0.25, 0.25, 0.375)
    v = center_view(0.5, aspect=0.5)         # 2W x W frame
    assert (v.h, v.w, v.y0, v.x0) == (0.25, 0.5, 0.375, 0.25)


def test_full_view_equals_plain_resize():
    fr = _frames()
    full = View(0.0, 0.0, 1.0, 1.0, False)
    for out in [(12, 20), (16, 16), (37, 55)]:     # down, mixed, up
        got = apply_view(fr, full, out)
        assert got.dtype == np.uint8 and got.shape == (3, *out, 3)
        for t in range(3):
            want = _pil_resize(fr[t], out)
            diff = np.abs(got[t].astype(int) - want)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # same size: identity, single frame input keeps its shape
    assert np.array_equal(apply_view(fr[0], full, (24, 40)), fr[0])


def test_crop_is_the_pixel_box():
    fr = _frames(1)
    H, W = fr.shape[1:3]
    v = View(6 / H, 10 / W, 12 / H, 20 / W, False)
    assert np.array_equal(apply_view(fr, v, (12, 20)), fr[:, 6:18, 10:30])
    # fractional boxes round to the nearest pixel: top 5.6 -> 6, left 9.7 -> 10, 11.6 -> 12 rows,
    # 19.5 -> 20 cols (half up), and a box running past the edge is clipped
    v = View(5.6 / H, 9.7 / W, 11.6 / H, 19.5 / W, False)
    assert np.array_equal(apply_view(fr, v, (12, 20)), fr[:, 6:18, 10:30])
    assert [int(x) for x in pixel_box(v.as_array(), H, W)] == [6, 10, 12, 20]
    assert [int(x) for x in pixel_box(np.array([0.99, 0.0, 0.01, 1.0, 0]), H, W)] == [23, 0, 1, W]
    assert [int(x) for x in pixel_box(np.array([0.9, 0.0, 0.1, 1.0, 0]), 10, W)] == [9, 0, 1, W]
    # crop then downscale 2x: equals PIL on the sliced crop
    got = apply_view(fr[0], v, (6, 10))
    assert np.abs(got.astype(int) - _pil_resize(fr[0, 6:18, 10:30], (6, 10))).max() <= 1


def test_flip_reverses_width():
    fr = _frames(2)
    v = View(0.1, 0.2, 0.7, 0.6, False)
    vf = View(0.1, 0.2, 0.7, 0.6, True)
    a, b = apply_view(fr, v, 16), apply_view(fr, vf, 16)
    assert np.array_equal(b, a[:, :, ::-1])
    full = View(0, 0, 1, 1, True)
    assert np.array_equal(apply_view(fr, full, fr.shape[1:3]), fr[:, :, ::-1])


def test_two_x_downscale_filter_by_hand():
    """Antialiased 2x reduction of one row: weights (1, 3, 3, 1)/8 inside, renormalised at edges."""
    row = np.array([0, 40, 80, 120, 160, 200, 240, 250], dtype=np.float64)
    img = np.repeat(np.repeat(row[None, :, None], 2, 0), 3, 2).astype(np.uint8)     # (2, 8, 3)
    want = []
    for i in range(4):
        c = 2 * i + 1                                   # output centre in input coords
        w = np.array([max(0.0, 1 - abs(j + 0.5 - c) / 2) for j in range(8)])
        want.append((w * row).sum() / w.sum())
    want = np.array(want)
    assert np.allclose(want[1], (40 + 3 * 80 + 3 * 120 + 160) / 8)
    got = apply_view(img, View(0, 0, 1, 1), (1, 4))[0, :, 0]
    assert np.array_equal(got, np.floor(want + 0.5).astype(np.uint8))
    t = apply_views_torch(torch.from_numpy(img[None]), torch.tensor([[0, 0, 1, 1, 0.0]]), (1, 4),
                          normalize=False, round_uint8=False)
    assert np.allclose(t[0, 0, 0].numpy(), want, atol=1e-4)


def test_upscale_is_plain_bilinear():
    fr = _frames(3, (2, 10, 12, 3))
    got = apply_view(fr, View(0, 0, 1, 1), (25, 31))
    ref = F.interpolate(torch.from_numpy(fr).permute(0, 3, 1, 2).double(), size=(25, 31), mode="bilinear",
                        align_corners=False, antialias=False)
    ref = ref.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(got.astype(int) - ref).max() <= 1 and (got != ref).mean() < 0.01


def test_batched_torch_matches_apply_view():
    rng = np.random.default_rng(5)
    fr = _frames(4, (16, 30, 44, 3))
    H, W = fr.shape[1:3]
    views = [sample_view(rng, scale=(0.05, 1.0), aspect=W / H) for _ in range(len(fr))]
    views[0] = View(0, 0, 1, 1, True)
    assert any(v.flip for v in views) and not all(v.flip for v in views)
    varr = torch.from_numpy(np.stack([v.as_array() for v in views]))
    for out in (16, (20, 28), 64):
        got = apply_views_torch(torch.from_numpy(fr), varr, out, normalize=False).numpy()
        ref = np.stack([apply_view(fr[i], views[i], out) for i in range(len(fr))]).transpose(0, 3, 1, 2)
        diff = np.abs(got - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
        normed = apply_views_torch(torch.from_numpy(fr), varr, out)
        ref_t = to_tensor(ref.transpose(0, 2, 3, 1))
        assert normed.shape == ref_t.shape and normed.dtype == torch.float32
        assert (normed - ref_t).abs().max() <= 1 / 255 / min(STD) + 1e-5


def test_to_tensor_by_hand():
    img = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    img[1, 2, 3] = (255, 128, 0)
    t = to_tensor(img)
    assert t.shape == (2, 3, 3, 4) and t.dtype == torch.float32
    assert math.isclose(float(t[1, 0, 2, 3]), (1.0 - MEAN[0]) / STD[0], rel_tol=1e-6)
    assert math.isclose(float(t[1, 1, 2, 3]), (128 / 255 - MEAN[1]) / STD[1], rel_tol=1e-6)
    assert math.isclose(float(t[0, 2, 0, 0]), (0 - MEAN[2]) / STD[2], rel_tol=1e-6)
    assert to_tensor(img[1]).shape == (1, 3, 3, 4)
    assert torch.equal(to_tensor(torch.from_numpy(img)), t)
    with pytest.raises(ValueError):
        to_tensor(img.astype(np.float32))
