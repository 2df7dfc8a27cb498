"""Official split parsers and the VideoIndex: counts, labels, errors, skip mode, fingerprint.

Every layout is written by hand here in the official formats, with real (tiny) video files,
and the expected contents are computed from how the fixture was built, not by the parser.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from harness.data.index import MissingVideoWarning, VideoIndex, open_index
from harness.data.splits import CCV_CLASSES, SplitError, UnknownClassError
from harness.data.video import VideoError, read_video, write_video
from harness.errors import HarnessError

UCF_CLASSES = ["ApplyEyeMakeup", "Basketball", "YoYo"]
GROUPS = 6          # split k tests on groups 2k-1, 2k
CLIPS = 2


def _template(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "template.avi"
    if not path.exists():
        frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
        write_video(path, frames, fps=25)
    return path


def _copy(template, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, dst)


def _test_groups(split):
    return {2 * split - 1, 2 * split}


def make_ucf(root, template, classes=UCF_CLASSES, list_dir="ucfTrainTestlist", video_dir="UCF-101"):
    """UCF101 layout; returns {(split, subset): {relpath: label}} as built."""
    sdir, vdir = root / list_dir, root / video_dir
    sdir.mkdir(parents=True, exist_ok=True)
    # official files use CRLF line endings
    (sdir / "classInd.txt").write_bytes("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)).encode())
    expected = {}
    for split in (1, 2, 3):
        train, test = {}, {}
        for ci, c in enumerate(classes):
            for g in range(1, GROUPS + 1):
                for k in range(1, CLIPS + 1):
                    rel = f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi"
                    (test if g in _test_groups(split) else train)[rel] = ci
        (sdir / f"trainlist{split:02d}.txt").write_bytes(
            "".join(f"{rel} {lab + 1}\r\n" for rel, lab in train.items()).encode())
        (sdir / f"testlist{split:02d}.txt").write_bytes("".join(f"{rel}\r\n" for rel in test).encode())
        expected[(split, "train")], expected[(split, "test")] = train, test
    for rel in expected[(1, "train")] | expected[(1, "test")]:
        _copy(template, vdir / rel)
    return expected


@pytest.fixture
def template(tmp_path_factory):
    return _template(tmp_path_factory)


@pytest.fixture
def ucf(tmp_path, template):
    root = tmp_path / "ucf"
    return root, make_ucf(root, template)


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and isinstance(exc.value, HarnessError)
    return msg


# ---- UCF101 -----------------------------------------------------------------------------

def test_ucf101_three_splits_counts_and_labels(ucf):
    root, expected = ucf
    for split in (1, 2, 3):
        for subset in ("train", "test"):
            idx = open_index("ucf101", root, split=split, subset=subset)
            want = expected[(split, subset)]
            n_groups = 2 if subset == "test" else GROUPS - 2
            assert len(idx) == len(UCF_CLASSES) * n_groups * CLIPS == len(want)
            assert idx.classes == tuple(UCF_CLASSES) and idx.num_classes == 3 and not idx.multilabel
            got = {rec.path.relative_to((root / "UCF-101").resolve()).as_posix(): rec.label for rec in idx}
            assert got == want
            assert all(rec.labels is None and rec.dataset == "ucf101" and rec.path.is_file() for rec in idx)
            assert idx.targets().dtype == np.int64
            assert list(idx.targets()) == [want[r] for r in idx.rel_paths]
            groups = {int(rec.video_id.split("_g")[1][:2]) for rec in idx}
            assert (groups == _test_groups(split)) == (subset == "test")
    rec = open_index("ucf101", root, split=1, subset="test")[0]
    assert rec.video_id == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01"


def test_synth_layout_subsets(tmp_path, template):
    root = tmp_path / "synth"
    expected = make_ucf(root, template)
    for rel in ("unlabeled/u_0000.avi", "unlabeled/u_0001.avi", "unlabeled/u_0002.avi"):
        _copy(template, root / rel)
    (root / "unlabeled.txt").write_text("unlabeled/u_0000.avi\nunlabeled/u_0001.avi\n\nunlabeled/u_0002.avi\n")
    make_ucf(root / "disjoint", template, classes=["Zebra", "Kite"], list_dir=".", video_dir=".")
    assert len(open_index("synth", root, split=2, subset="test")) == len(expected[(2, "test")])
    unl = open_index("synth", root, subset="unlabeled")
    assert len(unl) == 3 and unl.num_classes == 0 and all(r.label is None and r.labels is None for r in unl)
    assert list(unl.targets()) == [-1, -1, -1]
    dis = open_index("synth", root, subset="disjoint")
    assert dis.classes == ("Zebra", "Kite") and len(dis) == 2 * (GROUPS - 2) * CLIPS
    assert {r.label for r in dis if "Kite" in r.video_id} == {1}


# ---- HMDB51 -----------------------------------------------------------------------------

def test_hmdb51_tags(tmp_path, template):
    root = tmp_path / "hmdb"
    sdir, vdir = root / "testTrainMulti_7030_splits", root / "hmdb51_org"
    sdir.mkdir(parents=True)
    classes = ["brush_hair", "cartwheel"]   # sorted order = label order
    want = {s: {t: {} for t in ("train", "test", "unused")} for s in (1, 2)}
    tag_name = {1: "train", 2: "test", 0: "unused"}
    for ci, c in enumerate(classes):
        for split in (1, 2):
            lines = []
            for k in range(9):
                # real HMDB51 names may start with '#': not a comment
                name = f"#{k}_{c}_clip.avi" if k == 4 else f"{c}_clip_{k}.avi"
                tag = (k + split) % 3
                lines.append(f"{name} {tag} ")            # official lines end with a space
                want[split][tag_name[tag]][f"{c}/{name}"] = ci
            (sdir / f"{c}_test_split{split}.txt").write_text("\n".join(lines) + "\n")
        for k in range(9):
            _copy(template, vdir / c / (f"#{k}_{c}_clip.avi" if k == 4 else f"{c}_clip_{k}.avi"))
    for split in (1, 2):
        for subset in ("train", "test", "unused"):
            idx = open_index("hmdb51", root, split=split, subset=subset)
            assert idx.classes == tuple(classes)
            assert dict(zip(idx.rel_paths, (r.label for r in idx))) == want[split][subset]


def test_hmdb51_bad_tag_names_file_and_line(tmp_path, template):
    sdir = tmp_path / "splits"
    sdir.mkdir()
    (sdir / "jump_test_split1.txt").write_text("a.avi 1\nb.avi 7\n")
    with pytest.raises(SplitError) as exc:
        open_index("hmdb51", tmp_path, split=1, subset="train")
    assert f"{sdir / 'jump_test_split1.txt'}:2:" in _one_line(exc)


# ---- CCV --------------------------------------------------------------------------------

def _make_ccv(root, template, n_train=7, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    truth = {}
    for subset, n in (("train", n_train), ("test", n_test)):
        ids = [f"{subset[:2]}{rng.integers(10**6):07d}" for _ in range(n)]
        mat = (rng.random((n, 20)) < 0.2).astype(int)
        mat[0] = 0
        mat[0, 19] = 1
        (root / f"{subset}VidID.txt").write_text("\n".join(ids) + "\n")
        (root / f"{subset}Label.txt").write_text("\n".join(" ".join(map(str, r)) for r in mat) + "\n")
        for vid, row in zip(ids, mat):
            _copy(template, root / "videos" / f"{vid}.mp4")
            truth[vid] = tuple(int(x) for x in row)
    return truth


def test_ccv_multilabel_aligned_with_ids(tmp_path, template):
    truth = _make_ccv(tmp_path, template)
    for subset, n in (("train", 7), ("test", 4)):
        idx = open_index("ccv", tmp_path, subset=subset)
        assert len(idx) == n and idx.multilabel and idx.classes == CCV_CLASSES
        for rec in idx:
            assert rec.label is None and rec.labels == truth[rec.video_id]
            assert rec.path.name == rec.video_id + ".mp4"
        t = idx.targets()
        assert t.shape == (n, 20) and t.dtype == np.uint8
        assert t[0, 19] == 1 and t[0, :19].sum() == 0


@pytest.mark.parametrize("content,problem", [("0 1 0\n", "expected 20 labels"),
                                             ("2" + " 0" * 19 + "\n", "0 or 1")])
def test_ccv_bad_label_rows(tmp_path, template, content, problem):
    _make_ccv(tmp_path, template, n_train=1)
    (tmp_path / "trainLabel.txt").write_text(content)
    with pytest.raises(SplitError) as exc:
        open_index("ccv", tmp_path, subset="train")
    msg = _one_line(exc)
    assert f"{tmp_path / 'trainLabel.txt'}:1:" in msg and problem in msg


def test_ccv_row_count_mismatch(tmp_path, template):
    _make_ccv(tmp_path, template, n_train=3)
    lines = (tmp_path / "trainLabel.txt").read_text().splitlines()
    (tmp_path / "trainLabel.txt").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(SplitError) as exc:
        open_index("ccv", tmp_path, subset="train")
    assert "2 label rows for 3 ids" in _one_line(exc)


# ---- bad inputs --------------------------------------------------------------------------

def test_missing_split_file(ucf):
    root, _ = ucf
    missing = root / "ucfTrainTestlist" / "testlist02.txt"
    missing.unlink()
    with pytest.raises(SplitError) as exc:
        open_index("ucf101", root, split=2, subset="test")
    assert str(missing) in _one_line(exc) and "not found" in str(exc.value)


def test_missing_video_names_video_and_line(ucf):
    root, _ = ucf
    gone = root / "UCF-101" / "Basketball" / "v_Basketball_g03_c02.avi"
    gone.unlink()
    with pytest.raises(VideoError) as exc:
        open_index("ucf101", root, split=1, subset="train")
    msg = _one_line(exc)
    lines = (root / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines()
    line_no = 1 + [l.split()[0] for l in lines].index("Basketball/v_Basketball_g03_c02.avi")
    assert str(gone.resolve()) in msg and f"trainlist01.txt:{line_no})" in msg


def test_unreadable_video(ucf):
    root, _ = ucf
    bad = root / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    # verify="open" catches it while indexing ...
    with pytest.raises(VideoError) as exc:
        open_index("ucf101", root, split=1, subset="test", verify="open")
    assert str(bad.resolve()) in _one_line(exc)
    # ... the default (existence only) builds, and decoding names the file
    idx = open_index("ucf101", root, split=1, subset="test")
    rec = next(r for r in idx if r.path.name == bad.name)
    with pytest.raises(VideoError) as exc:
        read_video(rec.path)
    assert str(bad.resolve()) in _one_line(exc)
    # an empty file is caught even without opening it
    bad.write_bytes(b"")
    with pytest.raises(VideoError) as exc:
        open_index("ucf101", root, split=1, subset="test")
    assert "empty" in _one_line(exc)


@pytest.mark.parametrize("line,cls,problem", [
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi", SplitError, "expected '<Class>/<video> <class index>'"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi one", SplitError, "not a positive integer"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi 2", SplitError, "disagrees with the folder"),
    ("ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi 9", UnknownClassError, "not in classInd"),
    ("Surfing/v_Surfing_g03_c01.avi 1", UnknownClassError, "'Surfing' is not in classInd"),
    ("v_ApplyEyeMakeup_g03_c01.avi 1", SplitError, "expected '<Class>/<video file>'"),
])
def test_malformed_train_line(ucf, line, cls, problem):
    root, _ = ucf
    f = root / "ucfTrainTestlist" / "trainlist01.txt"
    lines = f.read_text().splitlines()
    lines[4] = line
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(cls) as exc:
        open_index("ucf101", root, split=1, subset="train")
    msg = _one_line(exc)
    assert msg.startswith(f"{f}:5: ") and problem in msg


def test_unknown_class_in_testlist(ucf):
    root, _ = ucf
    f = root / "ucfTrainTestlist" / "testlist03.txt"
    f.write_text(f.read_text() + "Surfing/v_Surfing_g05_c01.avi\n")
    n = len(f.read_text().splitlines())
    with pytest.raises(UnknownClassError) as exc:
        open_index("ucf101", root, split=3, subset="test")
    assert _one_line(exc).startswith(f"{f}:{n}: class 'Surfing'")


def test_bad_class_ind(ucf):
    root, _ = ucf
    f = root / "ucfTrainTestlist" / "classInd.txt"
    f.write_text("1 A\n3 B\n")
    with pytest.raises(SplitError) as exc:
        open_index("ucf101", root, split=1, subset="test")
    assert str(f) in _one_line(exc) and "without gaps" in str(exc.value)


def test_unknown_dataset_and_subset(ucf):
    root, _ = ucf
    with pytest.raises(HarnessError, match="unknown dataset 'kinetics'"):
        open_index("kinetics", root)
    with pytest.raises(HarnessError, match="only for dataset 'synth'"):
        open_index("ucf101", root, subset="disjoint")


# ---- skip mode ----------------------------------------------------------------------------

def test_skip_mode_counts_and_warns(ucf):
    root, expected = ucf
    gone = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g04_c01.avi", "YoYo/v_YoYo_g06_c02.avi"]
    for rel in gone:
        (root / "UCF-101" / rel).unlink()
    (root / "UCF-101" / "YoYo" / "v_YoYo_g05_c01.avi").write_bytes(b"")   # unreadable: empty
    with pytest.warns(MissingVideoWarning) as rec:
        idx = open_index("ucf101", root, split=1, subset="train", on_missing="skip")
    assert len(rec) == 1 and "\n" not in str(rec[0].message) and "skipped 3 of" in str(rec[0].message)
    assert len(idx) == len(expected[(1, "train")]) - 3
    assert sorted(p for p, _ in idx.skipped) == sorted(
        str((root / "UCF-101" / r).resolve()) for r in gone + ["YoYo/v_YoYo_g05_c01.avi"])
    assert {reason for _, reason in idx.skipped} == {"video file not found", "video file is empty"}
    assert not set(gone) & set(idx.rel_paths)
    # nothing missing in the test split: no warning, nothing skipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_index("ucf101", root, split=1, subset="test", on_missing="skip").skipped == []


# ---- fingerprint -------------------------------------------------------------------------

def test_fingerprint(tmp_path, template):
    root = tmp_path / "a"
    root.mkdir()
    _make_ccv(root, template)
    fp = open_index("ccv", root, subset="train").fingerprint()
    assert fp == open_index("ccv", root, subset="train").fingerprint()
    # moving the dataset elsewhere does not change it
    shutil.copytree(root, tmp_path / "b")
    assert open_index("ccv", tmp_path / "b", subset="train").fingerprint() == fp
    # one label bit flipped -> different
    f = root / "trainLabel.txt"
    rows = [r.split() for r in f.read_text().splitlines()]
    rows[3][5] = "1" if rows[3][5] == "0" else "0"
    f.write_text("\n".join(" ".join(r) for r in rows) + "\n")
    fp_label = open_index("ccv", root, subset="train").fingerprint()
    assert fp_label != fp
    # a video replaced by a file of another size -> different
    vid = (root / "trainVidID.txt").read_text().split()[2]
    with open(root / "videos" / f"{vid}.mp4", "ab") as fh:
        fh.write(b"\0")
    assert open_index("ccv", root, subset="train").fingerprint() != fp_label


def test_fingerprint_ucf_label_and_select(ucf):
    root, _ = ucf
    idx = open_index("ucf101", root, split=1, subset="test")
    # relabel one video by hand-building an index that differs in one label only
    recs = list(idx.records)
    r0 = recs[0]
    recs[0] = type(r0)(r0.video_id, r0.path, (r0.label + 1) % 3, None, r0.dataset)
    changed = VideoIndex(recs, idx.classes, idx.dataset, False, idx.rel_paths, idx.sizes)
    same = VideoIndex(list(idx.records), idx.classes, idx.dataset, False, idx.rel_paths, idx.sizes)
    assert changed.fingerprint() != idx.fingerprint() == same.fingerprint()
    sub = idx.select([2, 0])
    assert [r.video_id for r in sub] == [idx[2].video_id, idx[0].video_id] and sub.classes == idx.classes
    assert idx.without_labels().num_classes == 0
