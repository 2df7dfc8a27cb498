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
from harness.errors import HarnessError


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
    """``torch.save`` to a temporary name, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_jsonl_atomic(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rewrite a JSON-lines log in one rename (resumed runs rewrite their whole log)."""
    write_text_atomic(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def load_checkpoint(path: str | os.PathLike, error: type[HarnessError] = HarnessError, what: str = "checkpoint",
                    weights_only: bool = False) -> Any:
    """``torch.load`` on CPU; a missing or unreadable file raises ``error`` with one line
    naming it. ``weights_only=True`` for files from outside the harness (torchvision weights)."""
    path = Path(path)
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
