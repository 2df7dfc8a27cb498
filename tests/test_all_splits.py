"""``--split all`` on the table commands: every cell trained on each official split and reported
as their mean, as the paper does, with the three test sets pooled for the paired intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.data.frames import load_predictions, save_predictions
from harness.runs import SPLIT_VIDEO_STRIDE, RunDir, splits_summary


def _fake_run(root: Path, split: int, value: float, curve: list[float], n_videos: int, tag: str = "a") -> RunDir:
    run = RunDir(root / f"split{split}-{tag}")   # a run's folder name is what keys the summary
    run.start({"split": split})
    rng = np.random.default_rng(split)
    save_predictions(run.path, rng.standard_normal((n_videos, 3)), rng.integers(0, 3, n_videos), np.arange(n_videos))
    run.finish({"seed": 0, "metric": "accuracy", "value": value, "run_seconds": 2.0 * split},
               [{"epoch": e + 1, "test_value": v} for e, v in enumerate(curve)])
    return run


def test_splits_summary_is_the_mean_and_pools_the_test_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    runs = {1: _fake_run(tmp_path, 1, 0.40, [0.1, 0.3, 0.5], 4), 2: _fake_run(tmp_path, 2, 0.20, [0.2, 0.4], 5),
            3: _fake_run(tmp_path, 3, 0.90, [0.3, 0.5, 0.7], 6)}
    run = splits_summary("all-splits", "smoke", "cell", runs, "test-all-splits", {"method": "kd"})
    final = run.final()
    assert final["value"] == pytest.approx(0.5) and final["per_split"] == {"1": 0.4, "2": 0.2, "3": 0.9}
    assert final["split"] == "all" and final["seed"] == 0 and final["method"] == "kd" and final["run_seconds"] == 12.0
    # the curve is the per-epoch mean where every split has the epoch (split 2 stopped at 2)
    assert [(r["epoch"], r["test_value"]) for r in run.rows()] == [(1, pytest.approx(0.2)), (2, pytest.approx(0.4))]
    pred = load_predictions(run.path)
    parts = [load_predictions(runs[k].path) for k in (1, 2, 3)]
    assert np.array_equal(pred["scores"], np.concatenate([p["scores"] for p in parts]))
    assert np.array_equal(pred["targets"], np.concatenate([p["targets"] for p in parts]))
    want_ids = np.concatenate([p["video_ids"] + k * SPLIT_VIDEO_STRIDE for k, p in zip((1, 2, 3), parts)])
    assert np.array_equal(pred["video_ids"], want_ids) and len(set(pred["video_ids"])) == 15
    again = splits_summary("all-splits", "smoke", "cell", runs, "test-all-splits", {"method": "kd"})
    assert again.path == run.path                               # reused, keyed by the per-split runs
    other = splits_summary("all-splits", "smoke", "cell", {**runs, 3: _fake_run(tmp_path, 3, 0.1, [], 6, "b")},
                           "test-all-splits")
    assert other.path != run.path


def _harness(args, workdir, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HARNESS_RUNS", str(workdir / "runs"))
    return CliRunner().invoke(main, args)


def test_ablation_with_split_all_trains_each_split_and_reports_their_mean(tmp_path, monkeypatch):
    from harness.cache.store import FeatureStore

    result = _harness(["ablation", "--method", "kd", "--preset", "smoke", "--split", "all"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output[-3000:]
    table = json.loads((tmp_path / "tables/generated/smoke/ablation/kd/table2.json").read_text())
    assert table["dataset"] == "synth-smoke, splits 1, 2, 3 (mean)"
    row = next(r for r in table["rows"] if r["key"] == "kd")
    final = json.loads((Path(row["runs"][0]) / "final.json").read_text())
    per_split = [json.loads((Path(final["runs"][k]) / "final.json").read_text()) for k in ("1", "2", "3")]
    assert row["ours"] == pytest.approx(100 * np.mean([f["value"] for f in per_split]), abs=0.05)
    assert [json.loads((Path(final["runs"][k]) / "run.json").read_text())["inputs"]["store_manifest"]["dataset"]
            .get("split", 1) for k in ("1", "2", "3")] == [1, 2, 3]     # each split distilled from its own store
    for k, name in ((1, "smoke.zarr"), (2, "smoke-synth-split2.zarr"), (3, "smoke-synth-split3.zarr")):
        with FeatureStore.open(tmp_path / "cache" / name) as st:
            assert st.manifest["dataset"].get("split", 1) == k
    n = sum(len(load_predictions(f["runs"][k])["video_ids"]) for f in (final,) for k in ("1", "2", "3"))
    assert len(load_predictions(Path(row["runs"][0]))["video_ids"]) == n

    clash = _harness(["ablation", "--method", "kd", "--preset", "smoke", "--split", "all", "--store",
                      str(tmp_path / "cache/smoke.zarr")], tmp_path, monkeypatch)
    assert clash.exit_code == 2 and "--split all builds one per split" in clash.output
    assert len(clash.output.strip().splitlines()) == 1
