"""The deterministic mode: CPU results that do not depend on the thread count or the SIMD level.

On by ``HARNESS_DETERMINISTIC=1`` in the environment or ``harness --deterministic``. It fixes
every choice that was seen to move a run's numbers on one machine (docs/REPRODUCIBILITY.md):

- one intra-op and one inter-op thread (a reduction's order follows the thread count);
- ATen's portable kernels (``ATEN_CPU_CAPABILITY=default``: AVX2 and AVX512 kernels sum in
  other orders) and MKL's conditional numerical reproducibility (``MKL_CBWR=COMPATIBLE``: one
  code path whatever the instruction set). Both are read when torch loads, so they are put in
  the environment when ``harness`` is imported (or when the CLI parses ``--deterministic``),
  before any torch import; a torch imported earlier with other kernels is an error, not a
  silent fall-back;
- oneDNN and NNPACK off (their convolutions pick kernels by instruction set), so convolutions
  run ATen's im2col + MKL GEMM; ``torch.use_deterministic_algorithms(True)``;
- ``torch.sqrt`` (and ``Tensor.sqrt``, ``Tensor.sqrt_``, and the multi-tensor ``torch._foreach_sqrt``
  and ``torch._foreach_sqrt_`` the optimisers' foreach path calls) of float CPU tensors computed by the
  CPU's IEEE square root (``ieee_sqrt``) instead of MKL VML's ``vsSqrt``/``vdSqrt``, which
  torch calls for float tensors: VML's results are not correctly rounded and depend on the
  CPU even under ``MKL_CBWR=COMPATIBLE``, while IEEE 754 fixes every bit of a square root.

The mode is part of a run's key only when it is on (``keyed``): runs made without it keep
their folders. This module imports no torch at import time.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from harness.errors import HarnessError

ENV = "HARNESS_DETERMINISTIC"

# read by torch, MKL and OpenMP when they load: they must be in the environment before `import torch`
IMPORT_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# what the mode sets, as it enters a run's key (a changed set of switches is a new run)
SWITCHES = {"env": IMPORT_ENV, "threads": 1, "interop_threads": 1, "deterministic_algorithms": True,
            "onednn": False, "nnpack": False, "sqrt": "ieee"}

_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class DeterminismError(HarnessError):
    """A bad HARNESS_DETERMINISTIC value, or torch loaded before the mode could fix its kernels."""


def requested() -> bool:
    """Whether ``HARNESS_DETERMINISTIC`` asks for the mode; any other value than on/off is one line."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise DeterminismError(f"environment variable {ENV}={os.environ[ENV]!r}: expected 1 (on) or 0 (off)")


def prepare_environment() -> None:
    """Put the mode's load-time settings in the environment (when the mode is on), overriding
    what the caller set: the point is that ``OMP_NUM_THREADS=2`` or ``ATEN_CPU_CAPABILITY=avx2``
    no longer matter. Never raises (it runs when ``harness`` is imported); ``apply`` checks."""
    try:
        on = requested()
    except DeterminismError:
        return
    if on:
        os.environ.update(IMPORT_ENV)


def enable() -> None:
    """Turn the mode on for this process and the processes it starts (the CLI's ``--deterministic``)."""
    os.environ[ENV] = "1"
    prepare_environment()
    apply()


def apply() -> bool:
    """When the mode is on, set torch's switches (idempotent) and check that torch loaded the
    portable kernels; returns whether the mode is on. Training entry points call it."""
    if not requested():
        return False
    os.environ.update(IMPORT_ENV)   # for a caller that set the variable after importing harness
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise DeterminismError(
            f"{ENV}=1: torch was loaded with {capability} kernels; ATEN_CPU_CAPABILITY=default must be in the "
            f"environment before torch is imported (the harness command does this; in Python, import harness first)")
    torch.set_num_threads(1)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:   # settable once, before inter-op work; the record shows what stayed
            pass
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    _install_ieee_sqrt(torch)
    return True


def ieee_sqrt(x):
    """The square root of a float32/float64 CPU tensor by numpy's ``sqrt`` (the CPU's square-root
    instruction: IEEE 754 makes it correctly rounded, so every CPU gives the same bits), with
    torch's own gradient, ``grad / (2 sqrt(x))``. Anything else goes to torch's sqrt."""
    import torch

    if not _ieee_sqrt_applies(x):
        return (_TORCH_SQRT[0] if _TORCH_SQRT else torch.sqrt)(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ieee_sqrt_function().apply(x)
    return _sqrt_values(x)


def _ieee_sqrt_applies(x) -> bool:
    import torch

    return (type(x) in (torch.Tensor, torch.nn.Parameter) and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64) and x.layout == torch.strided)


def _sqrt_values(x):
    import numpy as np
    import torch

    out = torch.empty(x.shape, dtype=x.dtype)
    with np.errstate(invalid="ignore"):   # NaN for negative input, silently, as torch's sqrt
        np.sqrt(x.detach().contiguous().numpy(), out=out.numpy())
    return out


_TORCH_SQRT: list = []   # torch's own sqrt, Tensor.sqrt, Tensor.sqrt_, _foreach_sqrt and _foreach_sqrt_, kept when replaced


@functools.cache
def _ieee_sqrt_function():
    """The autograd function of ``ieee_sqrt`` (made on first use: this module imports no torch)."""
    import torch

    class IEEESqrt(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = _sqrt_values(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):
            (y,) = ctx.saved_tensors
            return grad / (2 * y)   # torch's own SqrtBackward

    return IEEESqrt


def _install_ieee_sqrt(torch) -> None:
    """Replace ``torch.sqrt``, ``Tensor.sqrt``, ``Tensor.sqrt_`` and the foreach forms by ``ieee_sqrt``
    for this process (idempotent). torch's optimisers call ``Tensor.sqrt`` or ``torch._foreach_sqrt``
    (Adam's second moment), so a switch inside the harness's own code alone would leave them on VML."""
    if _TORCH_SQRT:
        return
    _TORCH_SQRT.extend((torch.sqrt, torch.Tensor.sqrt, torch.Tensor.sqrt_, torch._foreach_sqrt,
                        torch._foreach_sqrt_))
    torch_sqrt, tensor_sqrt, tensor_sqrt_, foreach_sqrt, foreach_sqrt_ = _TORCH_SQRT

    def sqrt(input, *, out=None):
        if not _ieee_sqrt_applies(input):
            return torch_sqrt(input, out=out)
        return ieee_sqrt(input) if out is None else out.copy_(_sqrt_values(input))

    def method_sqrt(self):
        return ieee_sqrt(self) if _ieee_sqrt_applies(self) else tensor_sqrt(self)

    def method_sqrt_(self):
        if not _ieee_sqrt_applies(self):
            return tensor_sqrt_(self)
        if torch.is_grad_enabled() and self.requires_grad:
            return self.copy_(ieee_sqrt(self.clone()))
        return self.copy_(_sqrt_values(self))

    # the optimisers' foreach path (harness.utils.adam) takes the square root of a list at once
    # (a list with no float CPU tensor keeps torch's own, e.g. CUDA's fused kernel)
    def foreach_sqrt_list(tensors):
        tensors = list(tensors)
        if not any(_ieee_sqrt_applies(t) for t in tensors):
            return foreach_sqrt(tensors)
        return tuple(method_sqrt(t) for t in tensors)   # as torch's

    def foreach_sqrt_list_(tensors):
        tensors = list(tensors)
        if not any(_ieee_sqrt_applies(t) for t in tensors):
            return foreach_sqrt_(tensors)
        for t in tensors:
            method_sqrt_(t)

    torch.sqrt, torch.Tensor.sqrt, torch.Tensor.sqrt_ = sqrt, method_sqrt, method_sqrt_
    torch._foreach_sqrt, torch._foreach_sqrt_ = foreach_sqrt_list, foreach_sqrt_list_


def keyed(config: Any) -> Any:
    """``config`` as a run's key: unchanged when the mode is off, with the mode's switches when on."""
    if not requested():
        return config
    if isinstance(config, dict):
        return {**config, "deterministic": SWITCHES}
    return {"config": config, "deterministic": SWITCHES}


def state() -> dict:
    """What run.json records: whether the mode is on and the switches in effect (threads, kernel
    level, oneDNN / NNPACK, deterministic algorithms, whose square root, the load-time variables
    as torch saw them)."""
    torch = sys.modules.get("torch")
    try:
        on = requested()
    except DeterminismError:
        on = False
    out: dict = {"on": on, "env": {k: os.environ.get(k) for k in IMPORT_ENV}}
    if torch is not None:
        out.update(threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                   aten_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
                   onednn=bool(torch.backends.mkldnn.enabled), nnpack=bool(torch._C._get_nnpack_enabled()),   # no public getter
                   sqrt="ieee" if getattr(torch.sqrt, "__module__", "") == __name__ else "torch")
    return out
