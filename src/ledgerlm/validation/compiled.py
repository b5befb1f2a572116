"""Kernels compiled with numba on first use, so importing ledgerlm never waits for the compiler."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterator


def compiled(fn: Callable) -> Callable:
    """`fn` compiled to machine code (numba, no Python objects inside) the first time it is called.

    The compiled code is cached beside the module (or in numba's user cache when that folder is
    read-only), so a later process loads it instead of compiling again. `fn` stays plain Python:
    its loops are the specification, and `fn.py` runs them uncompiled. A compiled function may
    call another one (a module-level name bound to it): the compiled caller calls its kernel.
    numba's cache checks only the caller's own file, so after editing a callee clear the cached
    kernels of its callers: the `__pycache__/*.nbi` and `*.nbc` files beside them (`make clean`
    removes them all).
    """

    @functools.cache
    def kernel() -> Callable:
        import numba

        return numba.njit(cache=True, nogil=True)(_calling_kernels(fn))

    @functools.wraps(fn)
    def call(*args):
        return kernel()(*args)

    call.py = fn
    call.kernel = kernel
    return call


def _calling_kernels(fn: Callable) -> Callable:
    """`fn` with the compiled functions it names read as their kernels: numba cannot call a Python wrapper."""
    scope = fn.__globals__
    callees = {name: scope[name].kernel() for name in _names(fn.__code__)
               if callable(getattr(scope.get(name), "kernel", None))}
    if not callees:
        return fn
    # a copy of the module's names: the module itself keeps the wrappers for Python callers
    return types.FunctionType(fn.__code__, scope | callees, fn.__name__, fn.__defaults__, fn.__closure__)


def _names(code: types.CodeType) -> Iterator[str]:
    """The global names `code` and the functions defined inside it read."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def precompile() -> None:
    """Compile (or load from the cache) every kernel the gates use, on inputs as small as they come.

    `make install` runs this, so the first batch a node gates, and the first test that gates
    one, do not wait for the compiler.
    """
    import numpy as np

    from ledgerlm.validation.embeddings import HashedTfidfEmbedder
    from ledgerlm.validation.gates.duplicates import candidate_pairs, substantive_difference
    from ledgerlm.validation.gates.injection import injection_findings_many
    from ledgerlm.validation.gates.junk import junk_findings_many
    from ledgerlm.validation.gates.label_noise import knn_label_disagreement
    from ledgerlm.validation.gates.personal_data import personal_data_findings_many
    from ledgerlm.validation.near_duplicates import NearDuplicateIndex, band_keys
    from ledgerlm.validation.policy import InjectionRule, JunkRule
    from ledgerlm.validation.sparse_rows import best_matches, paired_dots

    junk_findings_many(["a text long enough to be counted", "un texte assez long pour \u00eatre compt\u00e9"], JunkRule())
    injection_findings_many(["always answer", "ask"], ["always answer with", ""], InjectionRule())
    personal_data_findings_many(["call 555-0100", "key: x"], {"phone"})
    rows = HashedTfidfEmbedder().embed_sparse(["a text", "another text"])
    knn_label_disagreement(rows.dense(), ["a", "b"], 1)
    best_matches(rows, rows)
    paired_dots(rows, rows, [0], [1])
    NearDuplicateIndex().signature_matrix(["a text", "\u00e9t\u00e9"])
    substantive_difference("a short text", "a shorter text")
    candidate_pairs(np.zeros((2, 1), dtype=np.uint64), np.zeros((1, 1), dtype=np.uint64))
    band_keys(NearDuplicateIndex().signature_matrix(["a text"])[0], 0.75)

