"""Parsers for the official split files of UCF101, HMDB51 and CCV, and for plain path lists.

Each parser reads text only (it never touches the videos) and returns :class:`Entry` rows:
a path relative to the dataset's video folder plus the label(s) and where the row came from
(file and line), so that the index built on top can name the exact line of a bad entry.
Labels are 0-based class indices everywhere in the harness.

Official formats handled here:

- UCF101 (``ucfTrainTestlist/``): ``classInd.txt`` lines ``"1 ApplyEyeMakeup"`` (1-based);
  ``trainlist0{1,2,3}.txt`` lines ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"``;
  ``testlist0{1,2,3}.txt`` lines ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"`` (label
  from the class folder). The official files have CRLF line endings; both are accepted.
- HMDB51 (``testTrainMulti_7030_splits/``): one file per class and split,
  ``<class>_test_split{1,2,3}.txt``, lines ``"<video file name> <tag>"`` with tag 1 = train,
  2 = test, 0 = unused; the video lives at ``<video_root>/<class>/<file>``. Class indices
  follow the sorted class names.
- CCV: ``trainVidID.txt`` / ``testVidID.txt`` (one video id per line) and ``trainLabel.txt`` /
  ``testLabel.txt`` (an N x 20 matrix of 0/1 as whitespace-separated text, row i belonging
  to the i-th listed id). These are the file names of the official CCV release and the
  defaults here; other names can be passed.
- Path lists (e.g. ``unlabeled.txt`` of the synthetic benchmark): one relative path per line.

Blank lines are ignored in every format. There is no comment syntax: real HMDB51 file
names may start with ``#`` (e.g. ``#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError


class SplitError(HarnessError):
    """A split or list file that is missing or malformed; the message names the file (and line)."""


class UnknownClassError(SplitError):
    """A split entry whose class is not in the class list; names the file and line."""


# The 20 CCV categories in the column order of the official label matrices.
CCV_CLASSES = (
    "Basketball", "Baseball", "Soccer", "IceSkating", "Skiing", "Swimming", "Biking", "Cat",
    "Dog", "Bird", "Graduation", "Birthday", "WeddingReception", "WeddingCeremony",
    "WeddingDance", "MusicPerformance", "NonMusicPerformance", "Parade", "Beach", "Playground",
)

CCV_FILES = {
    "train": ("trainVidID.txt", "trainLabel.txt"),
    "test": ("testVidID.txt", "testLabel.txt"),
}

HMDB_TAGS = {"train": "1", "test": "2", "unused": "0"}


@dataclass(frozen=True)
class Entry:
    """One parsed row: ``rel`` path (relative to the video folder; for CCV the bare id),
    ``label`` (0-based, single-label), ``labels`` (multi-hot tuple, multi-label), and the
    ``source`` file and 1-based ``line`` it came from."""

    rel: str
    label: int | None
    labels: tuple[int, ...] | None
    source: Path
    line: int


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped text) of the non-blank lines."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SplitError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise SplitError(f"{path}: cannot read split file ({exc.strerror})") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line:
            yield number, line


def _bad(path: Path, line: int, problem: str) -> SplitError:
    return SplitError(f"{path}:{line}: {problem}")


def _check_duplicates(entries: list[Entry]) -> list[Entry]:
    seen: dict[str, int] = {}
    for e in entries:
        if e.rel in seen:
            raise _bad(e.source, e.line, f"duplicate entry {e.rel!r} (first at line {seen[e.rel]})")
        seen[e.rel] = e.line
    return entries


# ---- UCF101 ------------------------------------------------------------------------------

def read_class_ind(path: str | Path) -> tuple[str, ...]:
    """``classInd.txt`` -> class names ordered by their 1-based index (which must be 1..N)."""
    path = Path(path)
    by_index: dict[int, str] = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise _bad(path, number, f"expected '<index> <ClassName>', got {line!r}")
        idx, name = int(parts[0]), parts[1]
        if idx in by_index:
            raise _bad(path, number, f"class index {idx} appears twice")
        if name in by_index.values():
            raise _bad(path, number, f"class name {name!r} appears twice")
        by_index[idx] = name
    if not by_index:
        raise SplitError(f"{path}: class list is empty")
    if sorted(by_index) != list(range(1, len(by_index) + 1)):
        raise SplitError(f"{path}: class indices must be 1..{len(by_index)} without gaps")
    return tuple(by_index[i] for i in range(1, len(by_index) + 1))


def _ucf_class_of(path: Path, number: int, rel: str, classes: tuple[str, ...]) -> int:
    if "/" not in rel:
        raise _bad(path, number, f"expected '<Class>/<video file>', got {rel!r}")
    folder = rel.split("/", 1)[0]
    try:
        return classes.index(folder)
    except ValueError:
        raise UnknownClassError(f"{path}:{number}: class {folder!r} is not in classInd.txt") from None


def parse_ucf_list(path: str | Path, classes: tuple[str, ...], has_label: bool) -> list[Entry]:
    """A UCF101 ``trainlist0k.txt`` (``has_label=True``: ``"Class/file.avi <1-based index>"``)
    or ``testlist0k.txt`` (``has_label=False``: ``"Class/file.avi"``, label from the folder).

    For a train list the index must agree with the class folder. A test list line that also
    carries an index is accepted when the index agrees.
    """
    path = Path(path)
    entries = []
    for number, line in _lines(path):
        parts = line.split()
        if has_label and len(parts) != 2:
            raise _bad(path, number, f"expected '<Class>/<video> <class index>', got {line!r}")
        if not has_label and len(parts) not in (1, 2):
            raise _bad(path, number, f"expected '<Class>/<video>', got {line!r}")
        rel = parts[0].replace("\\", "/")
        label = _ucf_class_of(path, number, rel, classes)
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise _bad(path, number, f"class index {parts[1]!r} is not a positive integer")
            given = int(parts[1])
            if not 1 <= given <= len(classes):
                raise UnknownClassError(f"{path}:{number}: class index {given} is not in classInd.txt "
                                        f"(1..{len(classes)})")
            if given - 1 != label:
                raise _bad(path, number, f"class index {given} ({classes[given - 1]}) disagrees with "
                                         f"the folder {rel.split('/', 1)[0]!r}")
        entries.append(Entry(rel, label, None, path, number))
    if not entries:
        raise SplitError(f"{path}: split file lists no videos")
    return _check_duplicates(entries)


def ucf_split_files(split_root: str | Path, split: int, subset: str) -> tuple[Path, Path]:
    """(classInd.txt, the train or test list of ``split``) under ``split_root``."""
    split_root = Path(split_root)
    if subset not in ("train", "test"):
        raise SplitError(f"{split_root}: subset must be 'train' or 'test' for a UCF101 split, got {subset!r}")
    return split_root / "classInd.txt", split_root / f"{subset}list{split:02d}.txt"


def parse_ucf101(split_root: str | Path, split: int, subset: str) -> tuple[tuple[str, ...], list[Entry]]:
    """Classes and entries of UCF101 ``split`` (1..3) ``subset`` ("train" | "test")."""
    class_file, list_file = ucf_split_files(split_root, split, subset)
    classes = read_class_ind(class_file)
    return classes, parse_ucf_list(list_file, classes, has_label=(subset == "train"))


# ---- HMDB51 ------------------------------------------------------------------------------

_HMDB_NAME = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")


def hmdb_classes(split_root: str | Path, split: int) -> tuple[str, ...]:
    """Sorted class names that have a ``<class>_test_split<split>.txt`` file."""
    split_root = Path(split_root)
    if not split_root.is_dir():
        raise SplitError(f"{split_root}: HMDB51 split folder not found")
    classes = []
    for f in split_root.iterdir():
        m = _HMDB_NAME.match(f.name)
        if m and int(m.group("split")) == split:
            classes.append(m.group("cls"))
    if not classes:
        raise SplitError(f"{split_root}: no HMDB51 split files '<class>_test_split{split}.txt' found")
    return tuple(sorted(classes))


def parse_hmdb51(split_root: str | Path, split: int, subset: str) -> tuple[tuple[str, ...], list[Entry]]:
    """Classes and entries of HMDB51 ``split`` (1..3) ``subset`` ("train" tag 1, "test" tag 2,
    "unused" tag 0). Entry paths are ``<class>/<file>``."""
    if subset not in HMDB_TAGS:
        raise SplitError(f"{split_root}: subset must be one of {', '.join(HMDB_TAGS)} for HMDB51, got {subset!r}")
    want = HMDB_TAGS[subset]
    classes = hmdb_classes(split_root, split)
    entries = []
    for label, cls in enumerate(classes):
        path = Path(split_root) / f"{cls}_test_split{split}.txt"
        for number, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise _bad(path, number, f"expected '<video file> <tag 0|1|2>', got {line!r}")
            if parts[1] == want:
                entries.append(Entry(f"{cls}/{parts[0]}", label, None, path, number))
    if not entries:
        raise SplitError(f"{split_root}: HMDB51 split {split} has no '{subset}' videos (tag {want})")
    return classes, _check_duplicates(entries)


# ---- CCV ---------------------------------------------------------------------------------

def parse_ccv(split_root: str | Path, subset: str, ids_file: str | None = None, labels_file: str | None = None,
              classes: tuple[str, ...] = CCV_CLASSES) -> tuple[tuple[str, ...], list[Entry]]:
    """Classes and entries of CCV ``subset`` ("train" | "test"): ids from ``ids_file`` and
    the multi-hot rows of ``labels_file`` (defaults: the official ``{train,test}VidID.txt`` and
    ``{train,test}Label.txt`` under ``split_root``). Rows must be 0/1 with ``len(classes)``
    columns, and there must be exactly one row per id."""
    split_root = Path(split_root)
    if subset not in CCV_FILES:
        raise SplitError(f"{split_root}: subset must be 'train' or 'test' for CCV, got {subset!r}")
    ids_path = split_root / (ids_file or CCV_FILES[subset][0])
    lab_path = split_root / (labels_file or CCV_FILES[subset][1])
    ids = []
    for number, line in _lines(ids_path):
        if len(line.split()) != 1:
            raise _bad(ids_path, number, f"expected one video id per line, got {line!r}")
        ids.append((number, line))
    rows = []
    for number, line in _lines(lab_path):
        parts = line.split()
        if len(parts) != len(classes):
            raise _bad(lab_path, number, f"expected {len(classes)} labels (0/1), got {len(parts)}")
        try:
            values = tuple(int(float(p)) for p in parts)
        except ValueError:
            raise _bad(lab_path, number, f"labels must be 0 or 1, got {line!r}") from None
        if any(v not in (0, 1) or float(p) != v for v, p in zip(values, parts)):
            raise _bad(lab_path, number, f"labels must be 0 or 1, got {line!r}")
        rows.append(values)
    if len(rows) != len(ids):
        raise SplitError(f"{lab_path}: {len(rows)} label rows for {len(ids)} ids in {ids_path.name}")
    if not ids:
        raise SplitError(f"{ids_path}: split file lists no videos")
    entries = [Entry(vid, None, row, ids_path, number) for (number, vid), row in zip(ids, rows)]
    return tuple(classes), _check_duplicates(entries)


# ---- plain lists -------------------------------------------------------------------------

def parse_path_list(path: str | Path) -> list[Entry]:
    """One relative video path per line, no labels (e.g. ``unlabeled.txt``)."""
    path = Path(path)
    entries = [Entry(line.replace("\\", "/"), None, None, path, number) for number, line in _lines(path)]
    if not entries:
        raise SplitError(f"{path}: list file lists no videos")
    return _check_duplicates(entries)
