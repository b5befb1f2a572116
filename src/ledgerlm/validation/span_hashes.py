"""Polynomial hashes of arbitrary spans of a long code-point array, all at once with numpy.

With S[m] = sum_{k<m} c[k] * P^(N-1-k) (mod 2^64), the span c[i:j] hashes to
(S[j] - S[i]) * P^-(N-j): P is odd, so it has an inverse modulo 2^64, and numpy's unsigned
wrap-around is that modulus. One cumulative sum then hashes any number of spans.
"""

from __future__ import annotations

import numpy as np

from ledgerlm.validation.compiled import compiled

POLY = 0x100000001B3
_INVERSE = pow(POLY, -1, 2**64)


class SpanHasher:
    """Hashes of spans of `codes` (uint64 code points): equal spans get equal hashes wherever they sit."""

    def __init__(self, codes: np.ndarray):
        n = len(codes)
        powers, inverse = _powers(n + 1)
        self._prefix = np.r_[np.uint64(0), np.cumsum(codes * powers[n - 1 :: -1] if n else codes, dtype=np.uint64)]
        self._inverse = inverse
        self._n = n

    def __call__(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        return (self._prefix[end] - self._prefix[start]) * self._inverse[self._n - end]


_POWERS = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))


_KEPT_POWERS = 1 << 22  # 64 MiB for both tables; a longer batch computes its own and drops them


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i for i < n (at least), kept between calls up to `_KEPT_POWERS`: every batch needs the same ones."""
    global _POWERS
    if len(_POWERS[0]) >= n:
        return _POWERS
    size = max(n, min(2 * len(_POWERS[0]), _KEPT_POWERS))
    tables = tuple(np.cumprod(np.r_[np.uint64(1), np.full(size - 1, p, dtype=np.uint64)], dtype=np.uint64)
                   for p in (POLY, _INVERSE))
    if size <= _KEPT_POWERS:
        _POWERS = tables
    return tables


def window_hashes(codes: np.ndarray, size: int) -> np.ndarray:
    """The hash of every `size`-long window of `codes`, equal to `SpanHasher(codes)(i, i + size)`.

    Horner's rule over shifted slices: `size` passes over the array and no gathers.
    """
    n_win = len(codes) - size + 1
    if n_win <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = codes[:n_win].astype(np.uint64)  # a copy: updated in place below
    for j in range(1, size):
        h *= np.uint64(POLY)
        h += codes[j : j + n_win]
    return h


@compiled
def mix64(h):
    """SplitMix64's finalizer: spreads a structured 64-bit hash over all 64 bits (the gates' kernels call it per value)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))
