"""The power table (`harness power`): rendered from fake run folders whose answer is known,
and end to end on the smoke store, with its bad input refused in one line."""

import csv
import json

import numpy as np
import pytest

from harness.errors import HarnessError
from test_label_noise import _fake_run

V = 200


def test_the_table_gives_each_pair_its_errors_and_each_method_its_seed_spread(tmp_path):
    from harness.tables.claims import TABLE2_CLAIMS, cells_from_runs
    from harness.tables.power import render_power

    right, half = np.ones(V), (np.arange(V) % 2).astype(float)
    runs = {"gl": [_fake_run(tmp_path / f"gl-{s}", s, right if s < 2 else half) for s in range(4)],
            "mmgd": [_fake_run(tmp_path / f"mmgd-{s}", s, half) for s in range(4)],
            "gr": [_fake_run(tmp_path / f"gr-{s}", s, half) for s in range(4)]}   # no claim pairs gr with these
    md = render_power(cells_from_runs(runs), TABLE2_CLAIMS, {"gl": "G_l", "mmgd": "MMGD", "gr": "G_r"},
                      "synth-tiny, split 1", "harness power --preset tiny", tmp_path / "out", n_boot=2000,
                      project_videos=(2 * V,))
    # G_l right everywhere on seeds 0, 1, half right on 2, 3; MMGD half right: +33.3 on three seeds, +25 on four
    rows = [line for line in md.splitlines() if line.startswith("| G_l | MMGD |")]
    assert len(rows) == 1 and "| +33.3 (" in rows[0] and "| +25.0 (" in rows[0]
    assert "G_r" not in md.split("Test accuracy")[0]          # only the pairs a claim compares
    assert "| G_l | 75.0 ± 28.9 | 50.0 | 100.0 |" in md and "| MMGD | 50.0 ± 0.0 | 50.0 | 50.0 |" in md
    assert "Made by: `harness power --preset tiny`" in md and "seeds 0-3" in md and f"{V} test videos" in md
    data = json.loads((tmp_path / "out" / "power.json").read_text())
    (row,) = data["rows"]
    assert (row["better"], row["than"], row["n_seeds"], row["n_videos"]) == ("gl", "mmgd", 4, V)
    assert row["diff_n"] == pytest.approx(25.0) and row["diff_3"] == pytest.approx(100 / 3)
    assert data["seeds"] == [0, 1, 2, 3] and data["accuracy_per_seed"]["gl"] == [100.0, 100.0, 50.0, 50.0]
    assert set(data["runs"]) == {"gl", "mmgd", "gr"} and len(data["runs"]["gl"]) == 4
    with open(tmp_path / "out" / "power.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 1 and float(table[0]["diff_n"]) == pytest.approx(25.0) and table[0]["verdict_n"]
    assert float(table[0][f"se_n_projected_{2 * V}_videos"]) > 0
    tex = (tmp_path / "out" / "power.tex").read_text()
    assert r"\toprule" in tex and r"Made by \texttt{harness power --preset tiny}" in tex


def test_no_pair_to_compare_is_one_clear_error(tmp_path):
    from harness.tables.claims import TABLE2_CLAIMS, cells_from_runs
    from harness.tables.power import render_power

    runs = {"gr": [_fake_run(tmp_path / f"gr-{s}", s, np.ones(V)) for s in range(4)]}
    with pytest.raises(HarnessError, match="no claim of the paper compares two of gr"):
        render_power(cells_from_runs(runs), TABLE2_CLAIMS, {}, "x", "c", tmp_path / "out", n_boot=100)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_power_on_the_smoke_store_end_to_end(smoke_store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "tables"
    args = ["power", "--preset", "smoke", "--store", str(smoke_store), "--methods", "mmgd,kd", "--seeds", "4",
            "--boot", "200", "--videos", "56", "--out-dir", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "power.json").read_text())
    assert [(r["better"], r["than"], r["n_seeds"]) for r in data["rows"]] == [("mmgd", "kd", 4)]
    assert data["seeds"] == [0, 1, 2, 3] and all(len(v) == 4 for v in data["runs"].values())
    assert data["rows"][0]["se_n_projected_56_videos"] > 0 and data["n_boot"] == 200
    assert "--methods mmgd,kd" in data["command"] and "--videos 56" in data["command"] and "| Logits graph (MMGD) | KD (uniform) |" in (out / "power.md").read_text()
    # reused, not retrained: a second call makes no new run folder
    before = sorted(p.name for p in (tmp_path / "runs").rglob("final.json"))
    assert CliRunner().invoke(main, args).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "runs").rglob("final.json")) == before


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "3"], "--seeds 3: power compares 3 seeds with more, so it needs at least 4"),
    (["--methods", "kd,nope"], "unknown method 'nope'"),
    (["--methods", "kd"], "it needs two or more"),
    (["--videos", "a,b"], "not a comma-separated list of integers"),
])
def test_bad_input_is_refused_in_one_line_before_any_run(extra, message, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    result = CliRunner().invoke(main, ["power", "--preset", "smoke", "--store", str(tmp_path / "none.zarr"), *extra])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
