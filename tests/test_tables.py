import json

from harness.tables.render import MeasuredRow, paper_numbers, render


def test_paper_numbers_match_method_md():
    # METHOD.md "Paper numbers": the anchors printed beside every reproduction.
    t1, t2 = paper_numbers(1), paper_numbers(2)
    assert t1["gl+gr"] == {"label": "Ours (G_l+G_r)", "ucf101": 68.9, "hmdb51": 35.1, "ccv": 62.6}
    assert t1["alexnet_ran"]["hmdb51"] == 16.3 and t1["oddoneout"]["ccv"] == 58.1
    assert [k for k in t2] == ["fusion", "ensemble", "kd", "mmgd", "gl", "feat", "gr", "mmgd+gr", "gl+gr"]
    assert t2["mmgd+gr"]["ucf101"] == 67.0 and t2["feat"]["ccv"] == 56.3


def test_render_marks_missing_runs_and_names_the_command(tmp_path):
    rows = [MeasuredRow("gl+gr", "G_l+G_r", 41.25, "acc", runs=["runs/x"]),
            MeasuredRow("kd", "KD (uniform)", None, "acc")]
    md = render(2, rows, "synth-tiny split 1", "harness table2 --preset tiny", tmp_path)
    assert "| G_l+G_r | 41.2 | 68.9 | 35.1 | 62.6 |" in md
    assert "| KD (uniform) | - | 60.1 | 24.3 | 48.1 |" in md
    assert "harness table2 --preset tiny" in md
    data = json.loads((tmp_path / "table2.json").read_text())
    assert data["rows"][1]["ours"] is None and data["rows"][0]["runs"] == ["runs/x"]


def test_table1_smoke_end_to_end(tmp_path, monkeypatch):
    """The main job on the smoke preset: every row is run (data, 7 pretext tasks, fine-tunes,
    the store, G_l+G_r), each number comes from a finished run folder that exists, and a second
    call reuses them all."""
    from pathlib import Path

    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_RUNS", raising=False)
    result = CliRunner().invoke(main, ["table1", "--preset", "smoke"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "tables/generated/smoke/table1.json").read_text())
    assert [r["key"] for r in data["rows"]] == ["alexnet_ran", "alexnet_pre", "track", "shuffle", "pose", "sort",
                                                "oddoneout", "motion", "predict", "gl+gr"]
    pretext_rows = {"track", "shuffle", "pose", "sort", "oddoneout", "motion", "predict"}
    for row in data["rows"]:
        assert 0.0 <= row["ours"] <= 100.0
        run = row["runs"][0]
        final = json.loads((Path(run) / "final.json").read_text())
        assert row["ours"] == 100.0 * final["value"]
        if row["key"] in pretext_rows:
            # the pretext metric next to the fine-tuned accuracy comes from the pretraining run
            # the fine-tune started from
            (pre_run,) = row["runs"][1:]
            metrics = json.loads((Path(pre_run) / "metrics.json").read_text())
            assert metrics["task"] == row["key"] == row["pretext"]["task"]
            assert row["pretext"]["value"] == metrics["metric"] and row["pretext"]["chance"] == metrics["chance"]
            assert Path(final["init_summary"]["source"]).parent == Path(pre_run)
        elif row["key"] == "alexnet_pre":
            # AlexNet_pre's column holds its supervised stage's held-out accuracy
            (stage_run,) = row["runs"][1:]
            stage = json.loads((Path(stage_run) / "final.json").read_text())
            assert stage["subset"] == "disjoint" and final["supervised_stage"]["run"] == stage_run
            assert row["pretext"]["value"] == stage["value"] and row["pretext"]["chance"] == stage["chance"]
        else:
            assert len(row["runs"]) == 1 and row["pretext"] is None
    md = (tmp_path / "tables/generated/smoke/table1.md").read_text()
    assert "pretraining metric, held-out" in md and "disjoint-class accuracy" in md and "chance" in md
    stamps = {r["runs"][0]: (Path(r["runs"][0]) / "final.json").stat().st_mtime_ns for r in data["rows"]}
    again = CliRunner().invoke(main, ["table1", "--preset", "smoke"])
    assert again.exit_code == 0, again.output
    assert stamps == {run: (Path(run) / "final.json").stat().st_mtime_ns for run in stamps}


def test_staged_kd_is_an_extra_table2_row_without_paper_numbers(tmp_path):
    import csv

    from harness.distill.methods import METHODS

    spec = METHODS["staged-kd"]
    assert spec.table2 and "interpretation" in spec.label and "staged-kd" not in paper_numbers(2)
    rows = [MeasuredRow("gl+gr", "G_l+G_r", 41.25, "acc"),
            MeasuredRow("staged-kd", spec.label, 37.5, "acc", runs=["runs/s"], note=spec.notes)]
    md = render(2, rows, "synth-tiny split 1", "harness table2 --preset tiny", tmp_path)
    assert f"| Staged KD (interpretation from the abstract) | 37.5 |  |  |  | {spec.notes} |" in md
    assert "| G_l+G_r | 41.2 | 68.9 | 35.1 | 62.6 |" in md
    data = json.loads((tmp_path / "table2.json").read_text())
    assert data["rows"][1]["paper"] == {"ucf101": None, "hmdb51": None, "ccv": None}
    with open(tmp_path / "table2.csv", newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    assert last["ours"] == "37.5" and last["paper_ucf101"] == last["paper_hmdb51"] == last["paper_ccv"] == ""
