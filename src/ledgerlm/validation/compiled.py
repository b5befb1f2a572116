"""Kernels compiled with numba on first use, so importing ledgerlm never waits for the compiler."""

from __future__ import annotations

import functools
from collections.abc import Callable


def compiled(fn: Callable) -> Callable:
    """`fn` compiled to machine code (numba, no Python objects inside) the first time it is called.

    The compiled code is cached beside the module (or in numba's user cache when that folder is
    read-only), so a later process loads it instead of compiling again. `fn` stays plain Python:
    its loops are the specification, and `fn.py` runs them uncompiled.
    """

    @functools.cache
    def kernel() -> Callable:
        import numba

        return numba.njit(cache=True, nogil=True)(fn)

    @functools.wraps(fn)
    def call(*args):
        return kernel()(*args)

    call.py = fn
    return call
