"""Fine-tuning end to end on the smoke synthetic set: files, hashes, reuse, exact resume,
init loading, PredNet clips, and video-level scores against hand computations."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch

from harness.finetune.data import _frame_dataset
from torch import nn

import harness.finetune as ft
from harness.data.synth import SYNTH_PRESETS, generate


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("ftdata") / "synth-smoke"
    generate(out, SYNTH_PRESETS["smoke"], seed=0, progress=False)
    return out


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _sha_state(sd) -> str:
    """Independent re-statement of the weights hash: key|dtype|shape| then the raw bytes, keys sorted."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _naive_video_scores(model, root, test_frames, clip_length, size):
    """Video scores by hand: decode each test video, its evenly spaced frames (clips ending
    there), the centre crop, one forward per frame, mean of softmaxes; and the accuracy of
    their arg-max."""
    from harness.data.index import open_index
    from harness.data.transforms import apply_view, center_view, to_tensor
    from harness.data.video import evenly_spaced, read_video

    index = open_index("synth", root, 1, "test")
    model.eval()
    correct, scores = 0, []
    with torch.no_grad():
        for rec in index:
            frames = read_video(rec.path)
            view = center_view(0.875, frames.shape[2] / frames.shape[1])
            probs = []
            for f in evenly_spaced(len(frames), test_frames):
                ids = [max(int(f) - clip_length + 1 + t, 0) for t in range(clip_length)]
                x = to_tensor(apply_view(frames[ids], view, size))
                x = x[None] if clip_length > 1 else x[:1]
                probs.append(torch.softmax(model(x), 1)[0].double().numpy())
            scores.append(np.mean(probs, 0))
            correct += int(scores[-1].argmax() == rec.label)
    return np.array(scores), correct / len(index)


def _test_index(root):
    from harness.data.index import open_index

    return open_index("synth", root, 1, "test")


def test_random_init_end_to_end(root, runs):
    run = ft.finetune("alexnet", "random", "smoke", seed=0, data_root=root, progress=False)
    assert run.path.parent == runs / "finetune" / "smoke"
    final = run.final()
    ckpt = torch.load(run.path / "checkpoint.pt", map_location="cpu", weights_only=False)
    # the recorded hash is the hash of the saved weights, and final.json hashes the file
    assert ckpt["weights_sha256"] == _sha_state(ckpt["state_dict"]) == final["weights_sha256"]
    assert final["checkpoint_sha256"] == hashlib.sha256((run.path / "checkpoint.pt").read_bytes()).hexdigest()
    assert ckpt["arch"] == "alexnet" and ckpt["num_classes"] == 4 and len(ckpt["classes"]) == 4
    assert ckpt["seed"] == 0 and ckpt["code_version"] and ckpt["config"]["init"] == "random"
    assert not (run.path / "state.pt").exists() and (run.path / "run.json").is_file()
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    cfg = ft.finetune_config("alexnet", "smoke")
    assert [r["epoch"] for r in rows] == list(range(1, cfg.epochs + 1))
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["train_accuracy"] <= 1 for r in rows)
    assert rows[-1]["test_value"] == final["value"] and final["metric"] == "accuracy"
    assert final["chance"] == 0.25 and final["per_split"] == {"1": final["value"]}
    assert final["train_videos"] == 72 and final["test_videos"] == 28     # groups 1..7 tested in split 1
    # the reported metric and the video scores, recomputed by a plain loop over the saved model
    model, _ = ft.load_finetuned(run.path / "checkpoint.pt")
    want, acc = _naive_video_scores(model, root, cfg.test_frames, 1, 32)
    assert final["value"] == pytest.approx(acc)
    test_ds = _frame_dataset(_test_index(root), cfg, False, 32, 1, seed=0)
    # videos differ by ~1e-4 at this stage of training: the tolerance must be far below that
    assert want.std(0).min() > 2e-5
    assert np.allclose(ft.predict_videos(model, test_ds, 7, "cpu"), want, rtol=0, atol=1e-6)


def test_finished_run_is_reused(root, monkeypatch):
    first = ft.finetune("alexnet", "random", "smoke", seed=1, data_root=root, progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in first.path.iterdir()}

    def boom(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("harness.finetune.loop._train", boom)
    again = ft.finetune("alexnet", "random", "smoke", seed=1, data_root=root, progress=False)
    assert again.path == first.path
    assert {p: p.stat().st_mtime_ns for p in again.path.iterdir()} == stamp
    # another seed is another config: a new folder (and _train is called)
    with pytest.raises(AssertionError, match="trained again"):
        ft.finetune("alexnet", "random", "smoke", seed=2, data_root=root, progress=False)


def test_resume_equals_uninterrupted_run(root, tmp_path, monkeypatch):
    over = {"epochs": 3, "eval_every": 2}

    def kill_after_first(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        ft.finetune("vgg19_teacher", "random", "smoke", seed=3, data_root=root, overrides=over, progress=False,
                    on_epoch_end=kill_after_first)
    (folder,) = (tmp_path / "a" / "finetune" / "smoke").iterdir()
    assert (folder / "state.pt").is_file() and not (folder / "final.json").exists()
    seen = []
    a = ft.finetune("vgg19_teacher", "random", "smoke", seed=3, data_root=root, overrides=over, progress=False,
                    on_epoch_end=lambda e, r: seen.append(e))
    assert a.path == folder and seen == [2, 3]          # it resumed after epoch 1

    monkeypatch.setenv("HARNESS_RUNS", str(tmp_path / "b"))
    b = ft.finetune("vgg19_teacher", "random", "smoke", seed=3, data_root=root, overrides=over, progress=False)
    sa = torch.load(a.path / "checkpoint.pt", weights_only=False)["state_dict"]
    sb = torch.load(b.path / "checkpoint.pt", weights_only=False)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    la = [json.loads(x) for x in (a.path / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b.path / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(la) == strip(lb) and len(la) == 3
    assert a.final()["value"] == b.final()["value"]


def _fake_pretext_checkpoint(path, arch, preset, seed=5):
    """A checkpoint in harness.pretext.train's format, with weights unlike any fresh init."""
    from harness.models import build_model
    from harness.pretext.train import weights_sha256

    torch.manual_seed(seed)
    m = build_model(arch, 1, preset)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    torch.save({"backbone": sd, "arch": arch, "preset": preset, "model_preset": preset, "task": "motion",
                "config": {}, "config_fingerprint": "x", "seed": seed, "code_version": "test",
                "weights_sha256": weights_sha256(sd), "head": {"fc.weight": torch.zeros(2, 3)}, "finished": True},
               path)
    return sd


def test_loader_workers_do_not_change_the_result(root):
    # items are seeded by (seed, epoch, video); a DataLoader seeding its workers from the
    # global torch RNG used to shift the dropout stream, so num_workers changed the weights
    runs = [ft.finetune("alexnet", "random", "smoke", seed=4, data_root=root, progress=False,
                        overrides={"epochs": 2, "num_workers": n}) for n in (0, 1)]
    a, b = (torch.load(r.path / "checkpoint.pt", weights_only=False)["state_dict"] for r in runs)
    assert runs[0].path != runs[1].path
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretext_init_loads_backbone(root, tmp_path, monkeypatch):
    path = tmp_path / "pretext.pt"
    sd = _fake_pretext_checkpoint(path, "vgg19_teacher", "smoke")
    seen = {}
    from harness.finetune import loop

    real_train = loop._train

    def spy(run, model, *a, **k):
        seen["start"] = {k2: v.detach().clone() for k2, v in model.state_dict().items()}
        return real_train(run, model, *a, **k)

    monkeypatch.setattr(loop, "_train", spy)
    run = ft.finetune("vgg19_teacher", "pretext", "smoke", seed=0, data_root=root, checkpoint=path, progress=False)
    start = seen["start"]
    convs = [k for k in sd if k.startswith("features.") and k.endswith("weight")]
    assert convs and all(torch.equal(start[k], sd[k]) for k in convs)         # loaded before any step
    assert not torch.equal(start["classifier.6.weight"][:1], sd["classifier.6.weight"])  # fresh 4-class head
    summary = run.final()["init_summary"]
    skipped = dict((k, r) for k, r in summary["skipped"])
    assert "pretext_head.fc.weight" in skipped and "classifier.6.weight" in skipped
    assert summary["loaded"] == len(sd) - 2 and summary["classifier_reset"]
    # the init source is part of the config: other pretext weights -> another run folder
    _fake_pretext_checkpoint(path, "vgg19_teacher", "smoke", seed=6)
    other = ft.finetune("vgg19_teacher", "pretext", "smoke", seed=0, data_root=root, checkpoint=path,
                        progress=False)
    assert other.path != run.path
    with pytest.raises(ft.FinetuneError, match="not alexnet"):
        ft.finetune("alexnet", "pretext", "smoke", seed=0, data_root=root, checkpoint=path, progress=False)


def test_prednet_trains_on_clips(root, monkeypatch):
    seen = {}
    from harness.finetune import loop

    real_train = loop._train

    def spy(run, model, train_ds, test_ds, *a, **k):
        seen["clip"] = (train_ds.clip_length, test_ds.clip_length, tuple(train_ds[0]["frames"].shape))
        return real_train(run, model, train_ds, test_ds, *a, **k)

    monkeypatch.setattr(loop, "_train", spy)
    run = ft.finetune("prednet", "random", "smoke", seed=0, data_root=root, progress=False)
    assert seen["clip"] == (4, 4, (4, 3, 32, 32))               # smoke PredNet clip_length = 4
    final = run.final()
    assert final["clip_length"] == 4
    model, ckpt = ft.load_finetuned(run.path / "checkpoint.pt")
    assert ckpt["clip_length"] == 4
    cfg = ft.finetune_config("prednet", "smoke")
    want, acc = _naive_video_scores(model, root, cfg.test_frames, 4, 32)
    assert final["value"] == pytest.approx(acc)
    test_ds = _frame_dataset(_test_index(root), cfg, False, 32, 4, seed=0)
    assert want.std(0).min() > 2e-5
    assert np.allclose(ft.predict_videos(model, test_ds, 5, "cpu"), want, rtol=0, atol=1e-6)


class _Table(torch.utils.data.Dataset):
    """Items whose 'frames' are the logits the identity model returns."""

    def __init__(self, logits, videos, n_videos):
        self.logits, self.videos = logits, videos
        self.index = list(range(n_videos))

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        return {"frames": torch.tensor(self.logits[i], dtype=torch.float32), "video": self.videos[i]}


def test_video_scores_average_frame_softmaxes_by_hand():
    logits = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 3.0, 0.0], [-1.0, 0.0, 1.0]]
    videos = [1, 0, 1, 0, 1]
    ds = _Table(logits, videos, 2)
    got = ft.predict_videos(nn.Identity(), ds, batch_size=2, device="cpu")
    soft = lambda z: np.exp(z) / np.exp(z).sum()  # noqa: E731
    want0 = (soft(np.array(logits[1])) + soft(np.array(logits[3]))) / 2
    want1 = (soft(np.array(logits[0])) + soft(np.array(logits[2])) + soft(np.array(logits[4]))) / 3
    assert np.allclose(got, [want0, want1], atol=1e-6)
    # hand values: video 0 = mean of (1, e, 1)/(2+e) and (e^3, e^3, 1)/(2e^3+1)
    e = np.e
    assert np.allclose(got[0, 2], (1 / (2 + e) + 1 / (2 * e**3 + 1)) / 2, atol=1e-6)
    sig = ft.predict_videos(nn.Identity(), ds, batch_size=4, device="cpu", multilabel=True)
    assert np.allclose(sig[1], (1 / (1 + np.exp(-np.array([logits[0], logits[2], logits[4]])))).mean(0), atol=1e-6)


def test_supervised_stage_is_a_reused_run(root, runs):
    run = ft.finetune("alexnet", "supervised", "smoke", seed=0, data_root=root, progress=False)
    final = run.final()
    stage = final["supervised_stage"]["run"]
    assert os.path.dirname(stage) == str(runs / "pretrain-supervised" / "smoke")
    st = json.load(open(os.path.join(stage, "final.json")))
    assert st["test_videos"] == 2 and st["train_videos"] == 6 and st["chance"] == 0.5   # 8 disjoint videos, 2 classes
    skipped = dict((k, r) for k, r in final["init_summary"]["skipped"])
    assert set(skipped) == {"classifier.6.weight", "classifier.6.bias"}    # 2 disjoint vs 4 benchmark classes
    stamp = os.stat(os.path.join(stage, "checkpoint.pt")).st_mtime_ns
    other = ft.finetune("alexnet", "supervised", "smoke", seed=0, data_root=root, overrides={"lr": "0.02"},
                        progress=False)
    assert other.path != run.path and other.final()["supervised_stage"]["run"] == stage
    assert os.stat(os.path.join(stage, "checkpoint.pt")).st_mtime_ns == stamp


def test_all_splits_mean(root):
    run = ft.finetune("alexnet", "random", "smoke", seed=0, data_root=root, split="all",
                      overrides={"epochs": 1}, progress=False)
    final = run.final()
    per = final["per_split"]
    assert sorted(per) == ["1", "2", "3"]
    vals = [json.load(open(os.path.join(final["runs"][s], "final.json")))["value"] for s in ("1", "2", "3")]
    assert list(per.values()) == vals and final["value"] == pytest.approx(np.mean(vals))


def test_bad_requests(root, tmp_path):
    with pytest.raises(ft.FinetuneError, match="needs --checkpoint"):
        ft.finetune("alexnet", "pretext", "smoke", data_root=root, progress=False)
    with pytest.raises(ft.FinetuneError, match="unknown init"):
        ft.finetune("alexnet", "imagenet", "smoke", data_root=root, progress=False)
    with pytest.raises(ft.FinetuneError, match="not found"):
        ft.finetune("alexnet", "file", "smoke", data_root=root, checkpoint=tmp_path / "nope.pth", progress=False)
    with pytest.raises(ft.FinetuneError, match="only used with"):
        ft.finetune("alexnet", "random", "smoke", data_root=root, checkpoint=tmp_path / "x.pth", progress=False)
    with pytest.raises(ft.FinetuneError, match="--data-root is required"):
        ft.finetune("alexnet", "random", "paper", dataset="ucf101", progress=False)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ft.FinetuneError, match="bad.pt"):
        ft.finetune("alexnet", "pretext", "smoke", data_root=root, checkpoint=bad, progress=False)


def test_cli_finetune(root, runs):
    from click.testing import CliRunner

    from harness.cli import main

    res = CliRunner().invoke(main, ["finetune", "--arch", "alexnet", "--init", "random", "--preset", "smoke",
                                    "--data-root", str(root), "--quiet", "--set", "epochs=1"])
    assert res.exit_code == 0, res.output
    assert "video-level accuracy" in res.output and "chance 0.2500" in res.output
    folder = res.output.strip().splitlines()[-1].removeprefix("run: ")
    assert json.load(open(os.path.join(folder, "final.json")))["epochs"] == 1
    res = CliRunner().invoke(main, ["finetune", "--arch", "alexnet", "--init", "pretext", "--preset", "smoke",
                                    "--data-root", str(root), "--quiet"])
    assert res.exit_code == 2 and "error: --init pretext needs --checkpoint" in res.output


@pytest.mark.parametrize("arch", ["vgg19_teacher", "prednet", "alexnet"])
def test_training_step_is_one_step_at_the_presets_shapes_and_leaves_the_rng_alone(arch, monkeypatch):
    """The unit the speed report and `harness teachers` time: each call is one step of the
    preset's optimizer on a batch of the preset's shape, the model is seeded, and the caller's
    torch RNG stream is untouched."""
    built = []
    from harness.finetune import loop

    original = loop._optimizer
    monkeypatch.setattr(loop, "_optimizer", lambda model, cfg: built.append(model) or original(model, cfg))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    step = ft.training_step(arch, "tiny")
    assert torch.equal(torch.get_rng_state(), before)
    (model,) = built
    cfg = ft.finetune_config(arch, "tiny")
    shapes = []
    model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    first = [p.detach().clone() for p in model.parameters()]
    step()
    clip = cfg.clip_length or model.clip_length
    frame = (3, model.input_size, model.input_size)
    assert shapes == [(cfg.batch_size, *frame) if clip == 1 else (cfg.batch_size, clip, *frame)]
    assert any(not torch.equal(a, b) for a, b in zip(first, model.parameters()))
    built.clear()
    ft.training_step(arch, "tiny")  # seeded: the same initial weights every time
    assert all(torch.equal(a, b) for a, b in zip(first, built[0].parameters()))
