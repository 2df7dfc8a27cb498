"""The synthetic benchmark: official UCF101 layout and formats, decodability, determinism,
split protocol, label hygiene of the unlabeled set, safe writes, and the CLI command.

Formats are checked by parsing the files with plain string handling here, not with the
generator's helpers; split groups against the protocol written out by hand."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data import synth
from harness.data.synth import SYNTH_PRESETS, SynthConfig, SynthError, generate

SMOKE = SYNTH_PRESETS["smoke"]
NAME_RE = re.compile(r"^v_([A-Za-z]+)_g(\d\d)_c(\d\d)\.avi$")
# official UCF101 protocol, written out: split k tests on groups 7(k-1)+1 .. 7k
TEST_GROUPS = {1: set(range(1, 8)), 2: set(range(8, 15)), 3: set(range(15, 22))}


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("a") / "synth", SMOKE, seed=3, progress=False)


@pytest.fixture(scope="module")
def ds_same(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("b") / "synth", SMOKE, seed=3, progress=False)


@pytest.fixture(scope="module")
def ds_other(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("c") / "synth", SMOKE, seed=4, progress=False)


def lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n") and "\r" not in text
    return text[:-1].split("\n")


def decode_pyav(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def parse_class_ind(path: Path) -> dict[str, int]:
    out = {}
    for i, line in enumerate(lines(path), start=1):
        idx, name = line.split(" ")
        assert int(idx) == i and re.fullmatch(r"[A-Za-z]+", name)
        out[name] = i
    return out


def test_layout_and_official_formats(ds):
    assert sorted(p.name for p in ds.iterdir()) == [
        "UCF-101", "disjoint", "synth.json", "ucfTrainTestlist", "unlabeled", "unlabeled.txt"]
    lists = ds / "ucfTrainTestlist"
    assert sorted(p.name for p in lists.iterdir()) == sorted(
        ["classInd.txt"] + [f"{k}list0{s}.txt" for k in ("train", "test") for s in (1, 2, 3)])
    classes = parse_class_ind(lists / "classInd.txt")
    assert len(classes) == SMOKE.num_classes
    assert sorted(p.name for p in (ds / "UCF-101").iterdir()) == sorted(classes)
    on_disk = {f"{p.parent.name}/{p.name}" for p in (ds / "UCF-101").glob("*/*")}
    assert len(on_disk) == SMOKE.num_classes * 25 * SMOKE.clips_per_group
    for rel in on_disk:
        cls, name = rel.split("/")
        m = NAME_RE.match(name)
        assert m and m.group(1) == cls and 1 <= int(m.group(2)) <= 25

    for split in (1, 2, 3):
        train = lines(lists / f"trainlist0{split}.txt")
        test = lines(lists / f"testlist0{split}.txt")
        train_groups, test_groups = set(), set()
        train_paths = []
        for line in train:
            rel, idx = line.split(" ")
            cls, name = rel.split("/")
            assert classes[cls] == int(idx)
            train_groups.add(int(NAME_RE.match(name).group(2)))
            train_paths.append(rel)
        for line in test:
            assert " " not in line  # test lists carry no label
            test_groups.add(int(NAME_RE.match(line.split("/")[1]).group(2)))
        assert test_groups == TEST_GROUPS[split]
        assert train_groups == set(range(1, 26)) - TEST_GROUPS[split]
        assert not train_groups & test_groups
        # every labeled video is in exactly one of the two lists
        assert sorted(train_paths + test) == sorted(on_disk)
        assert len(set(train_paths + test)) == len(on_disk)


def test_every_listed_video_decodes_to_the_right_shape(ds):
    cfg = SMOKE
    expected = (cfg.num_frames, cfg.height, cfg.width, 3)
    listed = [l.split(" ")[0] for l in lines(ds / "ucfTrainTestlist" / "trainlist01.txt")]
    listed += lines(ds / "ucfTrainTestlist" / "testlist01.txt")
    paths = [ds / "UCF-101" / rel for rel in listed]
    paths += [ds / rel for rel in lines(ds / "unlabeled.txt")]
    paths += [ds / "disjoint" / l.split(" ")[0] for l in lines(ds / "disjoint" / "trainlist01.txt")]
    assert len(paths) == 100 + cfg.num_unlabeled + cfg.disjoint_classes * cfg.disjoint_per_class
    for p in paths:
        frames = decode_pyav(p)
        assert frames.shape == expected, p
        assert frames.dtype == np.uint8
        # not a blank video: texture and colour vary within a frame
        assert frames[0].std() > 5, p


def test_same_seed_is_identical_and_other_seed_differs(ds, ds_same, ds_other):
    names = ["classInd.txt"] + [f"{k}list0{s}.txt" for k in ("train", "test") for s in (1, 2, 3)]
    for n in names:
        assert (ds / "ucfTrainTestlist" / n).read_bytes() == (ds_same / "ucfTrainTestlist" / n).read_bytes()
    assert (ds / "unlabeled.txt").read_bytes() == (ds_same / "unlabeled.txt").read_bytes()
    rel = "UCF-101/DiskOrbit/v_DiskOrbit_g05_c01.avi"
    a, b, c = decode_pyav(ds / rel), decode_pyav(ds_same / rel), decode_pyav(ds_other / rel)
    np.testing.assert_array_equal(a, b)
    assert (ds / rel).read_bytes() == (ds_same / rel).read_bytes()
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 10
    u = "unlabeled/u_000000.avi"
    np.testing.assert_array_equal(decode_pyav(ds / u), decode_pyav(ds_same / u))
    assert not np.array_equal(decode_pyav(ds / u), decode_pyav(ds_other / u))
    ma, mb = json.loads((ds / "synth.json").read_text()), json.loads((ds_other / "synth.json").read_text())
    assert ma["fingerprint"] != mb["fingerprint"] and ma["config"] == mb["config"]


def test_unlabeled_list_has_no_labels_anywhere(ds):
    rels = lines(ds / "unlabeled.txt")
    assert len(rels) == SMOKE.num_unlabeled
    classes = parse_class_ind(ds / "ucfTrainTestlist" / "classInd.txt")
    for rel in rels:
        assert re.fullmatch(r"unlabeled/u_\d{6}\.avi", rel)  # a path and nothing else
        assert (ds / rel).is_file()
    assert sorted(p.name for p in (ds / "unlabeled").iterdir()) == sorted(r.split("/")[1] for r in rels)
    meta_text = (ds / "synth.json").read_text()
    assert "u_000" not in meta_text  # no per-video record of the unlabeled set
    for name in classes:
        assert not any(name in r for r in rels)


def test_disjoint_set_is_labeled_and_disjoint(ds):
    d = ds / "disjoint"
    dclasses = parse_class_ind(d / "classInd.txt")
    bench = parse_class_ind(ds / "ucfTrainTestlist" / "classInd.txt")
    assert len(dclasses) == SMOKE.disjoint_classes and not set(dclasses) & set(bench)
    rows = lines(d / "trainlist01.txt")
    assert len(rows) == SMOKE.disjoint_classes * SMOKE.disjoint_per_class
    for row in rows:
        rel, idx = row.split(" ")
        cls, name = rel.split("/")
        assert dclasses[cls] == int(idx) and NAME_RE.match(name).group(1) == cls
        assert (d / rel).is_file()


def test_disjoint_clutter_switch_changes_only_the_disjoint_videos(ds, tmp_path):
    # the ImageNet stand-in is rendered without distractors and pole unless asked for;
    # the switch must leave every benchmark and unlabeled video byte-identical
    assert not SMOKE.disjoint_clutter
    other = generate(tmp_path / "s", dataclasses.replace(SMOKE, disjoint_clutter=True), seed=3, progress=False)
    for sub in ("UCF-101", "unlabeled"):
        for f in sorted((ds / sub).rglob("*.avi")):
            assert f.read_bytes() == (other / f.relative_to(ds)).read_bytes(), f
    disjoint = sorted((ds / "disjoint").rglob("*.avi"))
    changed = [f for f in disjoint if f.read_bytes() != (other / f.relative_to(ds)).read_bytes()]
    assert disjoint and changed


def test_extra_test_clips_are_test_only_and_leave_every_other_video_unchanged(ds, tmp_path):
    # test_clips_per_group adds clips c02.. (smoke has one labeled clip) to every group, listed
    # in the test lists only: training lists and every video already there stay byte-identical
    more = generate(tmp_path / "m", dataclasses.replace(SMOKE, test_clips_per_group=2), seed=3, progress=False)
    for f in sorted(ds.rglob("*")):
        if f.is_file() and f.name != "synth.json" and not f.name.startswith("testlist"):
            assert f.read_bytes() == (more / f.relative_to(ds)).read_bytes(), f
    for k, groups in TEST_GROUPS.items():
        old = lines(ds / "ucfTrainTestlist" / f"testlist0{k}.txt")
        new = lines(more / "ucfTrainTestlist" / f"testlist0{k}.txt")
        assert set(old) < set(new) and len(new) == 4 * len(groups) * 3
        seen = set()
        for rel in new:
            cls, name = rel.split("/")
            _, g, c = NAME_RE.match(name).groups()
            assert int(g) in groups and (more / "UCF-101" / rel).is_file()
            seen.add((cls, int(g), int(c)))
        assert {c for _, _, c in seen} == {1, 2, 3} and len(seen) == len(new)
        train = lines(more / "ucfTrainTestlist" / f"trainlist0{k}.txt")
        assert all(NAME_RE.match(r.split(" ")[0].split("/")[1]).group(3) == "01" for r in train)
    meta = json.loads((more / "synth.json").read_text())
    assert meta["config"]["test_clips_per_group"] == 2 and meta["counts"]["labeled"] == 4 * 25 * 3
    assert meta["fingerprint"] != json.loads((ds / "synth.json").read_text())["fingerprint"]


def test_cli_set_changes_the_generator_config_and_refuses_bad_values(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["data", "synth", "--root", str(tmp_path / "a"), "--preset", "smoke", "--quiet",
                               "--set", "test_clips_per_group=1"])
    assert res.exit_code == 0, res.output
    assert len(lines(tmp_path / "a" / "ucfTrainTestlist" / "testlist01.txt")) == 4 * 7 * 2
    for bad, says in (("test_clips_per_group=99", "test_clips_per_group"), ("bogus=1", "bogus")):
        res = runner.invoke(main, ["data", "synth", "--root", str(tmp_path / "b"), "--preset", "smoke", "--quiet",
                                   "--set", bad])
        assert res.exit_code == 2 and says in res.output and res.output.strip().count("\n") == 0, res.output
        assert not (tmp_path / "b").exists()


def test_synth_json_records_config_seed_and_code(ds):
    meta = json.loads((ds / "synth.json").read_text())
    assert meta["seed"] == 3
    # a setting at its keyless default is left out, so adding it kept every dataset's fingerprint
    assert meta["config"] == {k: v for k, v in dataclasses.asdict(SMOKE).items() if k != "test_clips_per_group"}
    assert re.fullmatch(r"[0-9a-f]{64}", meta["fingerprint"])
    assert meta["code_version"]
    assert meta["classes"] == list(parse_class_ind(ds / "ucfTrainTestlist" / "classInd.txt"))


def test_camera_pan_translates_the_background():
    # ego-motion oracle: with an integer pan of dx pixels per frame, frame t+1 is frame t
    # shifted left by dx (the background is a function of world coordinates)
    cfg = SynthConfig(height=32, width=48)
    scene = synth._make_scene(np.random.default_rng(0), cfg)
    ys, xs = np.mgrid[0:32, 0:48] + 0.5
    dx = 3
    X = xs[None] + dx * np.arange(4)[:, None, None]
    Y = np.broadcast_to(ys[None], X.shape)
    bg = synth._render_background(scene, X, Y, 32, 48)
    for t in range(3):
        np.testing.assert_allclose(bg[t + 1][:, :-dx], bg[t][:, dx:], atol=1e-9)
    assert np.abs(bg[1] - bg[0]).mean() > 1e-3  # and the pan is visible


def test_object_shapes_cover_the_expected_area():
    # pixel coverage of each unit shape against its closed-form area (radius in pixels r)
    r = 40.0
    ys, xs = np.mgrid[-60:60, -60:60] + 0.5
    areas = {"disk": np.pi, "square": 1.7 ** 2, "cross": 2 * 2 * 0.7 - 0.7 ** 2,
             "ring": np.pi * (1.0 ** 2 - 0.44 ** 2), "triangle": 0.5 * (2 * 0.866) * 1.5,
             "diamond": 2 * 1.2 ** 2}
    for shape, area in areas.items():
        cov = synth._coverage(synth._shape_sdf(shape, xs / r, ys / r) * r).sum()
        assert cov == pytest.approx(area * r * r, rel=0.03), shape


def test_test_groups_protocol():
    assert synth.test_groups(1) == list(range(1, 8))
    assert synth.test_groups(3) == list(range(15, 22))


def test_bad_config_and_paper_preset_are_refused(tmp_path):
    with pytest.raises(SynthError, match="num_classes"):
        generate(tmp_path / "x", dataclasses.replace(SMOKE, num_classes=99), progress=False)
    with pytest.raises(SynthError, match="paper"):
        generate(tmp_path / "y", SYNTH_PRESETS["paper"], progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synth.write_video

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(synth, "write_video", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "ds", SMOKE, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_and_refuses_non_empty_root(tmp_path):
    root = tmp_path / "synth"
    runner = CliRunner()
    res = runner.invoke(main, ["data", "synth", "--root", str(root), "--preset", "smoke", "--seed", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (root / "synth.json").is_file()
    assert json.loads((root / "synth.json").read_text())["seed"] == 1
    assert len(lines(root / "ucfTrainTestlist" / "trainlist01.txt")) == 4 * 18

    res = runner.invoke(main, ["data", "synth", "--root", str(root), "--preset", "smoke", "--quiet"])
    assert res.exit_code == 2
    err = res.output.strip()
    assert err.count("\n") == 0 and str(root) in err and "not empty" in err

    res = runner.invoke(main, ["data", "synth", "--root", str(root), "--preset", "smoke", "--seed", "2",
                               "--quiet", "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads((root / "synth.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no leftovers beside it

    res = runner.invoke(main, ["data", "synth", "--root", str(tmp_path / "p"), "--preset", "paper"])
    assert res.exit_code == 2 and "paper" in res.output
