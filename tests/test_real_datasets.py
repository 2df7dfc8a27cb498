"""The official layouts of UCF101, HMDB51 and CCV, written with real codecs
(``tests/real_layouts.py``), through the harness's data plumbing and, on the smoke preset, its
commands end to end."""

from __future__ import annotations

import pytest

from real_layouts import make_ucf101


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    return make_ucf101(tmp_path_factory.mktemp("ucf") / "UCF101")


def test_pretraining_reads_the_training_split_without_labels_when_no_unlabeled_list_exists(ucf, tmp_path):
    from harness.data.index import open_index, unlabeled_index
    from harness.errors import HarnessError

    train, test = open_index("ucf101", ucf, 1, "train"), open_index("ucf101", ucf, 1, "test")
    got = unlabeled_index("ucf101", ucf, 1)
    assert [r.path for r in got] == [r.path for r in train] and not got.labeled
    assert not {r.path for r in got} & {r.path for r in test}             # the test split is never read
    assert unlabeled_index("ucf101", ucf, 2).fingerprint() != got.fingerprint()
    listed = tmp_path / "mine.txt"
    listed.write_text("".join(f"UCF-101/{t.rel_paths[i]}\n" for t in (test,) for i in range(2)))
    mine = unlabeled_index("ucf101", ucf, 1, unlabeled=listed)
    assert [r.path for r in mine] == [r.path for r in test][:2]
    with pytest.raises(HarnessError, match="nope.txt: --unlabeled list not found"):
        unlabeled_index("ucf101", ucf, 1, unlabeled=tmp_path / "nope.txt")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One runs root, store folder and frame cache for the module, so table1 reuses the teachers
    and store that table2 made on the same data."""
    return tmp_path_factory.mktemp("work")


def _harness(args, workdir, monkeypatch):
    from click.testing import CliRunner

    from harness.cli import main

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HARNESS_RUNS", str(workdir / "runs"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output[-3000:]
    return result.output


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51", "ccv"])
def test_table2_end_to_end_from_an_official_layout(dataset, ucf, workdir, tmp_path_factory, monkeypatch):
    """Teachers pretrained on the training split's videos, fine-tuned, cached and every Table 2
    method distilled, from the release layout as unpacked; the table names the data."""
    import json

    from real_layouts import make_ccv, make_hmdb51

    root = {"ucf101": lambda: ucf, "hmdb51": lambda: make_hmdb51(tmp_path_factory.mktemp("hmdb") / "hmdb51"),
            "ccv": lambda: make_ccv(tmp_path_factory.mktemp("ccv") / "CCV")}[dataset]()
    _harness(["table2", "--preset", "smoke", "--dataset", dataset, "--data-root", str(root)], workdir, monkeypatch)
    table = json.loads((workdir / "tables/generated/smoke/table2.json").read_text())
    assert table["dataset"] == f"{dataset}, split 1"
    made = [r for r in table["rows"] if r["ours"] is not None]
    assert {r["metric"] for r in made} == {"mAP" if dataset == "ccv" else "accuracy"}
    assert all(0.0 <= r["ours"] <= 100.0 for r in made)
    # staged KD refines single labels: on multi-label CCV its row is marked, every other row made
    absent = {r["key"]: r["note"] for r in table["rows"] if r["ours"] is None}
    assert absent == ({"staged-kd": "missing: single-label only; CCV is multi-label"} if dataset == "ccv" else {})
    store = workdir / f"cache/smoke-{dataset}-split1.zarr"            # its own store, not the synthetic set's
    from harness.cache.store import FeatureStore

    with FeatureStore.open(store) as st:
        assert st.manifest["dataset"]["name"] == dataset and st.manifest["dataset"]["split"] == 1
    # the four teachers pretrained on this dataset's own videos: never another dataset's runs reused
    # (the parameters run in order, each adding its four)
    pre = [p for p in (workdir / "runs/pretrain/smoke").iterdir() if (p / "final.json").is_file()]
    assert len(pre) == 4 * (["ucf101", "hmdb51", "ccv"].index(dataset) + 1)


def test_table1_on_ucf101_marks_alexnet_pre_missing_without_weights_and_fills_it_with_them(
        ucf, workdir, tmp_path, monkeypatch):
    import json

    import torch

    from harness.models import build_model

    args = ["table1", "--preset", "smoke", "--dataset", "ucf101", "--data-root", str(ucf)]
    _harness(args, workdir, monkeypatch)
    rows = {r["key"]: r for r in json.loads((workdir / "tables/generated/smoke/table1.json").read_text())["rows"]}
    assert rows["alexnet_pre"]["ours"] is None and "--pretrained-weights" in rows["alexnet_pre"]["note"]
    assert all(r["ours"] is not None for k, r in rows.items() if k != "alexnet_pre")
    md = (workdir / "tables/generated/smoke/table1.md").read_text()
    assert "| AlexNet_pre (supervised pretraining) | - |" in md
    # the claim against the missing row is listed as not tested, with the reason
    _harness(["claims", "--preset", "smoke", "--dataset", "ucf101", "--data-root", str(ucf)], workdir, monkeypatch)
    claims = json.loads((workdir / "tables/generated/smoke/claims.json").read_text())
    assert any(u["claim"] == "G_l+G_r beats alexnet_pre" for u in claims["untested"])

    weights = tmp_path / "alexnet.pth"          # a plain state_dict file, as torchvision ships
    torch.save(build_model("alexnet", 1000, "smoke").state_dict(), weights)
    _harness([*args, "--pretrained-weights", str(weights)], workdir, monkeypatch)
    rows = {r["key"]: r for r in json.loads((workdir / "tables/generated/smoke/table1.json").read_text())["rows"]}
    assert rows["alexnet_pre"]["ours"] is not None
    final = json.loads((__import__("pathlib").Path(rows["alexnet_pre"]["runs"][0]) / "final.json").read_text())
    assert final["init"] == "file" and final["dataset"] == "ucf101"
