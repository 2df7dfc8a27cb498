import json

import pytest

from harness.tables.render import MeasuredRow, paper_numbers, render


def test_paper_numbers_match_method_md():
    # the paper's Tables 1-2 as printed: the anchors shown beside every reproduction.
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
            metrics = json.loads((Path(pre_run) / "final.json").read_text())
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

    # the whole report on top: Table 1's runs are reused, everything else is made, and REPORT.md
    # links every artifact it wrote
    rep = CliRunner().invoke(main, ["report", "--preset", "smoke", "--skip", "volumes"])   # Fig. 4b: its own test
    assert rep.exit_code == 0, rep.output
    assert stamps == {run: (Path(run) / "final.json").stat().st_mtime_ns for run in stamps}
    out = tmp_path / "tables/generated/smoke"
    report = (out / "REPORT.md").read_text()
    for target in ("teachers.md", "table1.md", "table2.md", "claims.md", "figures/", "label_noise.md", "speed.md"):
        assert f"]({target})" in report and (out / target).exists()
    assert "fig4b" not in report and "`harness claims --volumes` trains its runs" in (out / "claims.md").read_text()
    assert "Made by: `harness report --preset smoke --seed 0 --skip volumes`" in report
    claims = json.loads((out / "claims.json").read_text())
    assert sum(claims["verdicts"].values()) == len(claims["claims"]) and f"Of {len(claims['claims'])} claims" in report
    assert {c["source"] for c in claims["claims"]} == {"Table 1", "Table 2", "Fig. 4a"}
    noise = json.loads((out / "label_noise.json").read_text())
    assert noise["rates"] == [0.0, 0.2, 0.4] and len(noise["cells"]) == 9
    assert (out / "table1.tex").read_text().count(r"\\") == 1 + len(data["rows"])   # header + one line a row


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


def test_teachers_smoke_reports_each_runs_own_seconds(tmp_path, monkeypatch):
    """`harness teachers`: the four teachers are trained, every number in the report is read
    from the run folders it names, the total is their sum, and a second call trains nothing."""
    from pathlib import Path

    from click.testing import CliRunner

    from harness.cache.teachers import TEACHER_TASKS
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_RUNS", raising=False)
    result = CliRunner().invoke(main, ["teachers", "--preset", "smoke", "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "tables/generated/smoke/teachers.json").read_text())
    assert [r["task"] for r in data["rows"]] == list(TEACHER_TASKS)
    total = 0.0
    for row in data["rows"]:
        finetune_run, pretrain_run = (Path(p) for p in row["runs"])
        final = json.loads((finetune_run / "final.json").read_text())
        metrics = json.loads((pretrain_run / "final.json").read_text())
        assert Path(final["init_summary"]["source"]).parent == pretrain_run and metrics["task"] == row["task"]
        assert row["value"] == final["value"] and row["pretext"]["value"] == metrics["metric"]
        # the pretraining's whole run (decoding, evaluations, loop), not just its loop
        assert row["pretrain_seconds"] == metrics["run_seconds"] > metrics["train_seconds"] > 0
        assert row["finetune_seconds"] == round(final["run_seconds"] + final["decode_seconds"], 2) > 0
        assert row["pretrained_now"] and row["finetuned_now"]
        total += row["pretrain_seconds"] + row["finetune_seconds"]
    assert data["recorded_seconds"] == round(total, 2) and data["runs_trained_now"] == 8
    # every recorded second was spent inside this command
    assert data["recorded_seconds"] <= data["wall_seconds"]
    assert data["budget_seconds"] is None and data["within_budget"] is None and data["reference_step_ms"] > 0
    md = (tmp_path / "tables/generated/smoke/teachers.md").read_text()
    assert "harness teachers --preset smoke --seed 0" in md and f"{data['recorded_seconds']:.0f} s" in md
    assert "8 of 8 runs trained now." in md and "reused" not in md
    rows_csv = (tmp_path / "tables/generated/smoke/teachers.csv").read_text().splitlines()
    assert len(rows_csv) == 5 and rows_csv[1].startswith("sort,vgg19_teacher,")
    tex = (tmp_path / "tables/generated/smoke/teachers.tex").read_text()
    assert r"\toprule" in tex and r"\texttt{harness teachers --preset smoke --seed 0 --quiet}" in tex

    again = CliRunner().invoke(main, ["teachers", "--preset", "smoke", "--quiet"])
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / "tables/generated/smoke/teachers.json").read_text())
    assert second["runs_trained_now"] == 0 and second["recorded_seconds"] == data["recorded_seconds"]
    assert all(not r["pretrained_now"] and not r["finetuned_now"] for r in second["rows"])
    assert "(reused)" in again.output and "0 of 8 runs trained now (the others reused)." in again.output


def test_teacher_budget_verdict_compares_recorded_seconds():
    """The tiny preset's 600 s budget is judged on the runs' recorded total, not on the wall
    time of a command that may have reused every run; presets without a budget get no verdict."""
    from harness.tables import teachers

    def rows(pretrain, finetune, now):
        return [{"pretrain_seconds": p, "finetune_seconds": f, "pretrained_now": now, "finetuned_now": now}
                for p, f in zip(pretrain, finetune)]

    under = teachers.budget_summary(rows([100, 50, 40, 80], [110, 100, 100, 19.5], False), "tiny", 3.0)
    assert under["recorded_seconds"] == 599.5 and under["within_budget"] is True and under["runs_trained_now"] == 0
    over = teachers.budget_summary(rows([100, 50, 40, 80], [110, 100, 100, 20.5], True), "tiny", 1.0)
    assert over["recorded_seconds"] == 600.5 and over["within_budget"] is False and over["runs_trained_now"] == 8
    assert teachers.budget_summary(rows([1], [1], True), "smoke", 9.0)["within_budget"] is None
    md = teachers._render([], {**over, "reference_step_ms": 50.0, "torch_threads": 2, "cpu_count": 2,
                               "processor": "x86_64"}, "tiny", "harness teachers --preset tiny --seed 0", "abc123")
    assert "Budget of the tiny preset: 600 s; the recorded total is over it." in md
    assert "600 s (10.0 min)" in md and "50.0 ms" in md and "(code abc123)" in md


def test_ablation_names_its_whole_command_and_the_data_its_runs_read(smoke_store, tmp_path, monkeypatch):
    """The "Made by" line is the command as typed (--store kept), the dataset label comes from
    the run's store manifest, and tables/ only renders: no training happens in harness.tables."""
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    result = CliRunner().invoke(main, ["ablation", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "tables/generated/smoke/ablation/kd/table2.md").read_text()
    assert f"`harness ablation --method kd --preset smoke --seed 0 --store {smoke_store}`" in md
    assert "ours measured by this harness on synth-smoke, split 1;" in md
    import ast
    from pathlib import Path

    import harness.tables

    training = {"harness.pipeline", "harness.finetune", "harness.distill.runner", "harness.pretext.train",
                "harness.cache.teachers"}
    for source in Path(harness.tables.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if isinstance(node, ast.ImportFrom) else []
            assert not training & set(names), f"{source.name} imports {training & set(names)}"


def _fake_run(folder, seed, value, dataset="synth", preset="tiny"):
    from harness.runs import RunDir

    folder.mkdir(parents=True)
    (folder / "final.json").write_text(json.dumps({"seed": seed, "value": value, "metric": "accuracy"}))
    (folder / "run.json").write_text(json.dumps({"config": {"dataset": dataset, "split": 1, "preset": preset}}))
    return RunDir(folder)


def test_seeds_render_as_mean_and_sample_std_with_every_run_listed(tmp_path):
    from harness.tables.tables import render_table2

    runs = {"kd": [_fake_run(tmp_path / f"kd{s}", s, v) for s, v in ((0, 0.40), (1, 0.50), (2, 0.60))],
            "gl+gr": [_fake_run(tmp_path / "g0", 0, 0.45)]}
    md = render_table2(runs, "harness table2 --preset tiny --seed 0 --seeds 3", tmp_path / "out")
    assert "| KD (uniform) | 50.0 ± 10.0 | 60.1 |" in md        # sample std (ddof 1) of 40, 50, 60
    assert "| G_l+G_r | 45.0 | 68.9 |" in md                     # one seed: no spread shown
    assert "mean ± standard deviation over seeds 0, 1, 2" in md and "on synth-tiny, split 1" in md
    data = json.loads((tmp_path / "out" / "table2.json").read_text())
    kd = data["rows"][0]
    assert kd["ours"] == pytest.approx(50.0) and kd["ours_std"] == pytest.approx(10.0) and kd["seeds"] == [0, 1, 2]
    assert kd["per_seed"] == {"0": 40.0, "1": 50.0, "2": 60.0} and len(kd["runs"]) == 3
    assert data["rows"][1]["ours_std"] is None and data["seeds"] == [0, 1, 2]


def test_strict_seeds_give_each_seed_its_own_pretraining_teachers_and_store(monkeypatch):
    """The plan, with the training steps replaced by recorders: by default every seed shares
    the base seed's pretraining and store; --strict-seeds gives each seed its own."""
    from harness import pipeline
    from harness.errors import HarnessError

    made = []

    class Run:
        def __init__(self, **kw):
            made.append(kw)

    monkeypatch.setattr(pipeline, "ensure_data", lambda preset, root=None, dataset="synth": "data")
    monkeypatch.setattr(pipeline, "check_classes", lambda dataset, root, split=1: None)
    monkeypatch.setattr(pipeline, "student_store",
                        lambda preset, seed, store=None, **kw: f"store(teachers {seed}, {store})")
    monkeypatch.setattr(pipeline, "run_method", lambda m, preset, s, store=None, progress=True, **kw:
                        Run(kind="distill", seed=s, store=store))
    import harness.finetune as ft
    monkeypatch.setattr(ft, "finetune", lambda arch, init, preset, s, *a, pretrain_seed=None, **kw:
                        Run(kind="finetune", seed=s, pretrain_seed=pretrain_seed))
    monkeypatch.setattr(ft, "finetune_pretext", lambda task, preset, s, *a, pretrain_seed=None, **kw:
                        Run(kind="pretext", seed=s, pretrain_seed=pretrain_seed))

    pipeline.table1_runs("tiny", [3, 4, 5])
    assert {m["pretrain_seed"] for m in made if m["kind"] != "distill"} == {3}
    assert {m["store"] for m in made if m["kind"] == "distill"} == {"store(teachers 3, None)"}
    made.clear()
    pipeline.table1_runs("tiny", [3, 4, 5], strict=True)
    assert all(m["pretrain_seed"] == m["seed"] for m in made if m["kind"] != "distill")
    stores = {m["seed"]: m["store"] for m in made if m["kind"] == "distill"}
    assert stores == {3: "store(teachers 3, None)", 4: "store(teachers 4, cache/tiny-teachers-seed4.zarr)",
                      5: "store(teachers 5, cache/tiny-teachers-seed5.zarr)"}
    made.clear()
    pipeline.table2_runs(["kd"], "tiny", [0, 1], strict=True)
    assert [m["store"] for m in made] == ["store(teachers 0, None)", "store(teachers 1, cache/tiny-teachers-seed1.zarr)"]
    with pytest.raises(HarnessError, match="--store s.zarr: a store holds one seed's teachers"):
        pipeline.table2_runs(["kd"], "tiny", [0, 1], store="s.zarr", strict=True)


def test_fig4b_pretrains_each_volume_on_the_first_share_of_the_unlabeled_list(monkeypatch):
    """The plan of the Fig. 4b runs, with the training steps replaced by recorders."""
    from harness import pipeline

    calls = []
    monkeypatch.setattr(pipeline, "ensure_data", lambda preset, root=None, dataset="synth": "data")
    monkeypatch.setattr(pipeline, "check_classes", lambda dataset, root, split=1: None)
    monkeypatch.setattr(pipeline, "unlabeled_counts", lambda preset, volumes, root=None:
                        {float(v): max(2, round(v * 300)) for v in volumes})
    monkeypatch.setattr(pipeline, "teacher_checkpoints", lambda preset, seed, root, pretext_overrides=None, **kw:
                        calls.append(("teachers", seed, pretext_overrides)) or {"sort": f"ckpt{pretext_overrides}"})

    class Store:
        def is_complete(self):
            return True

    monkeypatch.setattr(pipeline, "cache_teachers", lambda preset, ckpts, root, store=None, **kw:
                        calls.append(("store", str(store), ckpts["sort"])) or Store())
    monkeypatch.setattr(pipeline, "run_method", lambda m, preset, s, store=None, **kw: (m, s, str(store)))
    out = pipeline.volume_runs("tiny", [0, 1])
    assert list(out) == [75, 150, 300]
    assert ("teachers", 0, {"max_videos": 75}) in calls and ("teachers", 0, None) in calls   # 100%: the defaults
    assert ("store", "cache/tiny-unlabeled75.zarr", "ckpt{'max_videos': 75}") in calls
    assert ("store", "cache/tiny.zarr", "ckptNone") in calls                                 # the default store
    assert out[150] == [("gl+gr", 0, "cache/tiny-unlabeled150.zarr"), ("gl+gr", 1, "cache/tiny-unlabeled150.zarr")]


def test_fig4b_draws_every_seed_and_names_its_runs(tmp_path):
    from harness.tables.figures import fig4b_volume, volume_points

    runs = {n: [_fake_run(tmp_path / f"v{n}-{s}", s, v) for s, v in enumerate(values)]
            for n, values in ((75, (0.30, 0.40)), (300, (0.50, 0.60)))}
    assert volume_points(runs) == {75: [30.0, 40.0], 300: [50.0, 60.0]}
    paths = fig4b_volume(runs, "G_l+G_r", tmp_path / "fig")
    assert {p.suffix for p in paths} == {".png", ".pdf"}
    caption = (tmp_path / "fig" / "fig4b_volume.txt").read_text()
    assert "75 videos 35.0%, 300 videos 55.0%" in caption and str(tmp_path / "v300-1") in caption
