"""The C allocator's settings for a training process (no torch import: the CLI applies them first)."""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30
_kept: list = []


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 1 GiB for reuse (once per process; a no-op
    on other C libraries). Returns whether the setting is in effect.

    By default glibc maps every block above a threshold (at most 32 MB) straight from the kernel
    and unmaps it when freed, so a tensor of that size allocated afresh each step (a weight
    gradient, Adam's square root of its second moment, an activation) page-faults on its first
    touch, every step: at the paper's AlexNet that fault-in took longer than the arithmetic
    (``sqrt`` of fc6's 37.7 M second moments: 49 ms into fresh memory, 10 ms into kept memory),
    and a training step took twice as long (docs/SPEED.md). Only where tensors live changes
    (torch aligns every block to 64 bytes either way), so no number moves; the cost is that the
    process keeps its peak heap instead of handing it back between steps.
    """
    if _kept:
        return _kept[0]
    ok = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
        except (OSError, AttributeError):
            ok = False
    _kept.append(ok)
    return ok
