"""The speed table: FLOPs against a hand count, every model listed, the files written."""

import csv
import json

import torch
from click.testing import CliRunner

from harness.cli import main
from harness.models import build_model, model_cost
from harness.speed import STUDENT, TEACHERS_TOGETHER, model_archs


def _conv_macs(cout, out_side, cin, k):
    return cout * out_side * out_side * cin * k * k


def test_paper_alexnet_flops_match_a_hand_count():
    # torchvision AlexNet at 224 px: conv outputs 55, 27, 13, 13, 13; fc 9216 -> 4096 -> 4096 -> C
    macs = (_conv_macs(64, 55, 3, 11) + _conv_macs(192, 27, 64, 5) + _conv_macs(384, 13, 192, 3)
            + _conv_macs(256, 13, 384, 3) + _conv_macs(256, 13, 256, 3)
            + 256 * 6 * 6 * 4096 + 4096 * 4096 + 4096 * 101)
    with torch.device("meta"):
        model = build_model("alexnet", 101, "paper")
    assert model_cost(model)["mflops_per_frame"] * 1e6 == 2 * macs


def test_speed_command_lists_every_model_and_writes_md_csv_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["speed", "--preset", "smoke", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "tables" / "generated" / "smoke"
    data = json.loads((out / "speed.json").read_text())
    names = [r["model"] for r in data["rows"]]
    assert names == [*[n for n in model_archs() if n != STUDENT], TEACHERS_TOGETHER, STUDENT]
    assert names == [r["model"] for r in csv.DictReader((out / "speed.csv").open())]
    md = (out / "speed.md").read_text()
    assert all(f"| {n} |" in md for n in names) and "harness speed --preset smoke" in md
    rows = {r["model"]: r for r in data["rows"]}
    teachers = [rows[n] for n in ("sort", "motion", "track", "predict")]
    assert rows[TEACHERS_TOGETHER]["params"] == sum(r["params"] for r in teachers)
    assert abs(rows[TEACHERS_TOGETHER]["gflops_per_frame"] - sum(r["gflops_per_frame"] for r in teachers)) < 1e-9
    clip = build_model("prednet", 4, "smoke").clip_length
    assert abs(rows["predict"]["gflops_per_prediction"] - clip * rows["predict"]["gflops_per_frame"]) < 1e-9
    assert all(r["frames_per_s"] > 0 and len(r["seconds"]) == r["rounds"] for r in data["rows"])
    ratio = data["ratios"][0]
    assert ratio["params"] == rows[TEACHERS_TOGETHER]["params"] / rows[STUDENT]["params"]
    assert data["device"] and data["device_type"] == "cpu"
