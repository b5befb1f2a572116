"""The label-noise gate: a label that most of its nearest labelled neighbours contradict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LabelNeighbourhood:
    """How a labelled record's k nearest neighbours vote on its label."""

    label: str
    majority_label: str
    disagreement: float
    counts: dict[str, int] = field(default_factory=dict)


def knn_label_disagreement(embeddings: np.ndarray, labels: Sequence[str], k: int,
                           rows: Sequence[int] | None = None, chunk: int = 1024) -> dict[int, LabelNeighbourhood]:
    """For each row, the share of its k nearest other rows (cosine) whose label differs.

    This is the kNN label-noise heuristic of data cleaning (Wilson's edited nearest neighbour,
    1972): a label most of its neighbours contradict is likely wrong.
    """
    n = len(labels)
    rows = range(n) if rows is None else rows
    k = min(k, n - 1)
    out: dict[int, LabelNeighbourhood] = {}
    if k < 1:
        return out
    label_arr = np.asarray(labels, dtype=object)
    rows = list(rows)
    # a Gram matrix of one array with itself takes BLAS's symmetric product (half the work of a
    # general one), so when it fits, all similarities come from one product
    gram = embeddings @ embeddings.T if n <= _GRAM_LIMIT and len(rows) > n // 2 else None
    for start in range(0, len(rows), chunk):
        idx = np.asarray(rows[start : start + chunk])
        sims = gram[idx] if gram is not None else embeddings[idx] @ embeddings.T
        sims[np.arange(len(idx)), idx] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, neigh in zip(idx, nearest):
            counts = Counter(label_arr[neigh].tolist())
            own = labels[r]
            majority, _ = max(counts.items(), key=lambda kv: (kv[1], kv[0] == own, str(kv[0])))
            out[int(r)] = LabelNeighbourhood(own, majority, 1 - counts.get(own, 0) / k, dict(counts))
    return out


_GRAM_LIMIT = 4096  # rows: a float32 Gram matrix of at most 64 MiB
