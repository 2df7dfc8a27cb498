"""The dataset-agnostic video index: every dataset reader returns a :class:`VideoIndex`.

``open_index(dataset, root, split, subset)`` finds the split files and videos of UCF101,
HMDB51, CCV or the embedded synthetic benchmark, parses them with :mod:`harness.data.splits`
and checks that every listed video exists (and, with ``verify="open"``, that its container
opens). Downstream code only sees :class:`VideoRecord` rows (path + label or multi-hot
labels) and never needs to know which dataset it reads.

Default layouts under ``root`` (override with ``video_root`` / ``split_root``):

============  =========================================  ===========================================
dataset       split files                                videos
============  =========================================  ===========================================
ucf101        ``ucfTrainTestlist/`` (or ``root``)        ``UCF-101/<Class>/<file>`` (or ``root/...``)
hmdb51        ``testTrainMulti_7030_splits/`` (or root)  ``hmdb51_org/<class>/<file>`` (or ``videos/``, root)
ccv           ``root`` ({train,test}VidID/Label.txt)     ``videos/<id>.<ext>`` (or ``root/<id>.<ext>``)
synth         ``ucfTrainTestlist/``                      ``UCF-101/<Class>/<file>``
============  =========================================  ===========================================

Subsets: ``train`` / ``test`` (every dataset), ``unused`` (HMDB51 tag 0), ``unlabeled``
(``root/unlabeled.txt``: one path per line, relative to ``root``, or to ``root/unlabeled``),
``disjoint`` (synth only: ``root/disjoint/classInd.txt`` + ``trainlist0<split>.txt``, videos
under ``root/disjoint``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from harness.data import splits
from harness.data.splits import Entry, SplitError
from harness.data.video import VideoError
from harness.errors import HarnessError
from harness.provenance import fingerprint as _fingerprint

DATASETS = ("ucf101", "hmdb51", "ccv", "synth")
SUBSETS = ("train", "test", "unused", "unlabeled", "disjoint")
# CCV ids come without an extension; the release is mostly mp4 (YouTube downloads).
CCV_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".flv", ".mov", ".3gp")


class MissingVideoWarning(UserWarning):
    """Emitted once per index when ``on_missing="skip"`` dropped listed videos."""


@dataclass(frozen=True)
class VideoRecord:
    """One video: ``video_id`` (its path relative to the video folder without extension, or
    the CCV id; unique within an index), absolute ``path``, ``label`` (0-based class for
    single-label sets, else None), ``labels`` (multi-hot tuple for multi-label sets, else None)
    and the ``dataset`` name."""

    video_id: str
    path: Path
    label: int | None
    labels: tuple[int, ...] | None
    dataset: str


class VideoIndex:
    """An ordered list of :class:`VideoRecord` with the class names of its dataset.

    Attributes: ``records``, ``classes`` (tuple of names; empty for unlabeled lists),
    ``num_classes``, ``multilabel``, ``dataset``, ``rel_paths`` and ``sizes`` (bytes; both
    aligned with ``records``, used by :meth:`fingerprint`), ``skipped`` (``(path, reason)`` of
    videos dropped with ``on_missing="skip"``) and ``source`` (the split/list files read).
    """

    def __init__(self, records: Sequence[VideoRecord], classes: Sequence[str], dataset: str,
                 multilabel: bool = False, rel_paths: Sequence[str] | None = None,
                 sizes: Sequence[int] | None = None, skipped: Sequence[tuple[str, str]] = (),
                 source: Sequence[str] = ()):
        self.records = list(records)
        self.classes = tuple(classes)
        self.dataset = dataset
        self.multilabel = bool(multilabel)
        self.rel_paths = list(rel_paths) if rel_paths is not None else [r.video_id for r in self.records]
        self.sizes = list(sizes) if sizes is not None else [_size(r.path) for r in self.records]
        self.skipped = list(skipped)
        self.source = list(source)
        if not (len(self.rel_paths) == len(self.sizes) == len(self.records)):
            raise ValueError("records, rel_paths and sizes must have the same length")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labeled(self) -> bool:
        return self.num_classes > 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> VideoRecord:
        return self.records[i]

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        kind = "multi-label" if self.multilabel else ("single-label" if self.labeled else "unlabeled")
        return f"VideoIndex({self.dataset}, {len(self)} videos, {self.num_classes} classes, {kind})"

    def targets(self) -> np.ndarray:
        """Labels as an array: ``(N,)`` int64 class indices for single-label sets, ``(N, C)``
        uint8 multi-hot for multi-label sets, ``(N,)`` of -1 for unlabeled lists."""
        if self.multilabel:
            return np.array([r.labels for r in self.records], dtype=np.uint8).reshape(len(self), self.num_classes)
        return np.array([-1 if r.label is None else r.label for r in self.records], dtype=np.int64)

    def fingerprint(self) -> str:
        """sha256 of the dataset name, classes, and each video's relative path, label(s) and
        file size. Cheap (no video content is read) yet changes when a video is added,
        removed, relabelled or replaced by a file of another size."""
        items = [[rel, r.label, list(r.labels) if r.labels is not None else None, size]
                 for rel, r, size in zip(self.rel_paths, self.records, self.sizes)]
        return _fingerprint({"dataset": self.dataset, "classes": list(self.classes),
                             "multilabel": self.multilabel, "items": items})

    def select(self, indices: Sequence[int]) -> "VideoIndex":
        """A new index with the records at ``indices`` (same classes), e.g. a held-out part."""
        idx = [int(i) for i in indices]
        return VideoIndex([self.records[i] for i in idx], self.classes, self.dataset, self.multilabel,
                          [self.rel_paths[i] for i in idx], [self.sizes[i] for i in idx],
                          self.skipped, self.source)

    def without_labels(self) -> "VideoIndex":
        """The same videos with labels dropped (self-supervised training on a labeled split)."""
        recs = [VideoRecord(r.video_id, r.path, None, None, r.dataset) for r in self.records]
        return VideoIndex(recs, (), self.dataset, False, self.rel_paths, self.sizes, self.skipped, self.source)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def probe_video(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a usable video (missing, empty, container will not open, no video
    stream), or None when it looks fine. Opens the container only; does not decode frames."""
    path = Path(path)
    if not path.is_file():
        return "video file not found"
    if path.stat().st_size == 0:
        return "video file is empty"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "file has no video stream"
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return f"cannot open video ({exc.__class__.__name__})"
    return None


def _resolve(rel: str, bases: Sequence[Path], extensions: Sequence[str]) -> Path:
    """First existing ``base/rel[+ext]``; the first candidate when none exists (for the error)."""
    candidates = []
    for base in bases:
        candidates.append(base / rel)
        if extensions and not Path(rel).suffix:
            candidates.extend(base / (rel + ext) for ext in extensions)
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def build_index(entries: Sequence[Entry], classes: Sequence[str], dataset: str, bases: Sequence[Path],
                multilabel: bool = False, on_missing: str = "error", verify: str = "exists",
                extensions: Sequence[str] = (), source: Sequence[Path] = ()) -> VideoIndex:
    """Turn parsed split entries into a :class:`VideoIndex`, checking each video file.

    ``bases`` are the folders a relative path is looked up in (first hit wins). A missing or
    empty file (and, with ``verify="open"``, one whose container does not open) raises
    :class:`~harness.data.video.VideoError` naming the video and the split line, or with
    ``on_missing="skip"`` is dropped, recorded in ``index.skipped`` and reported by one
    :class:`MissingVideoWarning`.
    """
    if on_missing not in ("error", "skip"):
        raise HarnessError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if verify not in ("exists", "open"):
        raise HarnessError(f"verify must be 'exists' or 'open', got {verify!r}")
    bases = [Path(b) for b in bases]
    records, rels, sizes, skipped = [], [], [], []
    for e in entries:
        # absolute, not resolve(): symlinked video folders keep their dataset-relative paths
        path = Path(os.path.abspath(_resolve(e.rel, bases, extensions)))
        if not path.is_file():
            reason = "video file not found"
        elif path.stat().st_size == 0:
            reason = "video file is empty"
        else:
            reason = probe_video(path) if verify == "open" else None
        if reason is not None:
            if on_missing == "error":
                raise VideoError(f"{path}: {reason} (listed at {e.source}:{e.line})")
            skipped.append((str(path), reason))
            continue
        rel = _relative(path, bases[0], e.rel)
        video_id = e.rel.rsplit(".", 1)[0] if Path(e.rel).suffix else e.rel
        records.append(VideoRecord(video_id, path, e.label, e.labels, dataset))
        rels.append(rel)
        sizes.append(path.stat().st_size)
    where = str(source[-1]) if source else str(bases[0])
    if skipped:
        warnings.warn(f"{where}: skipped {len(skipped)} of {len(entries)} listed videos "
                      f"(first: {skipped[0][0]}: {skipped[0][1]})", MissingVideoWarning, stacklevel=3)
    if not records:
        raise VideoError(f"{where}: none of the {len(entries)} listed videos is usable "
                         f"(first: {skipped[0][0]}: {skipped[0][1]})")
    return VideoIndex(records, classes, dataset, multilabel, rels, sizes, skipped, [str(s) for s in source])


def _relative(path: Path, base: Path, fallback: str) -> str:
    """``path`` relative to ``base`` in POSIX form (the fingerprint must not depend on where
    the dataset is mounted); ``fallback`` when it lies elsewhere."""
    try:
        return path.relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return fallback


def _first_dir(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def open_index(dataset: str, root: str | os.PathLike, split: int = 1, subset: str = "train",
               on_missing: str = "error", video_root: str | os.PathLike | None = None,
               split_root: str | os.PathLike | None = None, verify: str = "exists") -> VideoIndex:
    """The :class:`VideoIndex` of ``dataset`` ("ucf101" | "hmdb51" | "ccv" | "synth") under
    ``root``, for official ``split`` (1..3; CCV has one split and ignores it) and ``subset``
    ("train" | "test" | "unused" (HMDB51) | "unlabeled" | "disjoint" (synth)).

    ``on_missing="skip"`` drops missing/unreadable videos with one warning instead of failing;
    ``verify="open"`` also opens every container while indexing (slower; decode errors
    otherwise surface, naming the file, when frames are read).
    """
    if dataset not in DATASETS:
        raise HarnessError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if subset not in SUBSETS:
        raise HarnessError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    if not isinstance(split, (int, np.integer)) or not 1 <= int(split) <= 9:
        raise HarnessError(f"split must be an integer 1..3, got {split!r}")
    split = int(split)
    root = Path(root)
    if not root.is_dir():
        raise SplitError(f"{root}: dataset root folder not found")
    vroot = Path(video_root) if video_root is not None else None
    sroot = Path(split_root) if split_root is not None else None
    kw = dict(on_missing=on_missing, verify=verify)

    if subset == "unlabeled":
        list_file = (sroot or root) / "unlabeled.txt"
        entries = splits.parse_path_list(list_file)
        bases = [vroot] if vroot is not None else [root, root / "unlabeled"]
        return build_index(entries, (), dataset, bases, source=[list_file], **kw)

    if subset == "disjoint":
        if dataset != "synth":
            raise HarnessError(f"subset 'disjoint' exists only for dataset 'synth', not {dataset!r}")
        droot = sroot or root / "disjoint"
        classes = splits.read_class_ind(droot / "classInd.txt")
        list_file = droot / f"trainlist{split:02d}.txt"
        entries = splits.parse_ucf_list(list_file, classes, has_label=True)
        return build_index(entries, classes, dataset, [vroot or root / "disjoint"],
                           source=[droot / "classInd.txt", list_file], **kw)

    if dataset in ("ucf101", "synth"):
        if subset not in ("train", "test"):
            raise HarnessError(f"subset {subset!r} does not exist for {dataset}; use train, test or unlabeled")
        if dataset == "synth":
            sroot, vroot = sroot or root / "ucfTrainTestlist", vroot or root / "UCF-101"
        else:
            sroot = sroot or _first_dir(root / "ucfTrainTestlist",
                                        root / "UCF101TrainTestSplits-RecognitionTask" / "ucfTrainTestlist", root)
            vroot = vroot or _first_dir(root / "UCF-101", root / "UCF101" / "UCF-101", root)
        classes, entries = splits.parse_ucf101(sroot, split, subset)
        return build_index(entries, classes, dataset, [vroot], source=list(splits.ucf_split_files(sroot, split, subset)),
                           **kw)

    if dataset == "hmdb51":
        sroot = sroot or _first_dir(root / "testTrainMulti_7030_splits", root / "splits", root)
        vroot = vroot or _first_dir(root / "hmdb51_org", root / "videos", root)
        classes, entries = splits.parse_hmdb51(sroot, split, subset)
        return build_index(entries, classes, dataset, [vroot], source=[sroot], **kw)

    # ccv
    if subset not in ("train", "test"):
        raise HarnessError(f"subset {subset!r} does not exist for ccv; use train, test or unlabeled")
    sroot = sroot or root
    vroot = vroot or _first_dir(root / "videos", root)
    classes, entries = splits.parse_ccv(sroot, subset)
    return build_index(entries, classes, dataset, [vroot], multilabel=True, extensions=CCV_EXTENSIONS,
                       source=[sroot / f for f in splits.CCV_FILES[subset]], **kw)


def unlabeled_index(dataset: str, root: str | os.PathLike, split: int = 1,
                    unlabeled: str | os.PathLike | None = None) -> VideoIndex:
    """The videos self-supervised pretraining reads: the list ``unlabeled`` if given (one path
    per line, relative to ``root`` or to the list's folder), else ``root/unlabeled.txt`` when it
    exists (the synthetic set has one), else the training split of ``dataset`` with its labels
    dropped (no real release ships an unlabeled list). The test split is never read."""
    root = Path(root)
    if unlabeled is not None:
        path = Path(unlabeled)
        if not path.is_file():
            raise HarnessError(f"{path}: --unlabeled list not found")
        return build_index(splits.parse_path_list(path), (), dataset, [root, path.parent], source=[path])
    if dataset == "synth" or (root / "unlabeled.txt").is_file():
        return open_index(dataset, root, split, "unlabeled")
    return open_index(dataset, root, split, "train").without_labels()


def check_trainable(train: VideoIndex, root: str | os.PathLike, split: int = 1) -> None:
    """Refuse a labeled training split with a class that has no video: its classifier row would
    never learn and its class prototype (G_l's ground cost) would not exist, and accuracy would
    be reported against classes nothing was trained on."""
    y = train.targets()
    counts = y.sum(0) if train.multilabel else np.bincount(y[y >= 0], minlength=train.num_classes)
    missing = [c for c, n in zip(train.classes, counts) if n == 0]
    if not missing:
        return
    fix = ("CCV's 20 classes are fixed: the training label matrix must tag each at least once"
           if train.dataset == "ccv" else "list only the classes you train on in classInd.txt")
    raise HarnessError(f"{root}: {len(missing)} of {train.num_classes} classes have no training video in split {split} "
                       f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); {fix}")
