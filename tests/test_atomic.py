"""The one atomic writer and the one data-root resolver every step uses."""

import pytest

from harness.atomic import atomic_path, write_text_atomic
from harness.data.roots import DataRootError, data_root


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sub" / "f.json"
    write_text_atomic(target, "old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["f.json"]
    with atomic_path(target, durable=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


def test_data_root_names_what_is_missing(tmp_path):
    with pytest.raises(DataRootError, match=f"{tmp_path / 'nope'}: --data-root folder not found"):
        data_root("tiny", tmp_path / "nope")
    with pytest.raises(DataRootError, match="unlabeled.txt: not found; --data-root must hold unlabeled.txt"):
        data_root("tiny", tmp_path, needs="unlabeled.txt")
    with pytest.raises(DataRootError, match="--data-root is required for dataset 'ucf101' with preset 'tiny'"):
        data_root("tiny", None, "ucf101")
    with pytest.raises(DataRootError, match="--data-root is required for dataset 'synth' with preset 'paper'"):
        data_root("paper")
    with pytest.raises(DataRootError, match="unknown dataset 'kinetics'"):
        data_root("tiny", tmp_path, "kinetics")
    assert data_root("tiny", tmp_path) == tmp_path


def test_torch_reporting_a_full_disk_is_a_write_error_naming_the_file(tmp_path, monkeypatch):
    """torch's own writer says only "file write failed"; with the folder's free space at zero
    that is "no space left on device", naming the target, and no temporary is left."""
    import os

    import pytest
    import torch

    from harness.checkpoints import save_atomic
    from harness.errors import WriteError

    def failing_save(obj, f, *args, **kwargs):
        open(f, "wb").write(b"PK half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0; "
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    with pytest.raises(WriteError, match="state.pt: no space left on device"):
        save_atomic({"x": 1}, tmp_path / "state.pt")
    assert list(tmp_path.iterdir()) == []
