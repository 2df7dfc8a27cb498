"""The cache-teachers pipeline: items, views, teacher outputs and prototypes it writes."""

import numpy as np
import pytest
import torch

from harness.cache.store import FeatureStore, ManifestMismatch
from harness.cache.teachers import CACHE_PRESETS, cache_teachers, item_views, load_teacher
from harness.data.index import open_index
from harness.data.transforms import View, apply_view, to_tensor
from harness.data.video import read_video

from conftest import random_teacher_checkpoints


def test_store_holds_every_item_with_teacher_outputs_that_replay(smoke_store, smoke_data):
    st = FeatureStore.open(smoke_store)
    cfg = CACHE_PRESETS["smoke"]
    train = open_index("synth", smoke_data, 1, "train")
    test = open_index("synth", smoke_data, 1, "test")
    split = st.read("split")
    assert (split == 0).sum() == len(train) * cfg.frames_per_video_train
    assert (split == 1).sum() == len(test) * cfg.frames_per_video_test
    labels, videos = st.read("label"), st.read("video")
    assert np.array_equal(labels[split == 0], train.targets()[videos[split == 0]])
    assert np.array_equal(labels[split == 1], test.targets()[videos[split == 1]])

    # Oracle: recompute one item's teacher output from the video file with the stored view.
    i = int(np.flatnonzero(split == 0)[3])
    rec = train[int(videos[i])]
    frames = read_video(rec.path, size=cfg.frame_size)
    assert np.array_equal(st.read("frames", slice(i, i + 1))[0], frames[st.read("frame")[i]])
    teacher = load_teacher("sort", smoke_store.parent / "sort.pt", train.num_classes, "smoke")
    view = View.from_array(st.read("views", slice(i, i + 1))[0, 1])
    x = to_tensor(apply_view(frames[st.read("frame")[i]], view, 32))
    with torch.no_grad():
        out = teacher.model.forward_features(x)
    stored = st.read("teachers/sort/logits", slice(i, i + 1))[0, 1]
    np.testing.assert_allclose(stored, out.logits[0].numpy(), rtol=1e-5, atol=1e-5)
    conv4 = torch.nn.functional.adaptive_avg_pool2d(out.conv4, (3, 3))[0].numpy()
    np.testing.assert_allclose(st.read("teachers/sort/conv4", slice(i, i + 1))[0, 1], conv4, atol=2e-3, rtol=2e-3)


def test_class_prototypes_are_mean_train_logits(smoke_store):
    st = FeatureStore.open(smoke_store)
    split, label = st.read("split"), st.read("label")
    logits = st.read("teachers/track/logits")
    protos = st.get_extra("class_prototypes/track")
    for c in range(protos.shape[0]):
        rows = logits[(split == 0) & (label == c)]          # (n, K, C)
        np.testing.assert_allclose(protos[c], rows.reshape(-1, rows.shape[-1]).mean(0), rtol=1e-5)


def test_views_are_a_function_of_seed_and_item():
    cfg = CACHE_PRESETS["smoke"]
    a, b = item_views(7, 0, cfg, 1.0), item_views(7, 0, cfg, 1.0)
    assert a == b and item_views(8, 0, cfg, 1.0) != a
    test_views = item_views(7, 1, cfg, 1.0)
    assert test_views[0].flip is False and test_views[1].flip is True   # centre, then its flip


def test_other_teachers_are_refused(smoke_store, smoke_data, tmp_path):
    n = open_index("synth", smoke_data, 1, "train").num_classes
    others = random_teacher_checkpoints(tmp_path, n)
    torch.save({**torch.load(others["sort"], weights_only=False), "model": {
        k: v + 1 for k, v in torch.load(others["sort"], weights_only=False)["model"].items()}}, others["sort"])
    with pytest.raises(ManifestMismatch, match="teachers"):
        cache_teachers("smoke", others, smoke_data, store=smoke_store, progress=False)


def test_bad_teacher_checkpoint_is_one_line_error(tmp_path, smoke_data):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match=r"x.pt: cannot read as a teacher checkpoint \(sort\)"):
        load_teacher("sort", bad, 4, "smoke")


def test_two_cache_teacher_processes_write_the_store_one_process_writes(smoke_store, smoke_data, tmp_path):
    """RANK/WORLD_SIZE as torchrun sets them: two processes write disjoint chunks of one store,
    which then equals the single-process store array by array (prototypes included)."""
    import os
    import subprocess
    import sys

    ckpts = {n: smoke_store.parent / f"{n}.pt" for n in ("sort", "motion", "track", "predict")}
    script = tmp_path / "cache.py"
    script.write_text(
        "import sys\n"
        "from harness.cache.teachers import cache_teachers\n"
        f"cache_teachers('smoke', {({k: str(v) for k, v in ckpts.items()})!r}, {str(smoke_data)!r},\n"
        "               store=sys.argv[1], progress=False)\n")
    out = tmp_path / "two.zarr"
    procs = [subprocess.Popen([sys.executable, str(script), str(out)],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"},
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    one, two = FeatureStore.open(smoke_store), FeatureStore.open(out)
    assert two.is_complete()
    for f in one.fields:
        assert np.array_equal(one.read(f.name), two.read(f.name)), f.name
    for name in one.extras():
        np.testing.assert_array_equal(one.get_extra(name), two.get_extra(name))


def test_chunks_mix_videos_of_every_class(smoke_store):
    """Split lists are sorted by class; the store's item order must not be, or a shuffle buffer
    of a few chunks serves batches of a few classes (BatchNorm students then stay at chance)."""
    st = FeatureStore.open(smoke_store)
    split, label, video = st.read("split"), st.read("label"), st.read("video")
    train_videos = video[split == 0]
    first = train_videos[np.r_[True, train_videos[1:] != train_videos[:-1]]]   # video order
    assert not np.all(np.diff(first) > 0)                                      # not list order
    n_classes = len(np.unique(label))
    a, b = st.chunk_range(0)
    assert len(np.unique(label[a:b])) == n_classes                             # one chunk, all classes


def test_a_complete_store_is_reused_without_decoding_the_videos(smoke_store, smoke_data, monkeypatch):
    import harness.cache.teachers as teachers_mod

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the store is complete")

    monkeypatch.setattr(teachers_mod, "count_frames", no_decoding)
    monkeypatch.setattr(teachers_mod, "read_video", no_decoding)
    ckpts = {n: smoke_store.parent / f"{n}.pt" for n in ("sort", "motion", "track", "predict")}
    st = cache_teachers("smoke", ckpts, smoke_data, store=smoke_store, progress=False)
    assert st.is_complete() and st.path == smoke_store
