"""Seeking frame fetches against a decode-everything oracle, and the aspect-preserving resize."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import harness.data.video as video
from harness.data.video import read_video, write_video

N_FRAMES = 75


def _frames(h: int = 48, w: int = 64) -> np.ndarray:
    """Frames that differ from each other: a moving bar, a level ramp and fixed noise."""
    rng = np.random.default_rng(0)
    out = np.zeros((N_FRAMES, h, w, 3), np.uint8)
    out[..., 1] = rng.integers(0, 60, (h, w))
    for t in range(N_FRAMES):
        out[t, ..., 0] = (t * 3) % 256
        out[t, :, (2 * t) % w] = 255
    return out


def _decode_everything(path) -> np.ndarray:
    """The oracle: every frame in presentation order, no seeking, straight from PyAV."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# (suffix, codec, fps, B-frames): several keyframes each (one every 10 frames), odd frame rates
CLIPS = [(".avi", "mpeg4", Fraction(30000, 1001), 0), (".avi", "mpeg4", 15, 2),
         (".mp4", "h264", Fraction(30000, 1001), 2), (".mp4", "mpeg4", 15, 0)]


@pytest.fixture(scope="module", params=CLIPS, ids=lambda c: f"{c[1]}{c[0]}-{float(c[2]):.2f}fps-b{c[3]}")
def clip(request, tmp_path_factory):
    suffix, codec, fps, b_frames = request.param
    path = tmp_path_factory.mktemp("seek") / f"clip{suffix}"
    write_video(path, _frames(), fps=fps, codec=codec, quality=2, keyframe_every=10, b_frames=b_frames)
    return path


def test_seeking_fetch_equals_a_full_decode(clip):
    full = _decode_everything(clip)
    assert len(full) == N_FRAMES
    rng = np.random.default_rng(3)
    requests = [[1], [9, 10, 11], [37, 12, 37], [N_FRAMES - 1], [60, N_FRAMES + 20]]
    requests += [sorted(rng.integers(1, N_FRAMES, 3)) for _ in range(12)]
    for idx in requests:
        got = read_video(clip, indices=idx)
        np.testing.assert_array_equal(got, full[np.minimum(idx, N_FRAMES - 1)], err_msg=f"{clip} {idx}")


def test_frames_are_fetched_by_seeking_not_from_the_start(tmp_path, monkeypatch):
    """A fetch of late frames decodes about one keyframe interval, not the whole clip."""
    path = tmp_path / "clip.mp4"
    write_video(path, _frames(), fps=25, codec="h264", quality=2, keyframe_every=10, b_frames=0)
    converted = []
    real = video._converter

    def counting(size, resize):
        convert = real(size, resize)
        return lambda frame: converted.append(frame.pts) or convert(frame)

    decoded = []
    real_decode = av.container.InputContainer.decode

    def spy(self, *args, **kwargs):
        for frame in real_decode(self, *args, **kwargs):
            decoded.append(frame)
            yield frame

    monkeypatch.setattr(video, "_converter", counting)
    monkeypatch.setattr(av.container.InputContainer, "decode", spy)
    read_video(path, indices=[65, 66])
    assert len(decoded) <= 1 + 10 + 2      # frame 0 (its timestamp) + at most a GOP before frame 65


def test_aspect_preserving_crop_keeps_shapes_round(tmp_path):
    """``resize="crop"``: a disk in a 2:1 frame stays a disk (as wide as tall) in a square
    output; ``"squash"`` halves its width."""
    h, w = 40, 80
    yy, xx = np.mgrid[:h, :w]
    disk = ((yy - 20) ** 2 + (xx - 40) ** 2 < 12 ** 2)
    frames = np.repeat(np.where(disk, 250, 10).astype(np.uint8)[None, ..., None], 3, -1).repeat(4, 0)
    path = tmp_path / "wide.avi"
    write_video(path, frames, quality=2)

    def extent(img):
        mask = img[..., 0] > 128
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1

    cropped = read_video(path, size=(20, 20), resize="crop")
    squashed = read_video(path, size=(20, 20), resize="squash")
    assert cropped.shape == squashed.shape == (4, 20, 20, 3)
    ch, cw = extent(cropped[0])
    sh, sw = extent(squashed[0])
    assert abs(ch - cw) <= 1 and ch >= 11            # a 24-px disk at scale 1/2: 12 px both ways
    assert sh >= 11 and sw <= 7                        # squashed: full height, half the width
    assert video.cover_size(240, 320, (128, 128)) == (128, 171)


def test_evaluation_decodes_each_test_video_once_per_pass(tmp_path, monkeypatch):
    """Test items without the in-memory cache: one decode per video per pass (not one per item),
    and the same items as the decoded-in-memory dataset."""
    import torch

    import harness.data.frames as frames_mod
    from harness.data.frames import FrameDataset
    from harness.data.index import VideoIndex, VideoRecord

    paths = []
    for v in range(3):
        p = tmp_path / f"v{v}.mp4"
        write_video(p, np.roll(_frames(), v, axis=0), fps=25, codec="h264", quality=2, keyframe_every=10)
        paths.append(p)
    index = VideoIndex([VideoRecord(p.stem, p, i % 2, None, "synth") for i, p in enumerate(paths)], ("a", "b"),
                       "synth")
    kw = dict(frames_per_video=4, train=False, size=24, seed=0, test_crops=5, clip_length=3, decode_size=(40, 52))
    reference = FrameDataset(index, cache_decoded=True, **kw).preload()
    calls = []
    real = frames_mod.read_video
    monkeypatch.setattr(frames_mod, "read_video", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    streamed = FrameDataset(index, cache_decoded=False, **kw)
    for _ in range(2):   # two evaluation passes
        for i in range(len(streamed)):
            a, b = reference[i], streamed[i]
            assert a["frame"] == b["frame"] and a["crop"] == b["crop"]
            assert torch.equal(a["frames"], b["frames"])
    assert calls == paths * 2
