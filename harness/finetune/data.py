"""Frame datasets for fine-tuning, with the decoded videos shared by every run of a process."""

from __future__ import annotations

import torch

from harness.finetune.config import FinetuneConfig


# Decoded videos shared by every run of this process (table1 fine-tunes several models on
# the same split): each video is decoded once. Only filled when cache_decoded is on.
_DECODE_CACHE: dict = {}


def clear_decode_cache() -> None:
    """Free the decoded videos kept for the runs of this process."""
    _DECODE_CACHE.clear()


def _frame_dataset(index, cfg: FinetuneConfig, train: bool, size: int, clip_length: int, seed: int):
    from harness.data.frames import FrameDataset

    ds = FrameDataset(index, cfg.train_frames if train else cfg.test_frames, train=train, size=size, seed=seed,
                      decode_size=cfg.decode_size or None, view_scale=tuple(cfg.view_scale),
                      center_scale=cfg.center_scale, clip_length=clip_length,
                      test_crops=1 if train else cfg.test_crops, cache_decoded=cfg.cache_decoded,
                      shared_cache=_DECODE_CACHE if cfg.cache_decoded else None, resize=cfg.resize)
    return ds.preload()


def screened_index(index, cfg: FinetuneConfig, train: bool, what: str):
    """``index`` without the videos screening leaves out (:mod:`harness.data.screening`: short
    ones per ``cfg.short_videos``, unreadable or truncated ones per ``cfg.skip_bad``), and the
    report; the frame count comes from demuxing, so nothing is decoded twice."""
    from harness.data.screening import VideoReport, screen
    from harness.data.video import count_frames

    report = VideoReport(what, cfg.train_frames if train else cfg.test_frames, cfg.short_videos)
    keep = screen(index, lambda record: count_frames(record.path), report, cfg.skip_bad)
    report.warn()
    return (index if len(keep) == len(index) else index.select(keep)), report


def _batches(dataset, order, batch_size: int, num_workers: int = 0):
    """Collated batches of ``dataset`` items in ``order`` (the same batches with or without workers)."""
    from torch.utils.data import DataLoader, default_collate

    if num_workers > 0:
        # A generator of its own: DataLoader seeds its workers by drawing from the global torch
        # RNG unless given one, which shifted the training run's dropout stream and made the
        # result depend on num_workers (items are seeded by (seed, epoch, video), not by workers)
        yield from DataLoader(dataset, batch_size=batch_size, sampler=[int(i) for i in order],
                              num_workers=num_workers, persistent_workers=False,
                              generator=torch.Generator().manual_seed(0))
        return
    for start in range(0, len(order), batch_size):
        yield default_collate([dataset[int(i)] for i in order[start:start + batch_size]])
