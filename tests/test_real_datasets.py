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
