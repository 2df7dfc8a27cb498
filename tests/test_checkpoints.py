import pytest
import torch

from harness.checkpoints import load_verified, save_atomic, weights_sha256
from harness.errors import HarnessError


def _ckpt(tmp_path, **extra):
    sd = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    path = tmp_path / "c.pt"
    save_atomic({"backbone": sd, "arch": "alexnet", "weights_sha256": weights_sha256(sd), **extra}, path)
    return path, sd


def test_load_verified_returns_the_checkpoint_when_weights_match(tmp_path):
    path, sd = _ckpt(tmp_path)
    ckpt = load_verified(path, HarnessError, "pretraining checkpoint", "backbone", ("arch",))
    assert torch.equal(ckpt["backbone"]["w"], sd["w"]) and not (tmp_path / "c.pt.tmp").exists()


def test_edited_weights_missing_keys_and_bad_files_are_one_line_errors(tmp_path):
    path, sd = _ckpt(tmp_path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["backbone"]["w"][0, 0] += 1          # weights no longer match the recorded hash
    torch.save(ckpt, path)
    with pytest.raises(HarnessError, match=r"c\.pt: weights do not match their recorded sha256"):
        load_verified(path, HarnessError, "pretraining checkpoint", "backbone", ("arch",))
    load_verified(path, HarnessError, "pretraining checkpoint", "backbone", ("arch",), verify=False)
    with pytest.raises(HarnessError, match=r"c\.pt: not a fine-tuned checkpoint \(no state_dict/num_classes\)"):
        load_verified(path, HarnessError, "fine-tuned checkpoint", "state_dict", ("num_classes",))
    with pytest.raises(HarnessError, match=r"nope\.pt: pretraining checkpoint not found"):
        load_verified(tmp_path / "nope.pt", HarnessError, "pretraining checkpoint", "backbone")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(HarnessError, match=r"junk\.pt: cannot read as a pretraining checkpoint"):
        load_verified(tmp_path / "junk.pt", HarnessError, "pretraining checkpoint", "backbone")
