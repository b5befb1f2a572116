"""MinHash/LSH near-duplicate index over a Datanet's accepted texts (datasketch), persistable as signatures."""

from __future__ import annotations

import io
import json
import re
import zlib
from pathlib import Path
from typing import Hashable, Iterable

import numpy as np
from datasketch import MinHash, MinHashLSH

from ledgerlm.validation.errors import ValidationError

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_SCHEME = "affine32"


def shingles(text: str, size: int = 5) -> set[bytes]:
    """Character `size`-grams of the text with case, punctuation and spacing normalised away.

    Character shingles (Broder, 1997) keep a typo or a swapped word from hiding a copy: one edit
    changes only about `size` shingles of a few hundred.
    """
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    if not norm:
        return set()
    if len(norm) <= size:
        return {norm.encode("utf-8")}
    return {norm[i : i + size].encode("utf-8") for i in range(len(norm) - size + 1)}


def _crc32(b: bytes) -> int:
    return zlib.crc32(b)


class NearDuplicateIndex:
    """Texts keyed by contribution id (or content hash), queryable for estimated Jaccard >= threshold.

    Wraps `datasketch.MinHashLSH` (Indyk & Motwani LSH over MinHash signatures). The LSH
    `threshold` decides which candidates come back cheaply; the gate then keeps those whose
    estimated Jaccard reaches its own (policy) threshold, which must not be lower. Persist with
    `save`/`to_bytes` (keys + uint32 signatures) and restore with `load`/`from_bytes`, or rebuild
    from texts with `from_texts`; all give the same answers for the same parameters.
    """

    def __init__(self, threshold: float = 0.5, num_perm: int = 128, shingle_size: int = 5, seed: int = 1):
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

    def signature(self, text: str) -> MinHash | None:
        """The MinHash of the text's shingles, or None for a text with no shingles (empty)."""
        sh = shingles(text, self.shingle_size)
        if not sh:
            return None
        mh = MinHash(
            num_perm=self.num_perm, seed=self.seed, hashfunc=_crc32,
            permutations=self._permutations, scheme=_SCHEME,
        )
        mh.update_batch(sh)
        return mh

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

    @classmethod
    def from_texts(cls, items: Iterable[tuple[Hashable, str]], **params) -> "NearDuplicateIndex":
        index = cls(**params)
        for key, text in items:
            index.add(key, text)
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
    def from_bytes(cls, data: bytes) -> "NearDuplicateIndex":
        with np.load(io.BytesIO(data)) as npz:
            meta = json.loads(npz["meta"].tobytes())
            sigs = npz["signatures"]
        keys = meta.pop("keys")
        index = cls(**meta)
        for key, row in zip(keys, sigs):
            index._insert(key, MinHash(
                seed=index.seed, hashfunc=_crc32, hashvalues=row,
                permutations=index._permutations, scheme=_SCHEME,
            ))
        return index

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "NearDuplicateIndex":
        return cls.from_bytes(Path(path).read_bytes())
