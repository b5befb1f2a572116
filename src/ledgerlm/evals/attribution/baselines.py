"""What attribution is compared with: random, BM25, MiniLM embeddings and the exact LoRA gradients.

BM25 over the training text is the strong baseline of the fact-tracing literature (Akyürek et
al., 2022); MiniLM sentence embeddings are the semantic one. The exact per-example LoRA
gradients of the same adapter (unprojected, through the index's own hooks with an identity projection, and the
query weighted exactly as the index weights it) give TracIn at the final checkpoint (dot product,
Pruthi et al., 2020) and exact gradient cosine: the ceiling the projected index is measured
against.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from ledgerlm.attribution.features import LoraProjector, example_features, record_examples

_WORD = re.compile(r"\w+")


def record_text(record: dict) -> str:
    return " ".join(str(v) for k, v in sorted(record.items()) if not k.startswith("_"))


def bm25_scores(records: list[dict], queries: list[str]) -> np.ndarray:
    """(queries, records) Okapi BM25 over lower-cased words of the training text."""
    from rank_bm25 import BM25Okapi

    corpus = [_WORD.findall(record_text(r).lower()) for r in records]
    bm25 = BM25Okapi(corpus)
    return np.stack([bm25.get_scores(_WORD.findall(q.lower())) for q in queries])


def embedding_scores(records: list[dict], queries: list[str]) -> tuple[np.ndarray, str]:
    """(queries, records) cosine similarity of all-MiniLM-L6-v2 embeddings, and the model used.

    Falls back to hashed TF-IDF (and says so) when the MiniLM package cannot be loaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ledgerlm.validation.embeddings import HashedTfidfEmbedder, MiniLMEmbedder

    texts = [record_text(r) for r in records]
    try:
        embedder, name = MiniLMEmbedder(device="cpu"), "minilm"
        rows = embedder.embed(texts)
    except Exception as exc:  # noqa: BLE001 - any failure to load means "use the fallback"
        embedder, name = HashedTfidfEmbedder(), f"tfidf (MiniLM unavailable: {exc})"
        both = embedder.embed(texts + list(queries))
        return both[len(texts):] @ both[:len(texts)].T, name
    return embedder.embed(list(queries)) @ rows.T, name


def exact_projector(model, head: tuple[int, ...] = ()) -> LoraProjector:
    """A projector wide enough to keep every LoRA weight exactly: features are the true gradients
    (of the positions after `head`, when given, as the index's features are)."""
    return LoraProjector.for_model(model, dim=sys.maxsize, head=head)


def exact_row_gradients(model, tokenizer, records: list[dict], rows: list[int], projector, *,
                        max_len: int) -> np.ndarray:
    """(rows, LoRA parameters) unprojected per-record gradients of the summed token loss."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    found = example_features(model, record_examples(records, rows, tokenizer, max_len), projector,
                             max_len=max_len, pad_id=pad)
    return np.stack([found.get(r, np.zeros(projector.dim)) for r in rows])


def cosine_rows(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of every row with `query` (0 for a zero row)."""
    norms = np.linalg.norm(rows, axis=1) * (np.linalg.norm(query) or 1.0)
    return np.where(norms > 0, rows @ query / np.where(norms > 0, norms, 1.0), 0.0)
