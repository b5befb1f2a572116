"""The label-noise gate: a label its nearest labelled neighbours, weighed by similarity, lean away from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ledgerlm.validation.compiled import compiled


@dataclass(frozen=True)
class LabelNeighbourhood:
    """How a labelled record's k nearest neighbours vote on its label.

    `majority_label` and `disagreement` count votes; `leaning_label` is the other label with the
    largest share of the neighbours' similarity (each neighbour weighs its cosine, at least 0), and
    `margin` is that share less the share of the record's own label.
    """

    label: str
    majority_label: str
    disagreement: float
    counts: dict[str, int] = field(default_factory=dict)
    leaning_label: str | None = None
    margin: float = 0.0


def knn_label_disagreement(embeddings: np.ndarray, labels: Sequence[str], k: int,
                           rows: Sequence[int] | None = None, chunk: int = 1024,
                           min_disagreement: float = 0.0, min_margin: float = -1.0) -> dict[int, LabelNeighbourhood]:
    """For each row, the share of its k nearest other rows (cosine) whose label differs, and where they lean.

    This is the kNN label-noise heuristic of data cleaning (Wilson's edited nearest neighbour,
    1972): a label its neighbours contradict is likely wrong. Counted votes alone flag records
    whose neighbours scatter over many other labels (a module's docstrings next to other
    modules'); a flipped label has neighbours that agree on one other label, and the closest of
    them count most, so the similarity-weighted margin of that label tells the two apart. Rows
    whose disagreement is below `min_disagreement` or whose margin is below `min_margin` are left
    out of the answer (a gate only reports the others). Neighbours of equal similarity are taken
    with the row's own label first, then by lower row.
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
        cells = (np.arange(len(idx))[:, None] * n_classes + codes[nearest]).ravel()
        votes = np.bincount(cells, minlength=len(idx) * n_classes).reshape(len(idx), n_classes)
        # each neighbour's vote weighs its similarity (a dissimilar one nothing), in float64
        weights = np.maximum(np.take_along_axis(np.asarray(sims), nearest, axis=1), 0).astype(np.float64)
        weighted = np.bincount(cells, weights=weights.ravel(),
                               minlength=len(idx) * n_classes).reshape(len(idx), n_classes)
        total = weighted.sum(axis=1, keepdims=True)
        shares = np.divide(weighted, total, out=np.zeros_like(weighted), where=total > 0)
        at = np.arange(len(idx))
        own = codes[idx]
        # the majority: most votes, then the record's own label, then the label last in str order
        rank = votes * (2 * n_classes) + np.arange(n_classes)
        rank[at, own] += n_classes
        majority = rank.argmax(axis=1)
        own_votes = votes[at, own]
        # where the neighbours lean: the other label of the largest weighted share, then the last in str order
        others = shares.copy()
        others[at, own] = -1.0
        leaning = n_classes - 1 - others[:, ::-1].argmax(axis=1)
        margin = np.where(total[:, 0] > 0, others[at, leaning] - shares[at, own], 0.0)
        keep = (1 - own_votes / k >= min_disagreement) & (margin >= min_margin)
        for i in np.flatnonzero(keep).tolist():
            r, row = int(idx[i]), votes[i]
            counts = {classes[c]: int(row[c]) for c in np.flatnonzero(row).tolist()}
            out[r] = LabelNeighbourhood(labels[r], classes[int(majority[i])], 1 - int(own_votes[i]) / k, counts,
                                        classes[int(leaning[i])] if n_classes > 1 else None, float(margin[i]))
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
