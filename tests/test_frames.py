"""FrameDataset sampling/determinism and the video-level metrics against hand values and sklearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from harness.data.frames import FrameDataset, evaluate, video_level_predict
from harness.data.index import VideoIndex, VideoRecord
from harness.data.transforms import MEAN, STD
from harness.data.video import evenly_spaced

T = 16          # frames per video
SIDE = 32


def _level(t):
    return 20 + 12 * t      # frame t is a flat grey of this level: the decoded frame tells its index


def _write_videos(root: Path, n: int) -> list[Path]:
    from harness.data.video import write_video
    paths = []
    for v in range(n):
        frames = np.stack([np.full((SIDE, SIDE + 8, 3), _level(t), np.uint8) for t in range(T)])
        frames[:, :4, :4] = 255 * (v % 2)             # videos differ a little
        p = root / f"v{v}.avi"
        write_video(p, frames, fps=25, quality=2)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return _write_videos(tmp_path_factory.mktemp("frames"), 3)


def _index(paths, multilabel=False):
    if multilabel:
        labels = [(1, 0, 1), (0, 1, 0), (0, 0, 1)]
        recs = [VideoRecord(p.stem, p, None, labels[i], "ccv") for i, p in enumerate(paths)]
        return VideoIndex(recs, ("a", "b", "c"), "ccv", multilabel=True)
    recs = [VideoRecord(p.stem, p, i % 2, None, "synth") for i, p in enumerate(paths)]
    return VideoIndex(recs, ("x", "y"), "synth")


def _frame_index_of(item) -> int:
    """Undo normalisation and the grey-level code to recover the decoded frame's index."""
    x = item["frames"] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    level = float(x[:, 8:, 8:].mean()) * 255        # avoid the corner mark
    return int(round((level - 20) / 12))


def test_test_mode_evenly_spaced_center(videos):
    ds = FrameDataset(_index(videos), frames_per_video=4, train=False, size=24, seed=0)
    assert len(ds) == 12
    items = [ds[i] for i in range(len(ds))]
    want = [2, 6, 10, 14]                                  # centres of 4 segments of 16 frames
    assert list(evenly_spaced(T, 4)) == want
    for i, it in enumerate(items):
        assert it["video"] == i // 4 and it["frame"] == want[i % 4]
        assert it["frames"].shape == (3, 24, 24) and it["frames"].dtype == torch.float32
        assert it["label"] == (i // 4) % 2 and isinstance(it["label"], int)
        assert _frame_index_of(it) == it["frame"]          # the right frame was decoded
    frames, views = ds.plan(0)
    assert list(frames) == want and all(v == views[0] and not v.flip for v in views)
    assert np.isclose(views[0].h, 0.875) and np.isclose(views[0].w, 0.875 * SIDE / (SIDE + 8))
    ds.set_epoch(5)                                        # test items never change
    assert all(torch.equal(ds[i]["frames"], items[i]["frames"]) for i in range(len(ds)))


def test_train_mode_deterministic_for_seed_and_epoch(videos):
    idx = _index(videos)
    a = FrameDataset(idx, frames_per_video=4, train=True, size=20, seed=3, decode_size=(24, 30))
    b = FrameDataset(idx, frames_per_video=4, train=True, size=20, seed=3, decode_size=(24, 30))
    order = [7, 0, 11, 3]            # access order must not matter
    ia = {i: a[i] for i in range(len(a))}
    ib = {i: b[i] for i in order} | {i: b[i] for i in range(len(b))}
    for i in ia:
        assert ia[i]["frame"] == ib[i]["frame"] and torch.equal(ia[i]["frames"], ib[i]["frames"])
        assert ia[i]["frames"].shape == (3, 20, 20)
        seg = i % 4
        assert 4 * seg <= ia[i]["frame"] < 4 * seg + 4         # one frame per segment
        assert _frame_index_of(ia[i]) == ia[i]["frame"]
    plans = {e: [a.plan(v, epoch=e) for v in range(3)] for e in range(4)}
    frames_by_epoch = [np.concatenate([p[0] for p in plans[e]]) for e in range(4)]
    views_by_epoch = [[v for p in plans[e] for v in p[1]] for e in range(4)]
    assert len({tuple(f) for f in frames_by_epoch}) > 1
    assert all(views_by_epoch[0] != views_by_epoch[e] for e in (1, 2, 3))
    a.set_epoch(2)
    assert [a[i]["frame"] for i in range(len(a))] == list(frames_by_epoch[2])
    c = FrameDataset(idx, frames_per_video=4, train=True, size=20, seed=4, decode_size=(24, 30))
    assert [c.plan(v)[1] for v in range(3)] != [p[1] for p in plans[0]]


def test_no_cache_same_items(videos):
    idx = _index(videos)
    a = FrameDataset(idx, 3, train=True, size=16, seed=1, cache_decoded=True)
    b = FrameDataset(idx, 3, train=True, size=16, seed=1, cache_decoded=False)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x["frame"] == y["frame"] and torch.allclose(x["frames"], y["frames"])
    assert len(a._decoded) == 3 and len(b._decoded) == 0
    c = FrameDataset(idx, 3, train=True, size=16, seed=1).preload()
    assert len(c._decoded) == 3 and all(c._decoded[v].shape == (T, SIDE, SIDE + 8, 3) for v in range(3))


def test_multilabel_items_and_dataloader(videos):
    idx = _index(videos, multilabel=True)
    ds = FrameDataset(idx, 2, train=False, size=16, seed=0)
    it = ds[2]
    assert it["label"].dtype == torch.float32 and it["label"].tolist() == [0.0, 1.0, 0.0]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    assert batch["frames"].shape == (6, 3, 16, 16) and batch["label"].shape == (6, 3)
    assert batch["video"].tolist() == [0, 0, 1, 1, 2, 2]


def test_video_level_predict_matches_loop():
    rng = np.random.default_rng(0)
    probs = rng.random((11, 4))
    vids = np.array([2, 0, 0, 1, 2, 2, 1, 0, 3, 3, 1])
    got = video_level_predict(probs, vids)
    for v in range(4):
        rows = [probs[i] for i in range(len(vids)) if vids[i] == v]
        assert np.allclose(got[v], sum(rows) / len(rows))
    assert np.allclose(video_level_predict(torch.from_numpy(probs), torch.from_numpy(vids)), got)
    padded = video_level_predict(probs, vids, num_videos=6)
    assert padded.shape == (6, 4) and np.isnan(padded[4:]).all()


def _fake_index(labels=None, multi=None, n_classes=3):
    n = len(labels) if labels is not None else len(multi)
    recs = [VideoRecord(f"v{i}", Path(f"/nonexistent/v{i}.avi"), None if labels is None else labels[i],
                        None if multi is None else tuple(multi[i]), "t") for i in range(n)]
    return VideoIndex(recs, tuple(f"c{k}" for k in range(n_classes)), "t", multilabel=multi is not None,
                      rel_paths=[r.video_id for r in recs], sizes=[0] * n)


def test_accuracy_by_hand():
    idx = _fake_index(labels=[0, 1, 2, 2, 1])
    scores = np.array([[.9, .1, 0], [.2, .7, .1], [.5, .2, .3], [.1, .1, .8], [.6, .3, .1]])
    # predictions 0,1,0,2,0 -> correct: T,T,F,T,F
    r = evaluate(scores, idx)
    assert r["metric"] == "accuracy" and r["accuracy"] == r["value"] == pytest.approx(3 / 5)
    # per class: c0 1/1, c1 1/2, c2 1/2
    assert r["mean_class_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    with pytest.raises(ValueError):
        evaluate(scores[:4], idx)


def test_map_against_hand_and_sklearn():
    # class 0 by hand: ranking 0.9(+) 0.8(-) 0.7(+) -> AP = (1/1 + 2/3) / 2
    multi = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = np.array([[.9, .2, .5], [.8, .6, .1], [.7, .4, .3], [.1, .9, .2]])
    r = evaluate(scores, _fake_index(multi=multi))
    assert r["metric"] == "mAP" and r["per_class_ap"]["c0"] == pytest.approx((1 + 2 / 3) / 2)
    # class 1: 0.9(-) 0.6(+) 0.4(+) -> (1/2 + 2/3) / 2; class 2 has no positive: not scored
    assert r["per_class_ap"]["c1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["n_classes_scored"] == 2 and "c2" not in r["per_class_ap"]
    assert r["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    # random larger case against sklearn's macro average over the same classes
    rng = np.random.default_rng(1)
    y = (rng.random((40, 20)) < 0.2).astype(int)
    y[:, 7] = 0
    s = rng.random((40, 20))
    r = evaluate(s, _fake_index(multi=y, n_classes=20))
    keep = y.sum(0) > 0
    assert r["value"] == pytest.approx(average_precision_score(y[:, keep], s[:, keep], average="macro"))


def test_clip_items_end_at_sampled_frame(videos):
    """clip_length > 1: the clip is frames f-L+1..f (clamped at 0), one shared view."""
    from harness.data.transforms import apply_view, to_tensor
    from harness.data.video import read_video
    idx = _index(videos)
    decoded = [read_video(p) for p in videos]
    L = 5
    for train in (False, True):
        ds = FrameDataset(idx, frames_per_video=4, train=train, size=24, seed=2, clip_length=L)
        single = FrameDataset(idx, frames_per_video=4, train=train, size=24, seed=2)
        assert len(ds) == len(single) == 12
        for i in range(len(ds)):
            it, one = ds[i], single[i]
            f = it["frame"]
            assert f == one["frame"] and it["frames"].shape == (L, 3, 24, 24)
            # the grey level of each clip frame names its index: f-4..f, never below 0
            got = [_frame_index_of({"frames": it["frames"][t]}) for t in range(L)]
            assert got == [max(f - L + 1 + t, 0) for t in range(L)]
            # the last clip frame is exactly the single-frame item (same frame, same view)
            assert torch.equal(it["frames"][-1], one["frames"])
            # every clip frame went through the item's one view: rebuild it by hand
            v, k = divmod(i, 4)
            view = ds.plan(v)[1][k]
            for t, fid in enumerate([max(f - L + 1 + t, 0) for t in range(L)]):
                want = to_tensor(apply_view(decoded[v][fid], view, 24))[0]
                assert torch.equal(it["frames"][t], want)
    # the clamp on an early frame: a test plan with frames_per_video=16 includes frame 0..2
    ds = FrameDataset(idx, frames_per_video=16, train=False, size=16, seed=0, clip_length=4)
    it = ds[0]
    assert it["frame"] == 0
    assert [_frame_index_of({"frames": it["frames"][t]}) for t in range(4)] == [0, 0, 0, 0]
    b = FrameDataset(idx, frames_per_video=3, train=True, size=16, seed=1, clip_length=3, cache_decoded=False)
    a = FrameDataset(idx, frames_per_video=3, train=True, size=16, seed=1, clip_length=3)
    for i in range(len(a)):
        assert torch.allclose(a[i]["frames"], b[i]["frames"])
    with pytest.raises(ValueError):
        FrameDataset(idx, 2, train=True, size=16, seed=0, clip_length=0)


def test_fixed_crops_by_hand():
    from harness.data.frames import fixed_crops
    from harness.data.transforms import View
    c = fixed_crops(1, 0.5, 1.0)
    assert c == [View(0.25, 0.25, 0.5, 0.5, False)]
    five = fixed_crops(5, 0.5, 2.0)          # wide frame: square crop = 0.5 of height, 0.25 of width
    assert five[0] == View(0.25, 0.375, 0.5, 0.25, False)
    assert five[1:] == [View(0.0, 0.0, 0.5, 0.25), View(0.0, 0.75, 0.5, 0.25),
                        View(0.5, 0.0, 0.5, 0.25), View(0.5, 0.75, 0.5, 0.25)]
    ten = fixed_crops(10, 0.5, 2.0)
    assert ten[:5] == five and all(t.flip and (t.y0, t.x0) == (f.y0, f.x0) for t, f in zip(ten[5:], five))
    with pytest.raises(ValueError):
        fixed_crops(3)


def test_test_crops_items(videos):
    from harness.data.frames import fixed_crops
    from harness.data.transforms import apply_view, to_tensor
    from harness.data.video import read_video
    idx = _index(videos)
    ds = FrameDataset(idx, frames_per_video=2, train=False, size=16, seed=0, test_crops=5)
    assert len(ds) == 3 * 2 * 5
    crops = fixed_crops(5, 0.875, (SIDE + 8) / SIDE)
    decoded = read_video(videos[1])
    for i in range(10, 20):                   # video 1: slots 0,1 x crops 0..4
        it = ds[i]
        k, c = divmod(i - 10, 5)
        assert it["video"] == 1 and it["crop"] == c and it["frame"] == evenly_spaced(T, 2)[k]
        want = to_tensor(apply_view(decoded[it["frame"]], crops[c], 16))[0]
        assert torch.equal(it["frames"], want)
    # crops only multiply test items; training items ignore them
    assert len(FrameDataset(idx, 2, train=True, size=16, seed=0, test_crops=5)) == 6
