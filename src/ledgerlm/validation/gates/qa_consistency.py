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
from scipy.sparse import csr_matrix

from ledgerlm.validation.embeddings import Embedder
from ledgerlm.validation.policy import QaConsistencyRule


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
    vectors = embedder.embed(list(questions) + list(answers))
    q, a = vectors[:n], vectors[n:]
    own = np.einsum("ij,ij->i", q, a)
    shifts = range(1, min(_NULL_SHIFTS, n - 1) + 1)
    # row i against answer i - s (np.roll's pairing), as two slices instead of a rolled copy
    null = np.concatenate([part for s in shifts for part in
                           (np.einsum("ij,ij->i", q[:s], a[n - s :]), np.einsum("ij,ij->i", q[s:], a[: n - s]))])
    floor = float(np.quantile(null, rule.null_quantile))
    margin = rule.margin_sd * float(own.std())
    # a question fills few of the buckets a bag-of-features embedding has: multiplying only its
    # filled ones costs a fraction of the dense product; dense embeddings (MiniLM) stay dense
    sparse_q = _sparse_rows(q)
    # the sparse product comes out transposed and is copied once: half the rows keep the peak the same
    step = chunk if sparse_q is None else max(1, chunk // 2)
    out: dict[int, QaMismatch] = {}
    for start in range(0, n_judged, step):
        stop = min(n_judged, start + step)
        rows = np.arange(start, stop)
        if sparse_q is not None:
            sims = np.ascontiguousarray((sparse_q @ np.ascontiguousarray(a[start:stop].T)).T)
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


# below this share of filled entries a CSR product beats BLAS on the dense rows (scipy's kernel
# does about a sixteenth of BLAS's multiply-adds per second)
_SPARSE_SHARE = 1 / 16


def _sparse_rows(x: np.ndarray) -> csr_matrix | None:
    """`x` as a CSR matrix when few enough of its entries are filled for a sparse product to pay, else None."""
    filled = x != 0
    per_row = np.count_nonzero(filled, axis=1)
    if per_row.sum() >= _SPARSE_SHARE * x.size:
        return None
    # nonzero() walks rows in order, so its columns already come in CSR order
    return csr_matrix((x[filled], np.nonzero(filled)[1], np.r_[0, np.cumsum(per_row)]), shape=x.shape)
