"""Code version, file hashes and fingerprints recorded next to every result."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness
from harness import determinism

_REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """``<git sha>[+dirty]`` when run from a checkout, else the package version. Changes under
    ``tables/generated`` (what the commands write) do not count as dirty: a report that writes
    several tables in turn stamps them all with the code that made them."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if sha.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)tables/generated"],
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
        "numerics": numerics(),
    }


# instruction-set flags that decide which CPU kernels MKL, oneDNN and ATen dispatch to
_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
               "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")
# environment variables that change kernels, threads or reduction order
_NUMERIC_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE",
                "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE",
                "OPENBLAS_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


def _cpuinfo() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", []
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, [f for f in _SIMD_FLAGS if f in flags]


def processor_name() -> str:
    """The CPU model (Linux: /proc/cpuinfo's "model name"), else the platform's machine type."""
    model = _cpuinfo()[0]
    return model if model != "unknown" else (platform.machine() or "unknown")


def _build_line(build: str, prefix: str) -> str | None:
    """The line of torch's build description (``torch.__config__.show()``) holding ``prefix``."""
    for line in build.splitlines():
        if prefix in line:
            return line.strip(" -")
    return None


def numerics() -> dict:
    """What decides a run's floating-point results on this machine: the CPU and its SIMD
    flags, the kernel level ATen dispatches to, the BLAS / oneDNN builds, thread counts, the
    environment variables that steer them, and the determinism switches."""
    import torch

    model, flags = _cpuinfo()
    build = torch.__config__.show()
    found = re.search(r"BLAS_INFO=([^,\s]+)", _build_line(build, "BLAS_INFO=") or "")
    blas = found.group(1) if found else None
    out = {
        "cpu_model": model,
        "cpu_simd_flags": flags,
        "cpu_count": os.cpu_count(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas,
        "mkl": _build_line(build, "Math Kernel Library"),
        "onednn": _build_line(build, "MKL-DNN") or _build_line(build, "oneDNN"),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ[k] for k in _NUMERIC_ENV if k in os.environ},
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "deterministic_mode": determinism.state(),
    }
    out["summary"] = machine_summary(out)
    return out


def machine_summary(n: dict) -> str:
    """One line for table footers: CPU, kernel level, BLAS / oneDNN, threads (and the GPU)."""
    onednn = (n.get("onednn") or "").replace("Intel(R) MKL-DNN ", "oneDNN ").split(" (")[0]
    parts = [n.get("cpu_model", "unknown CPU"), f"{n.get('aten_cpu_capability')} kernels",
             f"BLAS {n.get('blas')}", onednn + ("" if n.get("onednn_enabled", True) else " (off)"),
             f"{n.get('torch_threads')} threads"]
    if n.get("gpu"):
        parts.append(n["gpu"])
    if (n.get("deterministic_mode") or {}).get("on"):
        parts.append("deterministic mode")
    return ", ".join(p for p in parts if p)


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
    from harness.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
