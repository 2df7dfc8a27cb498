"""Speed of frame fetches: seeking to the keyframe before a clip (``read_video(indices=...)``)
beside decoding from the start up to it (what fetches did before seeking), on one long clip,
side by side in one run; and a whole-video decode for the frames/s of plain decoding.

Run: OMP_NUM_THREADS=1 pytest benchmarks -k decode --benchmark-only
The ratio (seek / from-start fetches per second) is printed at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

import harness.data.video as video

# A 30 s clip at 25 fps, 320x240 (UCF101's size), xvid-like mpeg4 in AVI, a keyframe every 12
# frames (ffmpeg's mpeg4 default); fetches of 8 consecutive frames at random positions.
FRAMES, HEIGHT, WIDTH, GOP, CLIP, FETCHES = 750, 240, 320, 12, 8, 12


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    noise = rng.integers(0, 40, (HEIGHT, WIDTH, 1), dtype=np.uint8)
    frames = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(FRAMES):   # a drifting grating over fixed noise: every frame differs
        frames[t] = ((np.sin((xx + 3 * t) / 9.0) + np.cos((yy - 2 * t) / 13.0)) * 50 + 110)[..., None] + noise
    path = tmp_path_factory.mktemp("decode") / "long.avi"
    video.write_video(path, frames, fps=25, keyframe_every=GOP)
    return path


def _starts():
    return np.random.default_rng(1).integers(0, FRAMES - CLIP, FETCHES)


def _fetch_seeking(path):
    for s in _starts():
        video.read_video(path, indices=range(s, s + CLIP))


def _fetch_from_start(path):
    for s in _starts():
        video._linear_decode(path, list(range(s, s + CLIP)), video._converter(None, "squash"))


@pytest.fixture(scope="module")
def rates():
    return {}


@pytest.mark.parametrize("how", ["seek", "from_start"])
def test_bench_clip_fetch(benchmark, long_clip, how, rates, report_lines):
    fetch = _fetch_seeking if how == "seek" else _fetch_from_start
    benchmark.pedantic(fetch, args=(long_clip,), rounds=3, iterations=1, warmup_rounds=1)
    rates[how] = FETCHES / benchmark.stats.stats.mean
    report_lines.append(f"clip fetch [{how}]: {rates[how]:.1f} clips/s of {CLIP} frames from a "
                        f"{FRAMES}-frame {WIDTH}x{HEIGHT} mpeg4 AVI (keyframe every {GOP})")
    if len(rates) == 2:
        report_lines.append(f"clip fetch seek / from-start: {rates['seek'] / rates['from_start']:.1f}x")


def test_bench_full_decode(benchmark, long_clip, report_lines):
    benchmark.pedantic(video.read_video, args=(long_clip,), rounds=2, iterations=1, warmup_rounds=0)
    report_lines.append(f"full decode: {FRAMES / benchmark.stats.stats.mean:.0f} frames/s "
                        f"({FRAMES * HEIGHT * WIDTH * 3 / 1e6:.0f} MB of RGB frames)")
