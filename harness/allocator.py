"""The C allocator's settings for a training process (no torch import: the CLI applies them first)."""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BYTES = 1 << 30
# HARNESS_KEEP_FREED_MEMORY=0 in the environment leaves glibc's defaults (to measure them, or
# to hand freed memory back to the kernel between steps on a machine short of it)
OFF_SWITCH = "HARNESS_KEEP_FREED_MEMORY"


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 1 GiB for reuse (once per process; a no-op
    on other C libraries, and with ``HARNESS_KEEP_FREED_MEMORY=0``). Returns whether the
    setting is in effect.

    By default glibc maps every block above a threshold (at most 32 MB) straight from the kernel
    and unmaps it when freed, so a tensor of that size allocated afresh each step (a weight
    gradient, Adam's square root of its second moment, an activation) page-faults on its first
    touch, every step: at the paper's AlexNet that fault-in took longer than the arithmetic
    (``sqrt`` of fc6's 37.7 M second moments: 49 ms into fresh memory, 10 ms into kept memory),
    and a training step took twice as long (docs/SPEED.md). Only where tensors live changes
    (torch aligns every block to 64 bytes either way), so no number moves; the cost is that the
    process keeps its peak heap instead of handing it back between steps.
    """
    ok = False
    if os.environ.get(OFF_SWITCH, "1") != "0" and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
        except (OSError, AttributeError):
            ok = False
    return ok
