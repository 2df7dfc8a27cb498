"""``harness cache-teachers``: run the frozen, fine-tuned teachers once over every clip and
view of the train and test splits, and write one feature store.

Items are (video, frame) pairs, video-major, train split first then test. Each item carries
K augmentation views (normalised crop box + flip). Train views are random resized crops;
test views are fixed crops (view 0 = the centre view the evaluator uses). All teachers see
the same views, and the student later replays them on the stored frames (FKD's idea).
Teacher conv4 maps are average-pooled to the student's conv4 size before storing: that is
the size G_r works at, and it keeps the cache small.

Every random choice is a function of (view_seed, item index), so any chunk can be produced
in any process in any order: kill-and-resume and multi-process runs give identical stores.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import determinism
from harness.cache.schema import prototypes_key, teacher_field, teacher_names, teacher_store_fields
from harness.cache.store import (LAYOUT_VERSION, REBUILD, FeatureStore, ManifestMismatch, StoreError,
                                 suggest_chunk_items, teacher_schema)
from harness.cache.writer import write_store
from harness.checkpoints import load_checkpoint, load_weights
from harness.config import ConfigError, check_bounds, check_choice, keyless_default, resolve, to_dict
from harness.data.index import VideoIndex, check_trainable, open_index
from harness.data.transforms import View, apply_view, center_view, sample_view, to_tensor
from harness.data.screening import SHORT_POLICIES, VideoReport, screen
from harness.data.video import RESIZE_MODES, count_frames, evenly_spaced, read_video
from harness.errors import HarnessError, not_a_folder_error, resumable
from harness.models import MODEL_PRESETS, build_model
from harness.provenance import code_version, sha256_file

TEACHER_TASKS = ("sort", "motion", "track", "predict")


class CacheError(HarnessError):
    pass


@dataclass(frozen=True)
class CacheConfig:
    frame_size: tuple                 # (H, W) frames are decoded and stored at
    frames_per_video_train: int       # evenly spaced frames stored per train video
    frames_per_video_test: int        # evenly spaced frames stored per test video
    views: int                        # K views per item
    view_scale: tuple = (0.5, 1.0)    # random resized crop area range (train views)
    center_scale: float = 0.875       # test view 0: centre crop of this side fraction
    view_seed: int = 0                # seeds the video order and every item's views
    chunk_items: int = 0              # 0 = sized to ~32 MB of raw data per chunk
    batch_size: int = 64              # teacher inference batch
    conv4_dtype: str = "float16"      # numpy dtype the pooled teacher conv4 maps are stored in
    dataset: str = "synth"            # dataset cached: "ucf101" | "hmdb51" | "ccv" | "synth"
    split: int = 1                    # official train/test split (1..3; CCV has one)
    resize: str = keyless_default("squash")     # to frame_size: "squash" (aspect lost) or "crop" (aspect kept, centre crop)
    short_videos: str = keyless_default("pad")  # videos with fewer frames than frames_per_video_*: "pad", "skip" or "refuse"
    skip_bad: bool = keyless_default(False)     # unreadable or truncated videos: left out and counted (--skip-bad), else an error

    def __post_init__(self):
        check_bounds(self, (("frames_per_video_train", 1, False), ("frames_per_video_test", 1, False),
                            ("views", 1, False), ("view_scale", 0, True), ("center_scale", 0, True),
                            ("chunk_items", 0, False), ("batch_size", 1, False), ("split", 1, False)))
        check_choice(self, "conv4_dtype", ("float16", "float32"))
        check_choice(self, "resize", RESIZE_MODES)
        check_choice(self, "short_videos", SHORT_POLICIES)


CACHE_PRESETS = {
    "smoke": CacheConfig(frame_size=(32, 32), frames_per_video_train=2, frames_per_video_test=2, views=2,
                         chunk_items=16, batch_size=32),
    "tiny": CacheConfig(frame_size=(64, 64), frames_per_video_train=8, frames_per_video_test=6, views=4,
                        chunk_items=256, batch_size=128),
    # Paper scale: ~76k train items on UCF101 split 1 with 8 frames per video; 2 views keep
    # the store near 1 MB per item (4 teachers x 256 x 13 x 13 float16 per view).
    "paper": CacheConfig(frame_size=(240, 320), frames_per_video_train=8, frames_per_video_test=25, views=2,
                         batch_size=64, dataset="ucf101", resize="crop"),
}


@dataclass
class Teacher:
    name: str
    model: torch.nn.Module
    checkpoint: Path
    sha256: str
    arch: str


def parse_teacher_options(specs: list[str]) -> dict[str, str]:
    """``--teacher NAME=CHECKPOINT`` options as ``{name: checkpoint}``; a malformed one, a name
    the store cannot hold or a name given twice is a one-line error."""
    ckpts: dict[str, str] = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq:
            raise ConfigError(f"--teacher expects NAME=CHECKPOINT, got {spec!r}")
        if not name or "/" in name:
            raise ConfigError(f"--teacher {spec!r}: the name must be non-empty and without '/'")
        if name in ckpts:
            raise ConfigError(f"--teacher {name}: given twice ({ckpts[name]} and {path}); name each teacher once")
        ckpts[name] = path
    return ckpts


def load_teacher(name: str, path: str | os.PathLike, num_classes: int, preset: str) -> Teacher:
    """A fine-tuned teacher from its ``checkpoint.pt`` (written by ``harness finetune``)."""
    path = Path(path)
    ck = load_checkpoint(path, CacheError, f"teacher checkpoint ({name})")
    state = ck.get("model") or ck.get("state_dict")
    arch = ck.get("arch")
    if state is None or arch is None:
        raise CacheError(f"{path}: not a harness fine-tuned checkpoint (needs 'arch' and 'model' entries)")
    if ck.get("num_classes", num_classes) != num_classes:
        raise CacheError(f"{path}: teacher {name!r} has {ck.get('num_classes')} classes, the dataset {num_classes}")
    model_preset = ck.get("model_preset") or ck.get("preset", preset)
    if model_preset != preset:
        raise CacheError(f"{path}: teacher {name!r} has the {model_preset!r} model shapes, not {preset!r}")
    model = build_model(arch, num_classes, preset, **dict(ck.get("model_overrides", {})))
    load_weights(model, state, path, CacheError, f"teacher {name!r} ({arch} by its 'arch' entry)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(name, model, path, sha256_file(path), arch)


def teacher_store_problem(st: FeatureStore) -> str | None:
    """What a teacher store lacks of the fields ``cache-teachers`` writes (a store of an older
    harness, or edited), as one line saying what to do; None when it holds them all."""
    manifest = st.manifest
    if manifest.get("kind") != "teacher-features":
        return None
    names = list(manifest.get("teachers") or teacher_names(f.name for f in st.fields))
    have = {f.name for f in st.fields}
    missing = [n for n in teacher_store_fields(names) if n not in have]
    if not missing:
        return None
    return (f"{st.path}: store lacks {', '.join(missing)}, which every teacher store of layout version "
            f"{LAYOUT_VERSION} holds (this one says version {st.record['layout']['layout_version']}: made by "
            f"another harness, or edited); {REBUILD}")


@dataclass
class ItemPlan:
    """Which (split, video, frame) every store item is."""

    split: np.ndarray     # (N,) 0 train, 1 test
    video: np.ndarray     # (N,) index into that split's VideoIndex
    frame: np.ndarray     # (N,) frame index in the video
    num_frames: np.ndarray  # (N,) frames in the video (for clip windows)


def plan_items(indexes: dict[int, VideoIndex], cfg: CacheConfig, counts: dict[int, list[int]]) -> ItemPlan:
    """Items video-major (a video is decoded once per chunk), videos in a seeded random order.

    Split lists are sorted by class, so in list order a chunk would hold two or three classes
    and the reader's shuffle buffer (a few chunks) would hand out batches of a few classes at
    a time: with BatchNorm the tiny student then never left chance. Shuffling the videos
    makes every chunk a sample of the whole split.
    """
    rows = []
    for split_code, index in sorted(indexes.items()):
        per_video = cfg.frames_per_video_train if split_code == 0 else cfg.frames_per_video_test
        for v in np.random.default_rng([cfg.view_seed, 17, split_code]).permutation(len(index)):
            v = int(v)
            n = counts[split_code][v]
            for f in evenly_spaced(n, per_video):
                rows.append((split_code, v, int(f), n))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return ItemPlan(arr[:, 0].astype(np.uint8), arr[:, 1], arr[:, 2], arr[:, 3])


def item_views(item: int, split_code: int, cfg: CacheConfig, aspect: float) -> list[View]:
    """K views of one item, a pure function of (view_seed, item)."""
    if split_code == 1:  # fixed test crops: centre, its flip, then corner-ish crops
        fixed = [center_view(cfg.center_scale, aspect), dataclasses.replace(center_view(cfg.center_scale, aspect), flip=True)]
        s = cfg.center_scale
        corners = [View(0.0, 0.0, s, s, False), View(1 - s, 1 - s, s, s, False),
                   View(0.0, 1 - s, s, s, False), View(1 - s, 0.0, s, s, False)]
        fixed += corners
        return [fixed[k % len(fixed)] for k in range(cfg.views)]
    rng = np.random.default_rng([cfg.view_seed, item])
    return [sample_view(rng, scale=tuple(cfg.view_scale), aspect=aspect) for _ in range(cfg.views)]


class TeacherRunner:
    """Produces store chunks: decodes the chunk's videos, applies each view, runs teachers."""

    def __init__(self, teachers: list[Teacher], indexes: dict[int, VideoIndex], plan: ItemPlan,
                 cfg: CacheConfig, preset: str, chunk_items: int, conv4_hw: tuple[int, int], device: torch.device):
        self.teachers, self.indexes, self.plan, self.cfg = teachers, indexes, plan, cfg
        self.chunk_items, self.conv4_hw, self.device = chunk_items, conv4_hw, device
        self.input_size = MODEL_PRESETS[preset].input_size
        self.aspect = cfg.frame_size[1] / cfg.frame_size[0]
        for t in teachers:
            t.model.to(device)

    def _decode(self, split_code: int, video: int) -> np.ndarray:
        path = self.indexes[split_code][video].path
        return read_video(path, size=tuple(self.cfg.frame_size), resize=self.cfg.resize)

    def __call__(self, chunk: int) -> dict[str, np.ndarray]:
        a = chunk * self.chunk_items
        b = min(a + self.chunk_items, len(self.plan.split))
        k = self.cfg.views
        frames = np.empty((b - a, *self.cfg.frame_size, 3), np.uint8)
        views = np.empty((b - a, k, 5), np.float32)
        clips: list[np.ndarray] = []      # per item: the decoded video it belongs to
        decoded: dict[tuple[int, int], np.ndarray] = {}
        for j, i in enumerate(range(a, b)):
            key = (int(self.plan.split[i]), int(self.plan.video[i]))
            if key not in decoded:
                decoded.clear()  # video-major order: keep one video in memory
                decoded[key] = self._decode(*key)
            video = decoded[key]
            f = min(int(self.plan.frame[i]), len(video) - 1)
            frames[j] = video[f]
            views[j] = np.stack([v.as_array() for v in item_views(i, key[0], self.cfg, self.aspect)])
            clips.append(video[: f + 1])
        out = {"frames": frames, "views": views,
               "video": self.plan.video[a:b], "frame": self.plan.frame[a:b], "split": self.plan.split[a:b]}
        inputs: dict[int, torch.Tensor] = {}    # teacher inputs by clip length, built once
        for t in self.teachers:
            length = getattr(t.model, "clip_length", 1)
            if length not in inputs:
                inputs[length] = self._inputs(clips, views, length)
            conv4, logits = self._run_teacher(t, inputs[length], len(clips), k)
            out[teacher_field(t.name, "conv4")] = conv4.astype(self.cfg.conv4_dtype)
            out[teacher_field(t.name, "logits")] = logits
        return out

    def _inputs(self, clips: list[np.ndarray], views: np.ndarray, length: int) -> torch.Tensor:
        """(n * K, T, 3, H, W): for each item and view, the ``length`` frames ending at the
        item's frame (clamped at the start), all cropped with that view."""
        xs = []
        for j, clip in enumerate(clips):
            idx = np.clip(np.arange(len(clip) - length, len(clip)), 0, len(clip) - 1)
            for v in range(views.shape[1]):
                xs.append(to_tensor(apply_view(clip[idx], View.from_array(views[j, v]), self.input_size)))
        return torch.stack(xs)

    @torch.no_grad()
    def _run_teacher(self, t: Teacher, inputs: torch.Tensor, n: int, k: int):
        conv4s, logits = [], []
        bs = self.cfg.batch_size
        for s in range(0, len(inputs), bs):
            x = inputs[s:s + bs].to(self.device)
            x = x[:, 0] if x.shape[1] == 1 else x
            out = t.model.forward_features(x)
            conv4s.append(torch.nn.functional.adaptive_avg_pool2d(out.conv4.float(), self.conv4_hw).cpu())
            logits.append(out.logits.float().cpu())
        conv4 = torch.cat(conv4s).numpy().reshape(n, k, *conv4s[0].shape[1:])
        return conv4, torch.cat(logits).numpy().reshape(n, k, -1)


def cache_config(preset: str, overrides: dict[str, Any] | None = None, views: int | None = None) -> CacheConfig:
    """The preset's cache settings with ``--set`` overrides and ``--views`` applied (validated)."""
    return resolve(CACHE_PRESETS, preset, {**(overrides or {}), **({"views": views} if views is not None else {})})


def store_target(preset: str, store: str | os.PathLike | None, fmt: str) -> Path:
    """Where a store of format ``fmt`` goes: ``store``, or the preset's default; a name whose
    suffix says the other format (``x.zarr`` with hdf5) is refused before anything runs."""
    path = Path(store) if store is not None else default_store_path(preset, fmt)
    named = {".zarr": "zarr", ".h5": "hdf5", ".hdf5": "hdf5"}.get(path.suffix.lower())
    if named is not None and named != fmt:
        raise CacheError(f"{path}: the name says {named} but --format is {fmt}; rename the store or pass "
                         f"--format {named}")
    blocked = not_a_folder_error(path.parent)   # before any video is screened or teacher run
    if blocked is not None:
        raise blocked
    return path


def default_store_path(preset: str, fmt: str) -> Path:
    """``cache/<preset>.zarr`` (or ``.h5``); ``cache/<preset>-deterministic.*`` in the deterministic
    mode, whose teachers are other runs."""
    mode = "-deterministic" if determinism.requested() else ""
    return Path("cache") / f"{preset}{mode}.{'zarr' if fmt == 'zarr' else 'h5'}"


def cache_teachers(preset: str, teacher_checkpoints: dict[str, str | os.PathLike], data_root: str | os.PathLike,
                   store: str | os.PathLike | None = None, fmt: str = "zarr", views: int | None = None,
                   overrides: dict[str, Any] | None = None, device: str = "auto", progress: bool = True,
                   compression: str | None = None) -> FeatureStore:
    """Create (or resume) the teacher feature store for ``preset``; returns it once complete."""
    from harness.utils import pick_device

    deterministic = determinism.apply()
    cfg = cache_config(preset, overrides, views)
    store_path = store_target(preset, store, fmt)
    indexes = {0: open_index(cfg.dataset, data_root, split=cfg.split, subset="train"),
               1: open_index(cfg.dataset, data_root, split=cfg.split, subset="test")}
    classes = list(indexes[0].classes)
    check_trainable(indexes[0], data_root, cfg.split)   # before any teacher runs (the pipeline checks earlier)
    teachers = [load_teacher(name, path, len(classes), preset) for name, path in teacher_checkpoints.items()]
    if not teachers:
        raise CacheError("cache-teachers: no teacher checkpoints given")
    student = build_model("alexnet", len(classes), preset)
    _, sh, sw = student.conv4_shape()
    manifest = {
        "kind": "teacher-features",
        "preset": preset,
        "dataset": {"name": cfg.dataset, "split": cfg.split, "classes": classes,
                    "multilabel": indexes[0].multilabel,
                    "fingerprint": {"train": indexes[0].fingerprint(), "test": indexes[1].fingerprint()}},
        "teachers": {t.name: {"arch": t.arch, "sha256": t.sha256, "checkpoint": str(t.checkpoint)} for t in teachers},
        "preprocessing": {**to_dict(cfg), "input_size": MODEL_PRESETS[preset].input_size,
                          "item_order": "videos shuffled (view_seed), video-major",
                          "conv4_pool": [sh, sw], "normalisation": "imagenet mean/std"},
        "view_seed": cfg.view_seed,
        "dtypes": {"frames": "uint8", "conv4": cfg.conv4_dtype, "logits": "float32"},
        "code_version": code_version(),
    }
    if deterministic:   # only then, so the manifests (and the keys of their students) of other stores stay
        manifest["deterministic"] = determinism.SWITCHES
    done = _complete_store(store_path, manifest)
    if done is not None:   # nothing to write: skip decoding every video to plan the items
        _write_prototypes(done, [t.name for t in teachers], len(classes))
        return done
    indexes, counts, reports = _screen_splits(indexes, cfg)
    _record_videos(store_path, reports)
    plan = plan_items(indexes, cfg, counts)
    shapes = {t.name: (t.model.conv4_shape()[0], sh, sw) for t in teachers}
    fields = teacher_schema(tuple(cfg.frame_size), cfg.views, shapes, len(classes),
                            multilabel=indexes[0].multilabel, conv4_dtype=cfg.conv4_dtype)
    fields = [f for f in fields if f.name != "label"] + [f for f in fields if f.name == "label"]
    chunk_items = cfg.chunk_items or suggest_chunk_items(fields)
    labels = {s: idx.targets() for s, idx in indexes.items()}
    runner = TeacherRunner(teachers, indexes, plan, cfg, preset, chunk_items, (sh, sw), pick_device(device))

    def produce(chunk: int) -> dict[str, np.ndarray]:
        out = runner(chunk)
        out["label"] = np.stack([labels[int(s)][int(v)] for s, v in zip(out["split"], out["video"])])
        return out

    with resumable(store_path):   # Ctrl-C: finished chunks are kept, the same command writes the rest
        st = write_store(store_path, fields, len(plan.split), chunk_items, manifest, produce, format=fmt,
                         compression=compression, progress=progress)
    if st.is_complete():
        _write_prototypes(st, [t.name for t in teachers], len(classes))
    return st


def _screen_splits(indexes: dict[int, VideoIndex], cfg: CacheConfig):
    """Each split's index without the videos screening leaves out, their frame counts, and the
    reports (:mod:`harness.data.screening`; warnings printed)."""
    kept, counts, reports = {}, {}, {}
    for s, index in indexes.items():
        what = "train" if s == 0 else "test"
        report = VideoReport(what, cfg.frames_per_video_train if s == 0 else cfg.frames_per_video_test,
                             cfg.short_videos)
        frames: dict[Path, int] = {}

        def frames_of(record) -> int:
            frames[record.path] = count_frames(record.path)
            return frames[record.path]

        keep = screen(index, frames_of, report, cfg.skip_bad)
        report.warn()
        kept[s] = index if len(keep) == len(index) else index.select(keep)
        counts[s] = [frames[index[i].path] for i in keep]
        reports[s] = report
    return kept, counts, reports


def videos_record_path(store_path: Path) -> Path:
    """The screening record beside a store: ``<store>.videos.json``."""
    return store_path.with_name(store_path.name + ".videos.json")


def _record_videos(store_path: Path, reports: dict) -> None:
    """Write what screening found per split beside the store (the store's own manifest stays
    the same for the same data, so an unchanged store still matches it)."""
    import json

    from harness.atomic import write_text_atomic

    record = {"train" if s == 0 else "test": r.as_dict() for s, r in reports.items()}
    write_text_atomic(videos_record_path(store_path), json.dumps(record, indent=1) + "\n")


def _complete_store(path: Path, manifest: dict) -> FeatureStore | None:
    """The finished store at ``path`` if there is one (checked against ``manifest``: another
    teacher set or preprocessing raises ManifestMismatch), else None."""
    try:
        st = FeatureStore.open(path, "r+", expect_manifest=manifest)
    except ManifestMismatch:
        raise
    except StoreError:   # no store there yet
        return None
    if st.is_complete():
        return st
    st.close()
    return None


def _write_prototypes(st: FeatureStore, names: list[str], num_classes: int) -> None:
    """Per-class mean teacher logit vector over the training items (all views): the EM
    ground cost's class prototypes (docs/METHOD.md, G_l)."""
    have = set(st.extras())
    if all(prototypes_key(n) in have for n in names):
        return
    split = st.read("split")
    label = st.read("label")
    train = split == 0
    for n in names:
        logits = st.read(teacher_field(n, "logits"))[train].astype(np.float64).mean(1)   # (N_train, C)
        y = label[train]
        if y.ndim == 1:
            onehot = np.eye(num_classes)[y]
        else:
            onehot = y.astype(np.float64)
        counts = onehot.sum(0)
        if (counts == 0).any():
            raise StoreError(f"{st.path}: classes with no training items; cannot build class prototypes")
        st.put_extra(prototypes_key(n), (onehot.T @ logits / counts[:, None]).astype(np.float32))
