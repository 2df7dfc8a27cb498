"""Pretraining through the on-disk frame cache: the same run as with every video decoded in
RAM (the oracle: the in-memory list pretraining used to build), one video in RAM at a time,
and the decoding settings (aspect-preserving crop, time resampling) through the cache."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from harness.data.video import read_video, write_video


def _moving_square(t: int, side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(0, 60, (1, 32, 40, 3), dtype=np.uint8), t, 0)
    for i in range(t):
        y, x = 4 + (seed % 3), (3 + 2 * i + 5 * seed) % 30
        frames[i, y:y + side, x:x + side] = (200, 80 + 20 * seed, 40)
    return frames


@pytest.fixture(scope="module")
def unlabeled(tmp_path_factory):
    root = tmp_path_factory.mktemp("unl")
    names = []
    for i in range(6):
        names.append(f"unlabeled/u_{i}.avi")
        write_video(root / names[-1], _moving_square(16, 8, i), quality=2)
    (root / "unlabeled.txt").write_text("".join(n + "\n" for n in names))
    return root


def _in_memory(root, cfg, min_frames=1, progress=True, index=None):
    """What pretraining did before the frame cache: every video decoded into a list in RAM."""
    from harness.data.index import open_index
    from harness.data.screening import VideoReport

    index = index if index is not None else open_index("synth", root, subset="unlabeled")
    size = (cfg.decode_size, cfg.decode_size) if cfg.decode_size else None
    videos = [read_video(r.path, size=size) for r in index]
    report = VideoReport("unlabeled", min_frames, cfg.short_videos, checked=len(videos))
    return videos, [r.video_id for r in index], index.fingerprint(), report


@pytest.mark.parametrize("task", ["sort", "track"])
def test_pretraining_from_the_frame_cache_equals_in_memory(task, unlabeled, tmp_path, monkeypatch):
    from harness.pretext import train

    monkeypatch.setenv("HARNESS_FRAME_CACHE", str(tmp_path / "frames"))
    ov = {"epochs": "2", "iters_per_epoch": "2", "batch_size": "4", "eval_batches": "1"}
    cached = train.pretrain(task, "smoke", seed=1, data_root=unlabeled, out_dir=tmp_path / "disk",
                            overrides=ov, progress=False)
    assert len(list((tmp_path / "frames").rglob("*.npy"))) == 6
    monkeypatch.setattr(train, "decode_unlabeled", _in_memory)
    in_ram = train.pretrain(task, "smoke", seed=1, data_root=unlabeled, out_dir=tmp_path / "ram",
                            overrides=ov, progress=False)
    a, b = (json.loads((p.parent / "final.json").read_text()) for p in (cached, in_ram))
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["metric"] == b["metric"] and a["loss_curve"] == b["loss_curve"]
    assert a["videos"]["checked"] == 6 and a["videos"]["short"] == 0


def test_frame_cache_holds_exact_frames_and_reuses_them(unlabeled, tmp_path, monkeypatch):
    import harness.data.frame_cache as fc

    calls = []

    def decode(p):
        calls.append(p)
        return read_video(p, size=(24, 24), resize="crop")

    video = unlabeled / "unlabeled" / "u_2.avi"
    path, shape = fc.decode_once(video, {"size": 24}, decode, tmp_path)
    again, _ = fc.decode_once(video, {"size": 24}, decode, tmp_path)
    other, _ = fc.decode_once(video, {"size": 28}, decode, tmp_path)
    assert path == again != other and len(calls) == 2 and shape == (16, 24, 24, 3)
    disk = fc.DiskVideos([path], [shape], pad_to=20)
    np.testing.assert_array_equal(disk[0][:16], read_video(video, size=(24, 24), resize="crop"))
    assert disk.shapes == [(20, 24, 24, 3)] and (disk[0][16:] == disk[0][15]).all()


def test_time_resampling_gives_the_same_clip_at_two_frame_rates(tmp_path):
    """The same motion filmed at 30 and 15 fps, resampled to 15 fps, gives the same frames."""
    from harness.data.video import resampled_indices

    fast = _moving_square(40, 6, 1)
    write_video(tmp_path / "f30.mp4", fast, fps=30, codec="h264", quality=2)
    write_video(tmp_path / "f15.mp4", fast[::2], fps=15, codec="h264", quality=2)
    i30 = resampled_indices(tmp_path / "f30.mp4", 15)
    i15 = resampled_indices(tmp_path / "f15.mp4", 15)
    assert list(i30) == list(range(0, 40, 2)) and list(i15) == list(range(20))
    assert list(resampled_indices(tmp_path / "f15.mp4", Fraction(30))) == [k // 2 for k in range(40)]


def test_new_decoding_settings_leave_run_keys_unchanged_at_their_defaults():
    """The oracle is ``dataclasses.asdict``, what ``to_dict`` (and so every run key) was before
    the settings existed; a setting that is used enters the key."""
    import dataclasses

    from harness.cache.teachers import cache_config
    from harness.config import to_dict
    from harness.finetune.config import finetune_config
    from harness.pretext.train import task_config

    def before(cfg):
        d = dataclasses.asdict(cfg)
        for key in ("resize", "sample_fps", "short_videos", "skip_bad"):
            d.pop(key, None)
        return json.loads(json.dumps(d, default=str))

    for cfg in (task_config("sort", "tiny"), finetune_config("alexnet", "tiny"), cache_config("tiny")):
        assert to_dict(cfg) == before(cfg)
    assert to_dict(task_config("sort", "tiny", {"resize": "crop"}))["resize"] == "crop"
    assert to_dict(finetune_config("alexnet", "smoke", {"skip_bad": "true"}))["skip_bad"] is True
    assert to_dict(task_config("sort", "paper"))["sample_fps"] == 25.0


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory):
    """A 2:1 clip (32 x 64) at 20 fps, frame t at grey level 10 t except a bright right part."""
    frames = np.zeros((20, 32, 64, 3), np.uint8)
    for t in range(20):
        frames[t, :, :40] = 10 * t
        frames[t, :, 40:] = 250
    path = tmp_path_factory.mktemp("wide") / "wide.avi"
    write_video(path, frames, fps=20, quality=2)
    return path


def test_decoding_settings_reach_every_stage(wide_video):
    """``resize`` and ``sample_fps`` as set in each stage's config are what its decoder gets."""
    import dataclasses

    from harness.cache.teachers import TeacherRunner, cache_config
    from harness.data.index import VideoIndex, VideoRecord
    from harness.finetune.config import finetune_config
    from harness.finetune.data import _frame_dataset
    from harness.pretext import train

    crop = read_video(wide_video, size=(16, 16), resize="crop")
    squash = read_video(wide_video, size=(16, 16))
    assert not np.array_equal(crop, squash)
    index = VideoIndex([VideoRecord("wide", wide_video, 0, None, "synth")], ("a",), "synth")

    cfg = finetune_config("alexnet", "smoke", {"resize": "crop", "decode_size": "16", "cache_decoded": "false"})
    ds = _frame_dataset(index, cfg, False, 16, 1, 0)
    np.testing.assert_array_equal(ds._test_frames(0)[int(ds.plan(0)[0][0])], crop[int(ds.plan(0)[0][0])])

    cache_cfg = dataclasses.replace(cache_config("smoke", {"resize": "crop"}), frame_size=(16, 16))
    runner = TeacherRunner([], {0: index}, None, cache_cfg, "smoke", 16, (4, 4), "cpu")
    np.testing.assert_array_equal(runner._decode(0, 0), crop)

    pre = train.task_config("sort", "smoke", {"resize": "crop", "sample_fps": "10"})
    np.testing.assert_array_equal(train._decode(wide_video, (16, 16), pre), crop[::2])
