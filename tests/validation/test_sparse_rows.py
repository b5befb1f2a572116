"""Products of sparse embedding rows give the dense products' values, and the same row on ties."""

from __future__ import annotations

import numpy as np
import pytest

from ledgerlm.validation.embeddings import HashedTfidfEmbedder
from ledgerlm.validation.sparse_rows import SparseRows, best_matches, paired_dots


def _rows(dense: np.ndarray) -> SparseRows:
    filled = dense != 0
    return SparseRows(np.r_[0, np.cumsum(filled.sum(1))].astype(np.int64),
                      np.nonzero(filled)[1].astype(np.int64), dense[filled], dense.shape[1])


def _random_rows(rng, n: int, dim: int = 64, fill: float = 0.2) -> np.ndarray:
    dense = (rng.normal(size=(n, dim)) * (rng.random((n, dim)) < fill)).astype(np.float32)
    return dense


def test_dense_and_row_ranges_round_trip():
    rng = np.random.default_rng(0)
    dense = _random_rows(rng, 30)
    dense[4] = 0  # an empty row
    rows = _rows(dense)
    assert np.array_equal(rows.dense(), dense)
    assert np.array_equal(rows.rows(3, 11).dense(), dense[3:11])


def test_no_texts_embed_to_no_rows():
    rows = HashedTfidfEmbedder().embed_sparse([])
    assert len(rows) == 0 and rows.dense().shape == (0, 2048)


def test_paired_dots_are_the_dense_dot_products():
    rng = np.random.default_rng(1)
    a, b = _random_rows(rng, 40), _random_rows(rng, 25)
    left, right = rng.integers(0, 40, size=300), rng.integers(0, 25, size=300)
    left.sort()  # repeated left rows come together, and some do not
    left[::7] = rng.integers(0, 40, size=len(left[::7]))
    got = paired_dots(_rows(a), _rows(b), left, right)
    assert got.dtype == np.float32
    assert np.allclose(got, np.einsum("ij,ij->i", a[left], b[right]), atol=1e-5)


@pytest.mark.parametrize("offset", [0, 5])
def test_best_matches_are_the_dense_argmax_without_the_own_row(offset):
    rng = np.random.default_rng(offset)
    queries, targets = _random_rows(rng, 300), _random_rows(rng, 310)  # more queries than one block
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    targets[20] = targets[9]  # equal rows tie: the earlier wins
    queries[7] = targets[9]
    best, best_sim = best_matches(_rows(queries), _rows(targets), offset)
    sims = queries @ targets.T
    sims[np.arange(300), np.arange(300) + offset] = -np.inf
    assert best[7] == 9
    others = np.arange(300) != 7
    assert np.array_equal(best[others], sims.argmax(axis=1)[others])
    assert np.allclose(best_sim, sims.max(axis=1), atol=1e-5)


def test_best_matches_with_only_the_own_target_has_none():
    rows = _rows(np.ones((1, 8), dtype=np.float32))
    best, best_sim = best_matches(rows, rows)
    assert best.tolist() == [1] and best_sim.tolist() == [-np.inf]


def test_sparse_question_products_are_the_csr_products_bit_for_bit():
    # the order a CSR matrix times a dense one adds the products: the answer the gate gave before
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(3)
    words = "the cat sat on a mat while dogs ran past every quiet house in town".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(80)]
    rows = HashedTfidfEmbedder().embed_sparse(texts)
    q, a = rows.rows(0, 40), rows.rows(40, 80)
    sims = (csr_matrix((q.values, q.indices, q.indptr), shape=(40, q.dim)) @ np.ascontiguousarray(a.dense().T)).T
    sims[np.arange(40), np.arange(40)] = -np.inf
    best, best_sim = best_matches(a, q)
    assert np.array_equal(best_sim.view(np.uint32), sims.max(axis=1).view(np.uint32))
    assert np.array_equal(best, sims.argmax(axis=1))
