"""The label-noise gate: a label that most of its nearest labelled neighbours contradict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ledgerlm.validation.compiled import compiled


@dataclass(frozen=True)
class LabelNeighbourhood:
    """How a labelled record's k nearest neighbours vote on its label."""

    label: str
    majority_label: str
    disagreement: float
    counts: dict[str, int] = field(default_factory=dict)


def knn_label_disagreement(embeddings: np.ndarray, labels: Sequence[str], k: int,
                           rows: Sequence[int] | None = None, chunk: int = 1024,
                           min_disagreement: float = 0.0) -> dict[int, LabelNeighbourhood]:
    """For each row, the share of its k nearest other rows (cosine) whose label differs.

    This is the kNN label-noise heuristic of data cleaning (Wilson's edited nearest neighbour,
    1972): a label most of its neighbours contradict is likely wrong. Rows whose disagreement
    is below `min_disagreement` are left out of the answer (a gate only reports the others).
    Neighbours of equal similarity are taken with the row's own label first, then by lower row.
    """
    n = len(labels)
    rows = range(n) if rows is None else rows
    k = min(k, n - 1)
    out: dict[int, LabelNeighbourhood] = {}
    if k < 1:
        return out
    # labels as class numbers in str order, so the tie rule below is a plain argmax
    classes = sorted(set(labels), key=str)
    number = {label: i for i, label in enumerate(classes)}
    codes = np.fromiter((number[label] for label in labels), dtype=np.int64, count=n)
    n_classes = len(classes)
    chunk = max(1, min(chunk, _VOTE_CELLS // n_classes))  # rows x classes of votes stay small
    rows = list(rows)
    # a Gram matrix of one array with itself takes BLAS's symmetric product (half the work of a
    # general one), so when it fits, all similarities come from one product
    gram = embeddings @ embeddings.T if n <= _GRAM_LIMIT and len(rows) > n // 2 else None
    for start in range(0, len(rows), chunk):
        idx = np.asarray(rows[start : start + chunk], dtype=np.int64)
        if gram is not None and len(idx) and (np.diff(idx) == 1).all():  # consecutive rows: a view
            sims = gram[idx[0] : idx[-1] + 1]
        else:
            sims = gram[idx] if gram is not None else embeddings[idx] @ embeddings.T
        nearest = _nearest(sims, idx, k, codes)
        votes = np.bincount((np.arange(len(idx))[:, None] * n_classes + codes[nearest]).ravel(),
                            minlength=len(idx) * n_classes).reshape(len(idx), n_classes)
        own = codes[idx]
        # the majority: most votes, then the record's own label, then the label last in str order
        rank = votes * (2 * n_classes) + np.arange(n_classes)
        rank[np.arange(len(idx)), own] += n_classes
        majority = rank.argmax(axis=1)
        own_votes = votes[np.arange(len(idx)), own]
        for i in np.flatnonzero(1 - own_votes / k >= min_disagreement).tolist():
            r, row = int(idx[i]), votes[i]
            counts = {classes[c]: int(row[c]) for c in np.flatnonzero(row).tolist()}
            out[r] = LabelNeighbourhood(labels[r], classes[int(majority[i])], 1 - int(own_votes[i]) / k, counts)
    return out


@compiled
def _nearest(sims, own, k, codes):
    """Row i's k most similar columns other than own[i], in no order.

    Of equal similarities a column labelled like row own[i] wins, then the lower column: a
    record is never outvoted by a tie that could as well have gone its way. One pass over each
    row keeps its best k in a heap with the worst at the root, about one comparison per column.
    """
    n_rows, n = sims.shape
    out = np.empty((n_rows, k), dtype=np.int64)
    heap = np.empty(k, dtype=sims.dtype)
    agree = np.empty(k, dtype=np.bool_)
    cols = np.empty(k, dtype=np.int64)

    def worse(s, a, j, t):  # is (s, a, j) worse than the heap's entry t?
        return s < heap[t] or (s == heap[t] and (a < agree[t] or (a == agree[t] and j > cols[t])))

    for i in range(n_rows):
        size = 0
        label = codes[own[i]]
        for j in range(n):
            if j == own[i]:
                continue
            s = sims[i, j]
            a = codes[j] == label
            if size == k:
                if worse(s, a, j, 0):
                    continue
                c = 0  # it replaces the root and sinks
                while True:
                    child = 2 * c + 1
                    if child >= k:
                        break
                    if child + 1 < k and worse(heap[child + 1], agree[child + 1], cols[child + 1], child):
                        child += 1
                    if worse(s, a, j, child):
                        break
                    heap[c], agree[c], cols[c] = heap[child], agree[child], cols[child]
                    c = child
            else:  # not yet full: it rises from the end
                c = size
                size += 1
                while c > 0:
                    parent = (c - 1) // 2
                    if not worse(s, a, j, parent):
                        break
                    heap[c], agree[c], cols[c] = heap[parent], agree[parent], cols[parent]
                    c = parent
            heap[c], agree[c], cols[c] = s, a, j
        out[i] = cols
    return out


_GRAM_LIMIT = 4096  # rows: a float32 Gram matrix of at most 64 MiB
_VOTE_CELLS = 4_000_000
