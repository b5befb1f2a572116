"""A node's process keeps the memory one batch frees for the next, instead of faulting it in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap settings are glibc's")

# batches of arrays of a few MiB, each written through and freed, as a gate run makes them;
# prints the page faults of the later batches (the first one takes its pages once)
_BATCHES = """
import resource, sys
import numpy as np
from ledgerlm.heap import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory() and keep_freed_memory()
def batch():
    arrays = [np.ones(n, dtype=np.uint8) for n in (3 << 20, 9 << 20, 200 << 10, 20 << 20, 5 << 20)]
    return sum(int(a[-1]) for a in arrays)
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _BATCHES, mode], check=True, capture_output=True, text=True)
    return int(out.stdout)


def test_freed_memory_is_reused_without_page_faults():
    # glibc on its own hands some of it back after each batch and faults it in again
    assert _faults("default") > 1000
    assert _faults("kept") < 100
