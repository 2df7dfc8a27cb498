"""Short, truncated and unreadable videos: found while decoding, counted, reported, and handled
as the run's settings say, never silently.

- *unreadable* (not a video, no video stream, no decodable frame) and *truncated* (fewer
  frames decode than the container declares: a cut or damaged file) videos end the command
  with one line naming the file (:class:`~harness.data.video.VideoError`, exit 2), unless
  ``skip_bad`` (``--skip-bad``) is set: then they are left out, counted and listed;
- *short* videos (complete, but fewer frames than the step needs) follow ``short_videos``:
  ``"pad"`` (the last frame repeats), ``"skip"`` (left out) or ``"refuse"`` (one line, exit 2).

Every step that decodes writes its :class:`VideoReport` into its record (``final.json``) and
prints a warning line on stderr when any video was short, skipped or padded.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from harness.data.video import VideoError

SHORT_POLICIES = ("pad", "skip", "refuse")


@dataclass
class VideoReport:
    """What screening found among ``checked`` videos of one step (paths as given)."""

    what: str                       # the videos' role, e.g. "unlabeled", "train", "test"
    needed: int                     # frames a video needs to be complete for the step
    short_policy: str               # SHORT_POLICIES entry applied to short videos
    checked: int = 0
    short: list[str] = field(default_factory=list)
    bad: list[dict] = field(default_factory=list)   # {"video", "problem"} of skipped unreadable/truncated ones

    def as_dict(self) -> dict:
        return {"checked": self.checked, "needed_frames": self.needed, "short": len(self.short),
                "short_policy": self.short_policy, "short_videos": self.short[:50],
                "skipped_bad": len(self.bad), "bad_videos": self.bad[:50]}

    def warn(self, out=None) -> None:
        """One warning line on stderr per kind of problem found (nothing when all were fine)."""
        out = out or sys.stderr
        if self.short:
            done = {"pad": "padded with their last frame", "skip": "skipped"}[self.short_policy]
            print(f"warning: {len(self.short)} of {self.checked} {self.what} videos have fewer than the "
                  f"{self.needed} frames needed ({done}): {_names(self.short)}", file=out)
        if self.bad:
            print(f"warning: {len(self.bad)} of {self.checked} {self.what} videos skipped (--skip-bad): "
                  f"{'; '.join(b['problem'] for b in self.bad[:3])}{'; ...' if len(self.bad) > 3 else ''}",
                  file=out)


def _names(paths: Sequence[str]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")


def screen(items: Iterable, frames_of: Callable[[object], int], report: VideoReport, skip_bad: bool) -> list[int]:
    """The positions of ``items`` (paths, or records with a ``path``) to keep, after checking
    each with ``frames_of(item)`` (its frame count; raises VideoError when unreadable or
    truncated), recording into ``report``."""
    if report.short_policy not in SHORT_POLICIES:
        raise ValueError(f"short_videos must be one of {SHORT_POLICIES}, got {report.short_policy!r}")
    keep = []
    for i, item in enumerate(items):
        path = getattr(item, "path", item)
        report.checked += 1
        try:
            n = frames_of(item)
        except VideoError as exc:
            if not skip_bad:
                raise VideoError(f"{exc} (--skip-bad leaves such videos out)") from exc
            report.bad.append({"video": str(path), "problem": str(exc)})
            continue
        if n < report.needed:
            if report.short_policy == "refuse":
                raise VideoError(f"{path}: {n} frames, fewer than the {report.needed} needed "
                                 f"(short_videos=refuse; 'pad' or 'skip' accept it)")
            report.short.append(str(path))
            if report.short_policy == "skip":
                continue
        keep.append(i)
    if not keep:
        raise VideoError(f"none of the {report.checked} {report.what} videos is usable ({len(report.bad)} "
                         f"unreadable or truncated, {len(report.short)} with fewer than the {report.needed} "
                         f"frames needed)")
    return keep
