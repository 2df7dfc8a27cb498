"""Code version, file hashes and fingerprints recorded next to every result."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness

_REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """``<git sha>[+dirty]`` when run from a checkout, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if sha.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10,
            ).stdout.strip()
            return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"harness-{harness.__version__}"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(obj: Any) -> str:
    """A stable sha256 of JSON-able data (dict key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def environment() -> dict:
    import numpy
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "harness": harness.__version__,
    }


def run_record(config: Any, inputs: dict[str, str] | None = None) -> dict:
    """What a run writes as ``run.json`` beside its results: config, code, inputs, time."""
    return {
        "config": config,
        "config_fingerprint": fingerprint(config),
        "code_version": code_version(),
        "inputs": inputs or {},
        "environment": environment(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON via a temp file and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)
