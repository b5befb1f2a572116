"""Embedding rows with few filled buckets, kept in CSR form, and the products the gates take of them.

A hashed TF-IDF row fills about a tenth of its 2,048 buckets, a short question a few dozen:
adding up only the buckets two rows share is far less work than a dense product. Every
similarity here adds the products of shared buckets in ascending bucket order in float32, the
order a CSR matrix times a dense one adds them, so the same pair gets the same value whichever
side asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ledgerlm.validation.compiled import compiled


@dataclass(frozen=True)
class SparseRows:
    """Row i's filled buckets are indices[indptr[i] : indptr[i + 1]] (ascending), with their values."""

    indptr: np.ndarray  # int64, rows + 1
    indices: np.ndarray  # int64
    values: np.ndarray  # float32
    dim: int

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def dense(self) -> np.ndarray:
        return _dense(self.indptr, self.indices, self.values, self.dim)

    def rows(self, start: int, stop: int) -> SparseRows:
        """Rows start..stop-1 as rows of their own."""
        a, b = self.indptr[start], self.indptr[stop]
        return SparseRows(self.indptr[start : stop + 1] - a, self.indices[a:b], self.values[a:b], self.dim)


def paired_dots(a: SparseRows, b: SparseRows, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """a[left[t]] · b[right[t]] for every t, float32; cheapest when equal `left` values come together."""
    return _paired_dots(a.indptr, a.indices, a.values, b.indptr, b.indices, b.values, a.dim,
                        np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64))


def best_matches(queries: SparseRows, targets: SparseRows, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """For each query row r, the target row other than r + offset most similar to it, and that similarity.

    Ties go to the lowest target row; with no other target row the answer is row len(targets) at
    similarity -inf. Queries are laid out densely a block at a time (buckets x queries, small
    enough to stay in cache) and each target's filled buckets scale rows of that block: the
    values a CSR matrix of the targets times the dense queries would give, never all held at once.
    """
    return _best_matches(queries.indptr, queries.indices, queries.values, targets.indptr, targets.indices,
                         targets.values, targets.dim, offset, _BLOCK)


# queries laid out densely per block: 2,048 buckets x 128 queries of float32 is 1 MiB
_BLOCK = 128


@compiled
def _paired_dots(ap, ai, av, bp, bi, bv, dim, left, right):
    out = np.empty(len(left), dtype=np.float32)
    row = np.zeros(dim, dtype=np.float32)  # the left row laid out densely, kept while it repeats
    held = -1
    for t in range(len(left)):
        if left[t] != held:
            if held >= 0:
                for p in range(ap[held], ap[held + 1]):
                    row[ai[p]] = 0.0
            held = left[t]
            for p in range(ap[held], ap[held + 1]):
                row[ai[p]] = av[p]
        s = np.float32(0.0)
        for q in range(bp[right[t]], bp[right[t] + 1]):  # ascending buckets; empty ones add nothing
            s += row[bi[q]] * bv[q]
        out[t] = s
    return out


@compiled
def _best_matches(qp, qi, qv, tp, ti, tv, dim, offset, width):
    n_queries, n_targets = len(qp) - 1, len(tp) - 1
    best = np.full(n_queries, n_targets, dtype=np.int64)
    best_sim = np.full(n_queries, -np.inf, dtype=np.float32)
    block = np.zeros((dim, width), dtype=np.float32)
    acc = np.empty(width, dtype=np.float32)
    for r0 in range(0, n_queries, width):
        r1 = min(n_queries, r0 + width)
        w = r1 - r0
        for r in range(r0, r1):
            for p in range(qp[r], qp[r + 1]):
                block[qi[p], r - r0] = qv[p]
        for j in range(n_targets):  # targets in ascending order: a tie keeps the earlier one
            acc[:w] = 0.0
            for p in range(tp[j], tp[j + 1]):  # the target's buckets in ascending order
                v = tv[p]
                row = block[ti[p]]
                for t in range(w):
                    acc[t] += v * row[t]
            for t in range(w):
                if acc[t] > best_sim[r0 + t] and j != r0 + t + offset:
                    best_sim[r0 + t] = acc[t]
                    best[r0 + t] = j
        for r in range(r0, r1):
            for p in range(qp[r], qp[r + 1]):
                block[qi[p], r - r0] = 0.0
    return best, best_sim


@compiled
def _dense(indptr, indices, values, dim):
    out = np.zeros((len(indptr) - 1, dim), dtype=np.float32)
    for r in range(len(indptr) - 1):
        for p in range(indptr[r], indptr[r + 1]):
            out[r, indices[p]] = values[p]
    return out
