"""MinHash/LSH near-duplicate index over a Datanet's accepted texts (datasketch), persistable as signatures."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Hashable, Iterable
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

from ledgerlm.validation.embeddings import sorted_unique
from ledgerlm.validation.errors import ValidationError

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_SCHEME = "affine32"


def normalise(text: str) -> str:
    """Lower-case, punctuation and runs of spacing folded to one space: what shingles are cut from."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def shingles(text: str, size: int = 5) -> set[str]:
    """Character `size`-grams of the normalised text (a text shorter than `size` is one shingle).

    Character shingles (Broder, 1997) keep a typo or a swapped word from hiding a copy: one edit
    changes only about `size` shingles of a few hundred.
    """
    norm = normalise(text)
    if not norm:
        return set()
    norm = norm.ljust(size)
    return {norm[i : i + size] for i in range(len(norm) - size + 1)}


# polynomial weights for a 64-bit rolling hash of `size` code points
_POLY = 0x100000001B3


def _shingle_hashes(norms: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (doc, 32-bit shingle hash) pairs for non-empty normalised texts, vectorised."""
    norms = [n.ljust(size) if n else "" for n in norms]
    lengths = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
    ends = np.cumsum(lengths)
    codes = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n_win = len(codes) - size + 1
    if n_win <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint32)
    h = np.zeros(n_win, dtype=np.uint64)
    for j in range(size):
        h = h * np.uint64(_POLY) + codes[j : j + n_win]
    h ^= h >> np.uint64(32)
    win_start = np.arange(n_win)
    doc = np.searchsorted(ends, win_start, side="right")
    valid = win_start + size <= ends[np.minimum(doc, len(ends) - 1)]
    keys, _ = sorted_unique((doc[valid].astype(np.uint64) << np.uint64(32)) | (h[valid] & np.uint64(0xFFFFFFFF)))
    return (keys >> np.uint64(32)).astype(np.int64), (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, the same pre-mix datasketch's affine32 scheme applies."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


class NearDuplicateIndex:
    """Texts keyed by contribution id (or content hash), queryable for estimated Jaccard >= threshold.

    Wraps `datasketch.MinHashLSH` (Indyk & Motwani LSH over MinHash signatures). The LSH
    `threshold` decides which candidates come back cheaply; the gate then keeps those whose
    estimated Jaccard reaches its own (policy) threshold, which must not be lower. Persist with
    `save`/`to_bytes` (keys + uint32 signatures) and restore with `load`/`from_bytes`, or rebuild
    from texts with `from_texts`; all give the same answers for the same parameters.
    """

    def __init__(self, threshold: float = 0.7, num_perm: int = 128, shingle_size: int = 5, seed: int = 1):
        if not 0.0 < threshold < 1.0:
            raise ValidationError("near-duplicate index threshold must be in (0, 1)", field="threshold")
        self.threshold = threshold
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.seed = seed
        self._permutations = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._signatures: dict[Hashable, MinHash] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._signatures

    def signatures(self, texts: list[str]) -> list[MinHash | None]:
        """MinHash signatures of many texts at once (None for a text with no shingles).

        Equal to feeding each text's 32-bit shingle hashes to `MinHash.update_batch` with the
        identity hash function; computed for the whole batch with numpy instead of per text.
        """
        docs, hashes = _shingle_hashes([normalise(t) for t in texts], self.shingle_size)
        out: list[MinHash | None] = [None] * len(texts)
        if len(docs) == 0:
            return out
        a, b = self._permutations
        mixed = _fmix32(hashes)
        boundaries = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        # chunks of whole documents keep the (shingles x permutations) matrix small
        chunk_rows = 65_536
        i = 0
        while i < len(boundaries):
            j = i
            while j + 1 < len(boundaries) and boundaries[j + 1] - boundaries[i] < chunk_rows:
                j += 1
            lo = boundaries[i]
            hi = boundaries[j + 1] if j + 1 < len(boundaries) else len(docs)
            # permutations x shingles, so the per-document min runs along contiguous memory
            phv = a[:, None] * mixed[None, lo:hi] + b[:, None]
            mins = np.minimum.reduceat(phv, boundaries[i : j + 1] - lo, axis=1).T
            for row, d in zip(mins, docs[boundaries[i : j + 1]]):
                out[int(d)] = self._wrap(row)
            i = j + 1
        return out

    def _wrap(self, hashvalues: np.ndarray) -> MinHash:
        return MinHash(seed=self.seed, hashfunc=int, hashvalues=hashvalues,
                       permutations=self._permutations, scheme=_SCHEME)

    def signature(self, text: str) -> MinHash | None:
        """The MinHash of one text's shingles, or None for a text with no shingles (empty)."""
        return self.signatures([text])[0]

    def add(self, key: Hashable, text: str) -> None:
        """Index one accepted text; re-adding an existing key is a no-op, empty texts are skipped."""
        if key in self._signatures:
            return
        mh = self.signature(text)
        if mh is not None:
            self._insert(key, mh)

    def _insert(self, key: Hashable, mh: MinHash) -> None:
        self._lsh.insert(key, mh)
        self._signatures[key] = mh

    def remove(self, key: Hashable) -> None:
        if key in self._signatures:
            self._lsh.remove(key)
            del self._signatures[key]

    def query_signature(self, mh: MinHash, min_jaccard: float | None = None) -> list[tuple[Hashable, float]]:
        """Indexed keys whose estimated Jaccard with `mh` is >= min_jaccard, most similar first."""
        floor = self.threshold if min_jaccard is None else min_jaccard
        hits = []
        for key in self._lsh.query(mh):
            sim = float(np.mean(self._signatures[key].hashvalues == mh.hashvalues))
            if sim >= floor:
                hits.append((key, sim))
        hits.sort(key=lambda kv: (-kv[1], str(kv[0])))
        return hits

    def query(self, text: str, min_jaccard: float | None = None) -> list[tuple[Hashable, float]]:
        mh = self.signature(text)
        return [] if mh is None else self.query_signature(mh, min_jaccard)

    def add_many(self, items: Iterable[tuple[Hashable, str]]) -> None:
        items = [(k, t) for k, t in items if k not in self._signatures]
        for (key, _), mh in zip(items, self.signatures([t for _, t in items])):
            if mh is not None and key not in self._signatures:
                self._insert(key, mh)

    @classmethod
    def from_texts(cls, items: Iterable[tuple[Hashable, str]], **params) -> NearDuplicateIndex:
        index = cls(**params)
        index.add_many(items)
        return index

    def to_bytes(self) -> bytes:
        keys = list(self._signatures)
        meta = {
            "threshold": self.threshold, "num_perm": self.num_perm,
            "shingle_size": self.shingle_size, "seed": self.seed, "keys": keys,
        }
        sigs = (np.stack([self._signatures[k].hashvalues for k in keys]) if keys
                else np.zeros((0, self.num_perm), dtype=np.uint32))
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), signatures=sigs)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NearDuplicateIndex:
        with np.load(io.BytesIO(data)) as npz:
            meta = json.loads(npz["meta"].tobytes())
            sigs = npz["signatures"]
        keys = meta.pop("keys")
        index = cls(**meta)
        for key, row in zip(keys, sigs):
            index._insert(key, index._wrap(row))
        return index

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> NearDuplicateIndex:
        return cls.from_bytes(Path(path).read_bytes())
