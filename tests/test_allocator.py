"""harness.allocator.keep_freed_memory: freed large blocks are reused instead of faulted in
afresh, and no number moves."""

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# how many of 40 rounds of allocating, filling and freeing a 64 MB tensor (above glibc's largest
# dynamic mmap threshold) page-fault it in afresh; then a few Adam steps of a 64 MB layer, hashed
_PROBE = """
import hashlib, resource, sys, torch
from harness.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
faults = 0
for _ in range(40):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 * 1024 * 1024); t.fill_(1.0); del t
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before > 1000   # of its 16,384 pages
torch.manual_seed(0)
layer = torch.nn.Linear(4096, 4096)
opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
x = torch.randn(8, 4096)
for _ in range(3):
    opt.zero_grad(set_to_none=True); layer(x).square().mean().backward(); opt.step()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in layer.parameters())).hexdigest()
print(kept, faults, digest)
"""


def _probe(mode: str, env: dict | None = None) -> tuple[str, int, str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=300,
                          env=None if env is None else {**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    kept, faults, digest = done.stdout.split()
    return kept, int(faults), digest


@pytest.mark.skipif(not GLIBC, reason="the setting applies to glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults_and_moves_no_number():
    kept, faults_kept, digest_kept = _probe("keep")
    default, faults_default, digest_default = _probe("default")
    assert (kept, default) == ("True", "False")
    # by default every round maps its block afresh; kept, a freed block is reused once the heap
    # has settled (here after about 8 rounds: a 64-byte-aligned request needs a little more than
    # the exact block just freed until freed neighbours coalesce)
    assert faults_default == 40 and faults_kept <= 20
    assert digest_kept == digest_default


@pytest.mark.skipif(not GLIBC, reason="the setting applies to glibc's malloc only")
def test_the_off_switch_leaves_glibc_defaults():
    kept, faults, _ = _probe("keep", {"HARNESS_KEEP_FREED_MEMORY": "0"})
    assert kept == "False" and faults == 40


def test_the_setting_is_applied_once_and_reported():
    from harness.allocator import keep_freed_memory

    assert keep_freed_memory() is GLIBC and keep_freed_memory() is GLIBC
