"""Truncated, unreadable and short videos through the CLI, on smoke: without --skip-bad one
error line naming the file (exit 2, no traceback, nothing written); with it a counted skip in
the run's record and a warning; short videos as ``short_videos`` says (docs/DATASET.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.video import TruncatedVideo, VideoError, count_frames, read_video, write_video


def _invoke(args):
    out = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in out.output, out.output
    return out


def _fails_naming(args, *needles):
    out = _invoke(args)
    assert out.exit_code == 2, out.output
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.output
    for needle in needles:
        assert needle in errors[0], out.output
    return errors[0]


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _clip(t: int, seed: int) -> np.ndarray:
    v = np.full((t, 32, 32, 3), 30, np.uint8)
    for i in range(t):
        v[i, 4:12, (2 + 2 * i + seed) % 24:(10 + 2 * i + seed) % 24 or 24] = 200 - 10 * seed
    return v


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("HARNESS_FRAME_CACHE", str(tmp_path / "frames"))
    return tmp_path


def _unlabeled_root(folder: Path, lengths, bad=()) -> Path:
    """``unlabeled.txt`` over clips of ``lengths`` frames, then the ``bad`` ones:
    "cut-avi" (an mpeg4 AVI cut in half), "cut-mp4" (an H.264 mp4 cut in half), "garbage"."""
    names = []
    for i, t in enumerate(lengths):
        names.append(f"u{i}.avi")
        write_video(folder / names[-1], _clip(t, i))
    for kind in bad:
        name = {"cut-avi": "cut.avi", "cut-mp4": "cut.mp4", "garbage": "garbage.avi"}[kind]
        if kind == "garbage":
            (folder / name).write_bytes(np.random.default_rng(0).bytes(4000))
        else:
            # noise: a file large enough that its first half holds the header and several frames
            noise = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
            write_video(folder / name, noise, codec="mpeg4" if name.endswith(".avi") else "h264")
            _cut_in_half(folder / name)
        names.append(name)
    (folder / "unlabeled.txt").write_text("".join(n + "\n" for n in names))
    return folder


def test_cut_and_garbage_files_are_named_by_the_decoder(tmp_path):
    root = _unlabeled_root(tmp_path, [], bad=("cut-avi", "cut-mp4", "garbage"))
    with pytest.raises(TruncatedVideo, match=r"cut\.avi: truncated video: \d+ of the 16 frames"):
        read_video(root / "cut.avi")
    with pytest.raises(TruncatedVideo, match=r"cut\.avi"):
        count_frames(root / "cut.avi")
    for name in ("cut.mp4", "garbage.avi"):
        with pytest.raises(VideoError, match=name.replace(".", r"\.")):
            read_video(root / name)


def test_dropped_frames_are_not_taken_for_truncation(tmp_path):
    """An AVI whose index holds empty placeholder frames (xvid's dropped frames) declares more
    frames than it has packets, yet is complete: its timeline reaches the declared end."""
    import av

    path = tmp_path / "dropped.avi"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        tick = 0
        frames = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(16)]
        for i, frame in enumerate([*frames, None]):
            packets = stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24") if frame is not None else None)
            if i in (5, 9):
                empty = av.Packet(b"")
                empty.stream, empty.time_base = stream, packets[-1].time_base
                packets = [*packets, empty]
            for packet in packets:
                packet.pts = packet.dts = tick
                tick += 1
                container.mux(packet)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 18
    assert count_frames(path) == 16 and len(read_video(path)) == 16


@pytest.mark.parametrize("bad", ["cut-avi", "cut-mp4", "garbage"])
def test_pretrain_refuses_a_bad_video_and_skips_it_with_skip_bad(bad, isolated):
    root = _unlabeled_root(isolated / "data", [16] * 5, bad=(bad,))
    name = {"cut-avi": "cut.avi", "cut-mp4": "cut.mp4", "garbage": "garbage.avi"}[bad]
    args = ["pretrain", "--task", "motion", "--preset", "smoke", "--data-root", root, "--out", isolated / "run"]
    _fails_naming(args, name, "--skip-bad")
    assert not (isolated / "run" / "final.json").exists()

    out = _invoke([*args, "--skip-bad"])
    assert out.exit_code == 0, out.output
    assert "warning: 1 of 6 unlabeled videos skipped (--skip-bad)" in out.output and name in out.output
    final = json.loads((isolated / "run" / "final.json").read_text())
    assert final["videos"]["skipped_bad"] == 1 and final["videos"]["bad_videos"][0]["video"].endswith(name)
    assert final["train_videos"] + final["eval_videos"] == 5


def test_short_unlabeled_videos_are_skipped_with_a_warning_or_refused(isolated):
    root = _unlabeled_root(isolated / "data", [16, 16, 16, 16, 4])     # motion on smoke needs 7 frames
    args = ["pretrain", "--task", "motion", "--preset", "smoke", "--data-root", root]
    _fails_naming([*args, "--set", "short_videos=refuse", "--out", isolated / "r1"], "u4.avi: 4 frames",
                  "short_videos=refuse")
    out = _invoke([*args, "--out", isolated / "r2"])
    assert out.exit_code == 0, out.output
    assert "warning: 1 of 5 unlabeled videos have fewer than the" in out.output and "(skipped)" in out.output
    final = json.loads((isolated / "r2" / "final.json").read_text())
    assert final["videos"]["short"] == 1 and final["videos"]["short_policy"] == "skip"
    assert final["train_videos"] + final["eval_videos"] == 4
    _fails_naming([*args, "--set", "short_videos=maybe"], "'short_videos'", "pad, skip, refuse")


@pytest.fixture
def damaged_data(smoke_data, isolated):
    """The smoke dataset with one training video cut in half."""
    root = isolated / "data"
    shutil.copytree(smoke_data, root)
    first = (root / "ucfTrainTestlist" / "trainlist01.txt").read_text().split()[0]
    _cut_in_half(root / "UCF-101" / first)
    return root, Path(first).name


def test_finetune_refuses_a_truncated_video_and_skips_it_with_skip_bad(damaged_data, isolated):
    root, name = damaged_data
    args = ["finetune", "--arch", "alexnet", "--init", "random", "--preset", "smoke", "--data-root", root,
            "--quiet"]
    _fails_naming(args, name, "truncated video")
    out = _invoke([*args, "--skip-bad"])
    assert out.exit_code == 0, out.output
    assert "warning: 1 of" in out.output and "train videos skipped (--skip-bad)" in out.output
    final = json.loads(next((isolated / "runs").rglob("final.json")).read_text())
    assert final["videos"]["train"]["skipped_bad"] == 1 and final["videos"]["test"]["skipped_bad"] == 0
    assert final["train_videos"] == final["videos"]["train"]["checked"] - 1


def test_cache_teachers_refuses_a_truncated_video_and_skips_it_with_skip_bad(damaged_data, isolated):
    from conftest import random_teacher_checkpoints

    root, name = damaged_data
    ckpts = random_teacher_checkpoints(isolated, 4)
    store = isolated / "s.zarr"
    args = ["cache-teachers", "--preset", "smoke", "--data-root", root, "--store", store,
            *[a for n, p in ckpts.items() for a in ("--teacher", f"{n}={p}")]]
    _fails_naming(args, name, "truncated video")
    assert not store.exists()
    out = _invoke([*args, "--skip-bad"])
    assert out.exit_code == 0, out.output
    assert "train videos skipped (--skip-bad)" in out.output
    record = json.loads((isolated / "s.zarr.videos.json").read_text())
    assert record["train"]["skipped_bad"] == 1 and record["test"]["skipped_bad"] == 0


def test_an_unwritable_frame_cache_is_one_line(isolated, monkeypatch):
    root = _unlabeled_root(isolated / "data", [16] * 4)
    (isolated / "a-file").write_text("not a folder")
    monkeypatch.setenv("HARNESS_FRAME_CACHE", str(isolated / "a-file" / "frames"))
    _fails_naming(["pretrain", "--task", "motion", "--preset", "smoke", "--data-root", root],
                  "a-file/frames: cannot write the frame cache", "HARNESS_FRAME_CACHE")


def test_a_table_command_refuses_a_truncated_video_and_skips_it_in_every_stage_with_skip_bad(damaged_data,
                                                                                               isolated):
    """``--skip-bad`` on a command that runs several stages reaches each stage that reads the
    labeled videos: the teachers' fine-tuning and the cache (and it is part of their run keys)."""
    root, name = damaged_data
    args = ["ablation", "--method", "kd", "--preset", "smoke", "--data-root", root]
    _fails_naming(args, name, "truncated video")
    out = _invoke([*args, "--skip-bad"])
    assert out.exit_code == 0, out.output
    finals = [json.loads(p.read_text()) for p in (isolated / "runs" / "finetune").rglob("final.json")]
    assert len(finals) == 4 and all(f["videos"]["train"]["skipped_bad"] == 1 for f in finals)
    record = json.loads((isolated / "cache" / "smoke.zarr.videos.json").read_text())
    assert record["train"]["skipped_bad"] == 1
    assert "--skip-bad" in (isolated / "tables/generated/smoke/ablation/kd/table2.md").read_text()


def test_command_settings_reach_every_config_with_the_field_and_an_override_wins():
    from harness.cache.teachers import cache_config
    from harness.config import command_settings, to_dict
    from harness.finetune import finetune_config
    from harness.pretext.train import task_config

    assert "skip_bad" not in to_dict(finetune_config("alexnet", "smoke"))   # the default keeps old keys
    with command_settings(skip_bad=True):
        assert finetune_config("alexnet", "smoke").skip_bad and task_config("sort", "smoke").skip_bad
        assert cache_config("smoke").skip_bad and to_dict(finetune_config("alexnet", "smoke"))["skip_bad"] is True
        assert not finetune_config("alexnet", "smoke", {"skip_bad": "false"}).skip_bad
    assert not finetune_config("alexnet", "smoke").skip_bad
