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
