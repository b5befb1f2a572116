"""Data valuation of pending contributions: exact KNN-Shapley and Data-OOB on embeddings, rolled up per contributor.

Sources:
- R. Jia, D. Dao, B. Wang, F. A. Hubis, N. M. Gurel, B. Li, C. Zhang, C. J. Spanos, D. Song,
  "Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms", VLDB 2019
  (Theorem 1: exact Shapley values of the unweighted KNN classifier utility in O(N log N)).
- Y. Kwon, J. Zou, "Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data Value",
  ICML 2023 (value = mean out-of-bag correctness over a bagged ensemble).
- J. B. MacQueen (1967) / Dhillon & Modha (2001) for the spherical k-means used as a label proxy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ledgerlm.validation.embeddings import Embedder, resolve_embedder
from ledgerlm.validation.errors import ValuationError
from ledgerlm.validation.gates import Candidate

METHODS = ("knn_shapley", "data_oob")


def knn_shapley(train_emb: np.ndarray, train_labels: Sequence, val_emb: np.ndarray,
                val_labels: Sequence, k: int = 10, chunk: int = 256) -> np.ndarray:
    """Exact Shapley value of every training row for the K-nearest-neighbour classifier utility.

    The utility of a training subset S on one validation point (x, y) is
    U(S) = (1/K) * sum_{j=1}^{min(K, |S|)} 1[y_{a_j(S)} = y], with a_j(S) the j-th nearest row of S
    to x (cosine similarity on L2-normalised embeddings; ties broken by row order). Sorting all N
    rows by distance, Jia et al. (2019, Theorem 1) give the Shapley values exactly:

        s_(N) = 1[y_(N) = y] / N
        s_(i) = s_(i+1) + (1[y_(i) = y] - 1[y_(i+1) = y]) / K * min(K, i) / i

    The value for a validation set is the mean over its points. The values sum to the KNN
    accuracy utility U(D) (Shapley efficiency): positive rows help, negative rows (a label that
    contradicts nearby validation points) hurt.
    """
    train_emb = np.asarray(train_emb, dtype=np.float32)
    val_emb = np.asarray(val_emb, dtype=np.float32)
    n, m = len(train_emb), len(val_emb)
    if n == 0 or m == 0:
        raise ValuationError("KNN-Shapley needs at least one training and one validation record",
                             field="validation" if m == 0 else "candidates")
    if train_emb.shape[1] != val_emb.shape[1]:
        raise ValuationError("training and validation embeddings have different widths", field="validation")
    if k < 1:
        raise ValuationError("k must be at least 1", field="k")
    y_train = np.asarray(train_labels)
    y_val = np.asarray(val_labels)
    positions = np.arange(1, n, dtype=np.float64)  # i = 1..N-1 in the recursion
    step = np.minimum(k, positions) / (k * positions)
    values = np.zeros(n, dtype=np.float64)
    for start in range(0, m, chunk):
        sims = val_emb[start : start + chunk] @ train_emb.T
        order = np.argsort(-sims, axis=1, kind="stable")
        match = (y_train[order] == y_val[start : start + chunk, None]).astype(np.float64)
        s = np.empty_like(match)
        s[:, -1] = match[:, -1] / n
        if n > 1:
            diffs = (match[:, :-1] - match[:, 1:]) * step
            s[:, :-1] = s[:, -1:] + np.cumsum(diffs[:, ::-1], axis=1)[:, ::-1]
        np.add.at(values, order.ravel(), s.ravel())
    return values / m


def data_oob(embeddings: np.ndarray, labels: Sequence, n_models: int = 64, k: int = 5,
             seed: int = 0) -> np.ndarray:
    """Data-OOB values: for each row, how often bagged kNN models that did not train on it predict its label.

    Kwon & Zou (2023) define the value of a datum as its mean out-of-bag correctness across a
    bagging ensemble; they use trees, we use kNN classifiers (k nearest distinct in-bag rows,
    cosine) because the embeddings already make neighbours meaningful and no extra dependency is
    needed. Rows never out of bag get the ensemble mean. Values lie in [0, 1]; low means the
    rest of the data contradicts the row's label.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    n = len(emb)
    if n < 3:
        raise ValuationError("Data-OOB needs at least 3 records", field="candidates")
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    rng = np.random.default_rng(seed)
    sims = emb @ emb.T if n <= 10_000 else None
    hits = np.zeros(n)
    seen = np.zeros(n)
    for _ in range(n_models):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        in_bag = np.flatnonzero(counts)
        oob = np.flatnonzero(counts == 0)
        if len(oob) == 0 or len(in_bag) == 0:
            continue
        kk = min(k, len(in_bag))
        block = sims[np.ix_(oob, in_bag)] if sims is not None else emb[oob] @ emb[in_bag].T
        nearest = in_bag[np.argpartition(-block, kk - 1, axis=1)[:, :kk]]
        votes = np.zeros((len(oob), len(classes)))
        np.add.at(votes, (np.repeat(np.arange(len(oob)), kk), y[nearest].ravel()), 1.0)
        hits[oob] += votes.argmax(axis=1) == y[oob]
        seen[oob] += 1
    out = np.full(n, hits.sum() / max(seen.sum(), 1.0))
    mask = seen > 0
    out[mask] = hits[mask] / seen[mask]
    return out


def cluster_labels(embeddings: np.ndarray, n_clusters: int, seed: int = 0, iters: int = 25) -> np.ndarray:
    """Spherical k-means cluster ids, a label proxy for unlabelled text (deterministic for a seed)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    n = len(emb)
    n_clusters = max(1, min(n_clusters, n))
    rng = np.random.default_rng(seed)
    # k-means++ seeding keeps small clusters from being swallowed
    centres = [emb[rng.integers(n)]]
    closest = 1 - emb @ centres[0]
    for _ in range(1, n_clusters):
        p = np.clip(closest, 0, None) ** 2
        idx = rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)
        centres.append(emb[idx])
        closest = np.minimum(closest, 1 - emb @ emb[idx])
    centres = np.stack(centres)
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        new = (emb @ centres.T).argmax(axis=1)
        if _ > 0 and np.array_equal(new, assign):
            break
        assign = new
        for c in range(n_clusters):
            members = emb[assign == c]
            if len(members):
                centre = members.sum(axis=0)
                centres[c] = centre / max(np.linalg.norm(centre), 1e-12)
    return assign


@dataclass(frozen=True)
class ContributorValue:
    """One contributor's valuation roll-up over the batch."""

    contributor: str
    total: float
    mean: float
    count: int


@dataclass(frozen=True)
class ValuationReport:
    """Per-contribution values and the per-contributor roll-up of one valuation run."""

    method: str
    label_source: str
    k: int
    values: dict[int, float]
    by_contributor: dict[str, ContributorValue]

    def lowest(self, fraction: float) -> list[int]:
        """Contribution ids in the lowest-valued `fraction` of the batch (ties by id)."""
        n = round(len(self.values) * fraction)
        return [cid for cid, _ in sorted(self.values.items(), key=lambda kv: (kv[1], kv[0]))[:n]]

    def to_dict(self) -> dict:
        return {
            "method": self.method, "label_source": self.label_source, "k": self.k,
            "values": {str(cid): v for cid, v in self.values.items()},
            "by_contributor": {a: {"total": c.total, "mean": c.mean, "count": c.count}
                               for a, c in self.by_contributor.items()},
        }


def roll_up(values: dict[int, float], contributors: dict[int, str]) -> dict[str, ContributorValue]:
    """Sum and mean of contribution values per contributor."""
    groups: dict[str, list[float]] = defaultdict(list)
    for cid, value in values.items():
        groups[contributors[cid]].append(value)
    return {a: ContributorValue(a, float(sum(v)), float(sum(v) / len(v)), len(v))
            for a, v in sorted(groups.items())}


def relative_values(values: Mapping[int, float]) -> dict[int, float]:
    """Each record's value over its batch's mean (a value at or below zero, or not finite, counts as zero).

    Raw values of different batches do not compare: KNN-Shapley's values of a batch sum to one accuracy, so a
    record's is about 1/size of its batch, while Data-OOB's are accuracies each. Over its batch's mean a record
    of any batch weighs 1 when it is as useful as its batch's average, and a record never valued can weigh
    that too. A batch with nothing useful weighs 0 throughout."""
    kept = {cid: float(v) if math.isfinite(float(v)) and float(v) > 0 else 0.0 for cid, v in values.items()}
    mean = sum(kept.values()) / len(kept) if kept else 0.0
    return {cid: round(v / mean, 6) if mean > 0 else 0.0 for cid, v in kept.items()}


def value_contributions(
    candidates: Sequence[Candidate],
    validation: Sequence[Candidate] = (),
    *,
    method: str = "knn_shapley",
    k: int = 10,
    embedder: str | Embedder = "hashed",
    n_clusters: int | None = None,
    seed: int = 0,
) -> ValuationReport:
    """Value each pending contribution and roll the values up per contributor.

    Labels: when every candidate and validation record carries a label (`Candidate.label`),
    the task is the Datanet's own classification task. Otherwise the label is a proxy — the
    record's spherical k-means cluster over candidates and validation together. With that proxy,
    KNN-Shapley asks "does this record sit where the validation set needs data, among records
    that agree with it?": off-distribution records (junk, off-topic) rank last for every
    validation point and get values near zero, and records whose neighbours belong to another
    cluster get negative values. That is the self-supervised reading of KNN-Shapley's utility;
    it measures relevance and consistency, not factual correctness.

    `knn_shapley` needs `validation` (held-out, accepted records); `data_oob` ignores it.
    """
    if method not in METHODS:
        raise ValuationError(f"unknown valuation method {method!r}; choose one of {', '.join(METHODS)}",
                             field="method")
    if not candidates:
        raise ValuationError("nothing to value: the batch is empty", field="candidates")
    if method == "knn_shapley" and not validation:
        raise ValuationError("KNN-Shapley needs held-out validation records", field="validation")
    emb = resolve_embedder(embedder)
    rows = list(candidates) + (list(validation) if method == "knn_shapley" else [])
    vectors = emb.embed([c.feature_text() for c in rows])
    labels = [c.label for c in rows]
    if all(label is not None for label in labels) and len(set(labels)) >= 2:
        label_source = "label_field"
        y = np.asarray(labels, dtype=object)
    else:
        label_source = "cluster_proxy"
        n_clusters = n_clusters or max(2, round(float(np.sqrt(len(rows) / 2))))
        y = cluster_labels(vectors, n_clusters, seed=seed)
    n = len(candidates)
    if method == "knn_shapley":
        values = knn_shapley(vectors[:n], y[:n], vectors[n:], y[n:], k=k)
    else:
        values = data_oob(vectors, y, k=k, seed=seed)
    by_id = {c.contribution_id: float(v) for c, v in zip(candidates, values)}
    return ValuationReport(method, label_source, k, by_id,
                           roll_up(by_id, {c.contribution_id: c.contributor for c in candidates}))
