"""The weak-supervision setting: seeded label noise on the student's training labels only,
and the table that compares methods under it."""

import json

import numpy as np
import pytest

from harness.distill.label_noise import LabelNoise, noisy_labels
from harness.errors import HarnessError


def test_noise_rate_is_p_and_a_flipped_label_is_another_class_drawn_uniformly():
    videos = np.arange(20_000)
    labels = videos % 5
    noisy = noisy_labels(labels, videos, 0.3, seed=0, num_classes=5)
    flipped = noisy != labels
    assert abs(flipped.mean() - 0.3) < 0.015                     # binomial sd 0.003
    shift = (noisy[flipped] - labels[flipped]) % 5
    counts = np.bincount(shift, minlength=5)
    assert counts[0] == 0                                          # never the true class
    assert np.all(np.abs(counts[1:] / counts[1:].sum() - 0.25) < 0.03)   # the 4 others, uniformly
    assert np.array_equal(noisy_labels(labels, videos, 0.0, 0, 5), labels)


def test_noise_is_a_function_of_seed_and_video_only():
    videos = np.repeat(np.arange(300), 4)                  # 4 items (frames, views) per video
    labels = (videos * 7) % 10
    a = noisy_labels(labels, videos, 0.4, seed=3, num_classes=10)
    assert np.array_equal(a, noisy_labels(labels, videos, 0.4, seed=3, num_classes=10))
    assert not np.array_equal(a, noisy_labels(labels, videos, 0.4, seed=4, num_classes=10))
    assert all(len(set(a[videos == v])) == 1 for v in range(300))  # one label per video
    # a batch holding a subset of the items, in another order, gets the same labels
    order = np.random.default_rng(0).permutation(len(videos))[:500]
    assert np.array_equal(noisy_labels(labels[order], videos[order], 0.4, 3, 10), a[order])


def test_noise_is_refused_out_of_range_and_on_multilabel_stores():
    with pytest.raises(HarnessError, match=r"--label-noise must be in \[0, 1\)"):
        LabelNoise(1.0, 0, 5, False, "s.zarr")
    with pytest.raises(HarnessError, match="s.zarr: --label-noise is defined for single-label"):
        LabelNoise(0.2, 0, 5, True, "s.zarr")


def test_a_noisy_run_trains_on_noisy_labels_and_is_scored_on_the_clean_ones(smoke_store, tmp_path):
    from harness.data.frames import load_predictions
    from harness.distill.runner import distill

    clean = distill("student", "smoke", 0, smoke_store, runs_root=tmp_path, progress=False)
    zero = distill("student", "smoke", 0, smoke_store, runs_root=tmp_path, progress=False, label_noise=0.0)
    noisy = distill("student", "smoke", 0, smoke_store, runs_root=tmp_path, progress=False, label_noise=0.5)
    assert zero.path == clean.path                        # rate 0 is the clean run: same key, reused
    assert noisy.path != clean.path
    record = json.loads((noisy.path / "run.json").read_text())
    assert record["config"]["label_noise"] == 0.5 and "label_noise" not in json.loads(
        (clean.path / "run.json").read_text())["config"]
    assert noisy.final()["label_noise"] == 0.5
    rows = noisy.rows()
    assert all(0.15 < r["label_noise/flipped_share"] < 0.85 for r in rows)
    # the same batches (same seed, same reader order) with other targets: other losses
    assert rows[0]["loss"] != clean.rows()[0]["loss"]
    # evaluation reads the store's own test labels
    p_clean, p_noisy = load_predictions(clean.path), load_predictions(noisy.path)
    assert np.array_equal(p_clean["targets"], p_noisy["targets"])
    assert np.array_equal(p_clean["video_ids"], p_noisy["video_ids"])


def test_distill_refuses_a_bad_rate_in_one_line(smoke_store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    result = CliRunner().invoke(main, ["distill", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store),
                                       "--label-noise", "1.0"])
    assert result.exit_code == 2 and "--label-noise" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def _fake_run(folder, seed, correct, num_classes=4):
    from harness.data.frames import save_predictions
    from harness.runs import RunDir

    folder.mkdir(parents=True)
    targets = np.arange(len(correct)) % num_classes
    pred = np.where(np.asarray(correct, bool), targets, (targets + 1) % num_classes)
    save_predictions(folder, np.eye(num_classes)[pred], targets, np.arange(len(correct)))
    (folder / "final.json").write_text(json.dumps({"seed": seed, "value": float(np.mean(correct)),
                                                   "metric": "accuracy"}))
    return RunDir(folder)


def test_the_table_gives_each_cell_over_seeds_and_paired_differences_per_rate(tmp_path):
    from harness.tables.label_noise import render_label_noise

    v = 200
    right, half = np.ones(v), (np.arange(v) % 2).astype(float)
    runs = {}
    for rate in (0.0, 0.4):
        for m, correct in (("staged-kd", right), ("kd", half if rate else right)):
            runs[(m, rate)] = [_fake_run(tmp_path / f"{m}-{rate}-{s}", s, correct) for s in (0, 1)]
    md = render_label_noise(runs, {"staged-kd": "Staged KD", "kd": "KD"}, "synth-tiny, split 1",
                            "harness label-noise --preset tiny", tmp_path / "out")
    assert "| Staged KD | 100.0 ± 0.0 | 100.0 ± 0.0 |" in md and "| KD | 100.0 ± 0.0 | 50.0 ± 0.0 |" in md
    assert "| 0% | Staged KD minus KD | +0.0 (+0.0, +0.0) | 0.0 | **inconclusive** |" in md
    assert "| 40% | Staged KD minus KD | +50.0" in md and "**holds** |" in md
    data = json.loads((tmp_path / "out" / "label_noise.json").read_text())
    assert data["rates"] == [0.0, 0.4] and data["seeds"] == [0, 1] and len(data["cells"]) == 4
    tex = (tmp_path / "out" / "label_noise.tex").read_text()
    assert r"\toprule" in tex and r"noise 40\%" in tex and r"50.0 $\pm$ 0.0" in tex
