"""The heap of a long-running ledgerlm process: memory a batch frees is kept for the next batch, not handed back."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit systems: an array above it still gets pages of its own
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep up to 128 MiB of freed memory and serve arrays under 32 MiB from it; True where it applied.

    Every gate run, and every request a node serves, allocates and frees arrays of a few MiB.
    By default glibc gives an array above an adaptive threshold pages of its own and returns
    them when it is freed, and trims the top of its heap once twice that threshold is free, so
    the next batch takes the same pages again, one page fault at a time: on a 710-record batch
    of package READMEs (`benchmarks/validation.py`) about 1,700 faults, 4-6 ms of system time, a
    twentieth of the gates' CPU time. Fixed thresholds keep that memory in the process instead;
    it costs at most `TRIM_THRESHOLD` of resident memory that the process does not use.
    Elsewhere than glibc (macOS, musl) nothing changes.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # setting either threshold also stops glibc adapting the other one
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
