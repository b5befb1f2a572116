"""The question–answer consistency gate: an answer that answers a different question.

The most common defect in instruction data is a correct-looking answer attached to the wrong
question. Questions and answers are embedded together (hashed TF-IDF by default, MiniLM on
request), and each record's own question–answer similarity is judged against the Datanet's
own distribution rather than a fixed cut-off:

- `unrelated_answer`: the pair is no more alike than the question is to the Datanet's other
  answers — below the `null_quantile` of similarities between questions and answers of
  different records;
- `answers_another_question`: another record's question matches this answer better than its
  own question does, by at least `margin_sd` standard deviations of the Datanet's own
  question–answer similarities (so one setting suits hashed TF-IDF and MiniLM alike, whose
  similarities live on different scales).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ledgerlm.validation.embeddings import Embedder, embed_rows
from ledgerlm.validation.policy import QaConsistencyRule
from ledgerlm.validation.sparse_rows import SparseRows, best_matches, paired_dots


@dataclass(frozen=True)
class QaMismatch:
    """Why a record's answer does not fit its question; `other` is the row of a better-fitting question."""

    code: str
    score: float
    own: float
    reference: float
    other: int | None = None


# how many shifted pairings sample the Datanet's mismatched-pair similarities
_NULL_SHIFTS = 8


def qa_mismatches(questions: Sequence[str], answers: Sequence[str], n_judged: int, embedder: Embedder,
                  rule: QaConsistencyRule, chunk: int = 2048) -> dict[int, QaMismatch]:
    """Mismatches among the first `n_judged` rows; the other rows are accepted pairs that only inform the distribution."""
    n = len(questions)
    vectors = embed_rows(embedder, list(questions) + list(answers))
    if isinstance(vectors, SparseRows):
        # a bag-of-features row fills few buckets (a question a few dozen): products of filled
        # buckets only, from the rows as they come
        q, a = vectors.rows(0, n), vectors.rows(n, 2 * n)
        own = paired_dots(q, a, np.arange(n), np.arange(n))
        shifts = np.asarray(_null_shifts(n))
        each = np.repeat(np.arange(n), len(shifts))
        null = paired_dots(q, a, each, (each - np.tile(shifts, n)) % n)
    else:  # dense rows (MiniLM): BLAS
        q, a = vectors[:n], vectors[n:]
        own = np.einsum("ij,ij->i", q, a)
        null = _null_similarities(q, a)
    floor = float(np.quantile(null, rule.null_quantile))
    margin = rule.margin_sd * float(own.std())
    out: dict[int, QaMismatch] = {}
    for start in range(0, n_judged, chunk):
        stop = min(n_judged, start + chunk)
        rows = np.arange(start, stop)
        if isinstance(vectors, SparseRows):
            best, best_sim = best_matches(a.rows(start, stop), q, offset=start)
        else:
            sims = a[start:stop] @ q.T
            sims[np.arange(len(rows)), rows] = -np.inf
            best = sims.argmax(axis=1)
            best_sim = sims[np.arange(len(rows)), best]
        gain = best_sim - own[rows]
        another = gain >= margin
        unrelated = ~another & (own[rows] < floor)
        for i in np.flatnonzero(another | unrelated).tolist():
            r = start + i
            if another[i]:
                out[r] = QaMismatch("answers_another_question", min(1.0, 0.5 + float(gain[i])),
                                    float(own[r]), float(best_sim[i]), int(best[i]))
            else:
                out[r] = QaMismatch("unrelated_answer", min(1.0, 0.5 + float(floor - own[r])), float(own[r]), floor)
    return out


def _null_shifts(n: int) -> range:
    return range(1, min(_NULL_SHIFTS, n - 1) + 1)


def _null_similarities(q: np.ndarray, a: np.ndarray, block: int = 256) -> np.ndarray:
    """Row i's question against answer i - s (np.roll's pairing) for each shift s: the mismatched pairs.

    Taken a block of rows at a time for every shift, so the rows each shift reads are still in
    cache from the one before (the rows are the same for every shift, only the pairing moves).
    """
    n = len(q)
    shifts = _null_shifts(n)
    out = np.empty((len(shifts), n), dtype=q.dtype)
    for start in range(0, n, block):
        stop = min(n, start + block)
        for k, s in enumerate(shifts):
            partner = a[start - s : stop - s] if start >= s else a[np.arange(start, stop) - s]
            out[k, start:stop] = np.einsum("ij,ij->i", q[start:stop], partner)
    return out.ravel()
