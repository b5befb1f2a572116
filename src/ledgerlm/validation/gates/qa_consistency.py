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
    floor = float(np.quantile(_null_similarities(q, a), rule.null_quantile))
    margin = rule.margin_sd * float(own.std())
    # a question fills few of the buckets a bag-of-features embedding has: multiplying only its
    # filled ones costs a fraction of the dense product; dense embeddings (MiniLM) stay dense
    sparse_q = _sparse_rows(q)
    out: dict[int, QaMismatch] = {}
    for start in range(0, n_judged, chunk):
        stop = min(n_judged, start + chunk)
        rows = np.arange(start, stop)
        if sparse_q is not None:
            best, best_sim = _best_questions_sparse(sparse_q, a[start:stop], rows)
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


def _null_similarities(q: np.ndarray, a: np.ndarray, block: int = 256) -> np.ndarray:
    """Row i's question against answer i - s (np.roll's pairing) for each shift s: the mismatched pairs.

    Taken a block of rows at a time for every shift, so the rows each shift reads are still in
    cache from the one before (the rows are the same for every shift, only the pairing moves).
    """
    n = len(q)
    shifts = range(1, min(_NULL_SHIFTS, n - 1) + 1)
    out = np.empty((len(shifts), n), dtype=q.dtype)
    for start in range(0, n, block):
        stop = min(n, start + block)
        for k, s in enumerate(shifts):
            partner = a[start - s : stop - s] if start >= s else a[np.arange(start, stop) - s]
            out[k, start:stop] = np.einsum("ij,ij->i", q[start:stop], partner)
    return out.ravel()


def _best_questions_sparse(sparse_q: csr_matrix, answers: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each answer, the question (other than its own row) it is most similar to, and that similarity.

    The product comes out questions x answers; the first question reaching each answer's
    maximum is what `argmax` over the transposed matrix would pick, found without copying it.
    """
    sims = sparse_q @ _dense_transpose(answers)
    cols = np.arange(len(rows))
    sims[rows, cols] = -np.inf
    best_sim = sims.max(axis=0)
    hit_q, hit_a = np.nonzero(sims == best_sim)  # row-major: questions in order within each answer
    first = np.full(len(rows), len(sims), dtype=np.int64)
    np.minimum.at(first, hit_a, hit_q)
    return first, best_sim


def _dense_transpose(x: np.ndarray) -> np.ndarray:
    """`x.T` as a C-ordered array: only the filled entries are written, not the whole matrix copied."""
    filled = np.flatnonzero(x != 0)
    out = np.zeros((x.shape[1], x.shape[0]), dtype=x.dtype)
    out[filled % x.shape[1], filled // x.shape[1]] = x.ravel()[filled]
    return out


# below this share of filled entries a CSR product beats BLAS on the dense rows (scipy's kernel
# does about a sixteenth of BLAS's multiply-adds per second)
_SPARSE_SHARE = 1 / 16


def _sparse_rows(x: np.ndarray) -> csr_matrix | None:
    """`x` as a CSR matrix when few enough of its entries are filled for a sparse product to pay, else None."""
    filled = np.flatnonzero(x != 0)
    if len(filled) >= _SPARSE_SHARE * x.size:
        return None
    # flat positions come in row order, so their columns already come in CSR order
    rows, cols = np.divmod(filled, x.shape[1])
    indptr = np.searchsorted(rows, np.arange(x.shape[0] + 1))
    return csr_matrix((x.ravel()[filled], cols, indptr), shape=x.shape)
