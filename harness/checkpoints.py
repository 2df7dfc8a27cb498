"""Writing and reading checkpoints and logs safely: atomic writes (a crash never leaves half a
file), one-line errors naming the file, and the weights hash every checkpoint records."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from harness.atomic import atomic_path, write_text_atomic
from harness.errors import HarnessError, WriteError, no_space_error


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the keys, dtypes, shapes and bytes of a state_dict, in key order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        # reshape(-1): 0-dim buffers (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary name, then rename over ``path``. torch's own writer
    reports a full disk as ``RuntimeError: ... file write failed``, without the path: that is
    a :class:`WriteError` naming ``path``. (Saving by name keeps the archive's inner name, so
    the file's bytes, and the sha256 recorded of them, do not depend on how it was written.)"""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            if "write failed" not in str(exc):
                raise
            raise _write_failure(path, tmp.parent) from exc


def _write_failure(path: Path, folder: Path) -> WriteError:
    """Why torch could not write ``path`` into ``folder``, as far as the file system tells."""
    stats = os.statvfs(folder)
    if stats.f_bavail * stats.f_frsize < (1 << 20):
        return no_space_error(path)
    return WriteError(f"{path}: torch could not write the file; check the disk and run the same command again")


def write_jsonl_atomic(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rewrite a JSON-lines log in one rename (resumed runs rewrite their whole log)."""
    write_text_atomic(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def load_checkpoint(path: str | os.PathLike, error: type[HarnessError] = HarnessError, what: str = "checkpoint",
                    weights_only: bool = False) -> Any:
    """``torch.load`` on CPU; a missing or unreadable file raises ``error`` with one line
    naming it. ``weights_only=True`` for files from outside the harness (torchvision weights)."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        first = f"{exc}".splitlines()[0] if f"{exc}" else ""
        raise error(f"{path}: cannot read as a {what} ({type(exc).__name__}{': ' + first if first else ''})") from exc


def load_verified(path: str | os.PathLike, error: type[HarnessError], what: str, weights_key: str,
                  required: tuple[str, ...] = (), verify: bool = True) -> dict:
    """A harness checkpoint: a dict holding ``weights_key`` and ``required``, whose weights
    match the ``weights_sha256`` recorded beside them (a corrupt or edited file is refused)."""
    ckpt = load_checkpoint(path, error, what)
    missing = [k for k in (weights_key, *required) if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise error(f"{path}: not a {what} (no {'/'.join(missing)})")
    if verify and weights_sha256(ckpt[weights_key]) != ckpt.get("weights_sha256"):
        raise error(f"{path}: weights do not match their recorded sha256 (corrupt file?)")
    return ckpt


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 error: type[HarnessError], what: str) -> None:
    """``model.load_state_dict(state)``; weights of another architecture (keys missing, extra
    or of other shapes) raise ``error`` with one line naming the file and the mismatch."""
    own = model.state_dict()
    if not isinstance(state, Mapping):
        raise error(f"{path}: {what} holds no weights (a {type(state).__name__})")
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    problems = [f"{len(keys)} {label} (e.g. {keys[0]!r})" for keys, label in
                ((missing, "keys missing"), (extra, "unexpected keys"), (shapes, "shapes differ")) if keys]
    if problems:
        raise error(f"{path}: {what} does not fit the {type(model).__name__} it is loaded into "
                    f"({'; '.join(problems)}): a checkpoint of another architecture?")
    model.load_state_dict(state)
