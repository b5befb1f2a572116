"""Near-duplicate index over a Datanet's texts: one-permutation MinHash signatures and LSH bands, persistable."""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Hashable, Iterable
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from ledgerlm.validation.code_points import blank_non_alnum, undisguised
from ledgerlm.validation.compiled import compiled
from ledgerlm.validation.errors import ValidationError
from ledgerlm.validation.span_hashes import POLY

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
# every ASCII character that is not a letter or digit becomes a space (same as _NON_WORD on ASCII);
# a byte table, because bytes.translate is a plain lookup where str.translate asks a dict per character
_ASCII_NON_WORD = bytes(c if chr(c).isalnum() else 32 for c in range(128)) + bytes(range(128, 256))
_SCHEME = "affine32"  # how datasketch stores the uint32 values; the values themselves are one-permutation
EMPTY = 0xFFFFFFFF  # a bin no shingle reached
# Letters of other scripts (and Latin-script variants) that a reader takes for a Latin letter, NFKC leaves alone:
# "Armenian o" or "ɑ" for "a" in every word made a copy no near copy. A subset of Unicode TR39's confusables
# (the prototype skeleton would be the full answer); lower case only, as `normalise` lower-cases first.
_CONFUSABLE = str.maketrans({
    **dict(zip("аеорсухіјѕһԁԛԝӏ", "aeopcyxijshdqwl")),  # Cyrillic
    **dict(zip("αορνικυ", "aopvik" + "u")),  # Greek
    **dict(zip("օսհոցզ", "ouhngq")),  # Armenian
    **dict(zip("ɑɡıȷɩʏɪ", "agijiyi")),  # Latin letters drawn as others
    **dict(zip("\uab7a\uabaa\uabaf\uab70\uab7c\uab8b\uab72", "acceht" + "a")),  # Cherokee small letters
})


def normalise(text: str) -> str:
    """Lower-case, punctuation and runs of spacing folded to one space: what shingles are cut from.

    A text beyond ASCII is read undisguised first (`code_points.undisguised`): a copy with its
    accents decomposed or its letters full-width looks the same to a reader and was no near copy.
    """
    lower = text.lower() if text.isascii() else undisguised(text).lower().translate(_CONFUSABLE)
    if lower.isascii():  # the common case, folded with C string methods instead of a regex
        return " ".join(lower.encode("ascii").translate(_ASCII_NON_WORD).decode("ascii").split())
    return _NON_WORD.sub(" ", lower).strip()


class Normalised(dict):
    """`normalise` of each text asked for, worked out once however often it is asked."""

    def __missing__(self, text: str) -> str:
        self[text] = folded = normalise(text)
        return folded


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


# `normalise` of one ASCII byte: letters and digits lower-cased, everything else a space
_ASCII_FOLD = np.array([ord(chr(c).lower()) if chr(c).isalnum() else 32 for c in range(128)] + [32] * 128,
                       dtype=np.uint32)


@compiled
def _fold(data, starts, lengths, size, fold):
    """`normalise(text).ljust(size)` ("" for no words) of each text `data[starts[d] : starts[d] + lengths[d]]`,
    as code points end to end, and each one's length: words joined by single spaces.

    A code point below len(fold) becomes fold[c] (32 for no letter or digit); any other passes
    as it is, so a caller has already lower-cased it and made a space of it if it is neither.
    """
    out = np.empty(len(data) + size * len(lengths), dtype=np.uint32)
    out_lengths = np.empty(len(lengths), dtype=np.int64)
    m = 0
    for d in range(len(lengths)):
        begin = m
        gap = False
        for k in range(starts[d], starts[d] + lengths[d]):
            x = data[k]
            c = fold[x] if x < len(fold) else np.uint32(x)
            if c == 32:
                gap = m > begin
            else:
                if gap:
                    out[m] = 32
                    m += 1
                    gap = False
                out[m] = c
                m += 1
        while begin < m < begin + size:
            out[m] = 32
            m += 1
        out_lengths[d] = m - begin
    return out[:m].copy(), out_lengths


@compiled
def _interleave(first, first_lengths, second, second_lengths, from_first):
    """Two runs of texts laid end to end merged into one, in the order `from_first` says."""
    out = np.empty(len(first) + len(second), dtype=first.dtype)
    lengths = np.empty(len(from_first), dtype=np.int64)
    a = b = ia = ib = m = 0
    for d in range(len(from_first)):
        if from_first[d]:
            size = first_lengths[ia]
            out[m : m + size] = first[a : a + size]
            a += size
            ia += 1
        else:
            size = second_lengths[ib]
            out[m : m + size] = second[b : b + size]
            b += size
            ib += 1
        lengths[d] = size
        m += size
    return out, lengths


@compiled
def _minhash_rows(codes, lengths, size, seed_mix, num_perm):
    """One-permutation MinHash rows of texts laid end to end (`codes`, `lengths`): see `signature_matrix`.

    A shingle's hash is `span_hashes`' polynomial hash of its `size` code points, folded to 32
    bits; MurmurHash3's 32-bit finalizer then mixes it once to pick its bin and once more for
    the value the bin keeps the least of. A shingle that repeats is seen once per occurrence:
    a minimum does not care.
    """
    low = np.uint64(0xFFFFFFFF)

    def fmix32(h):  # MurmurHash3's 32-bit finalizer, the pre-mix of datasketch's affine32 scheme
        h ^= h >> np.uint64(16)
        h = (h * np.uint64(0x85EBCA6B)) & low
        h ^= h >> np.uint64(13)
        h = (h * np.uint64(0xC2B2AE35)) & low
        return h ^ (h >> np.uint64(16))

    out = np.full((len(lengths), num_perm), EMPTY, dtype=np.uint32)
    present = np.zeros(len(lengths), dtype=np.bool_)
    poly = np.uint64(POLY)
    top = np.uint64(1)  # poly ** (size - 1): the weight of a shingle's first code point in its hash
    for _ in range(size - 1):
        top *= poly
    start = 0
    for d in range(len(lengths)):
        row = out[d]
        n_shingles = lengths[d] - size + 1
        if n_shingles > 0:
            present[d] = True
            h = np.uint64(0)
            for j in range(start, start + size):
                h = h * poly + np.uint64(codes[j])
            for i in range(start, start + n_shingles):
                if i > start:  # the hash rolls on: modulo 2**64 exactly the hash computed afresh
                    h = (h - np.uint64(codes[i - 1]) * top) * poly + np.uint64(codes[i + size - 1])
                mixed = fmix32(((h ^ (h >> np.uint64(32))) & low) ^ seed_mix)
                b = np.int64((mixed * np.uint64(num_perm)) >> np.uint64(32))
                value = np.uint32(fmix32(mixed ^ np.uint64(0x5BD1E995)) & np.uint64(EMPTY - 1))
                row[b] = min(row[b], value)
        start += lengths[d]
    return out, present


class NearDuplicateIndex:
    """Texts keyed by contribution id (or content hash), queryable for estimated Jaccard >= threshold.

    Keeps one-permutation MinHash signatures in a `datasketch.MinHashLSH` (Indyk & Motwani
    LSH over MinHash signatures); `band_keys` bands whole signature matrices the same way. The LSH
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
        self._signatures: dict[Hashable, MinHash] = {}

    # built on first use: choosing the band layout integrates false-positive curves (tens of
    # milliseconds), which a gate run that only needs signature matrices never pays
    @functools.cached_property
    def _lsh(self) -> MinHashLSH:
        return MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)

    @functools.cached_property
    def _permutations(self) -> np.ndarray:
        return MinHash(num_perm=self.num_perm, seed=self.seed, scheme=_SCHEME).permutations

    def __len__(self) -> int:
        return len(self._signatures)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._signatures

    def signature_matrix(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One-permutation MinHash signatures of many texts, (texts x num_perm) uint32, and which texts had shingles.

        One-permutation hashing (Li, Owen & Zhang, NIPS 2012): each shingle's hash picks one of
        `num_perm` bins and the bin keeps the smallest of a second hash, so a shingle costs one
        hash instead of one per permutation; bins no shingle reached hold EMPTY and are left out
        of the similarity estimate (`estimate_jaccard`).
        """
        codes, lengths = self._shingled(texts)
        return _minhash_rows(codes, lengths, self.shingle_size, np.uint64(self.seed * 0x9E3779B9 & 0xFFFFFFFF),
                             self.num_perm)

    def _shingled(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The normalised texts shingles are cut from, as code points end to end, and their lengths.

        A text shorter than a shingle is one shingle, padded; an empty one has none. Each text is
        folded by `_fold` in one compiled pass: an ASCII text from its bytes, another from the code
        points of its undisguised, lower-cased text, where those no letter or digit are made spaces first
        (`[\\W_]` and `str.isalnum` disagree on no code point).
        """
        plain = [i for i, t in enumerate(texts) if t.isascii()]
        if plain:
            parts = [texts[i] for i in plain]
            lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
            data = np.frombuffer("\0".join(parts).encode("ascii"), dtype=np.uint8)
            folded, folded_lengths = _fold(data, np.r_[0, np.cumsum(lengths + 1)[:-1]].astype(np.int64),
                                           lengths, self.shingle_size, _ASCII_FOLD)
            if len(plain) == len(texts):
                return folded, folded_lengths
        lowered = [undisguised(t).lower().translate(_CONFUSABLE) for t in texts if not t.isascii()]  # as `normalise`
        lengths = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
        codes = np.frombuffer("".join(lowered).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
        blank_non_alnum(codes)
        other_codes, other_lengths = _fold(codes, np.cumsum(lengths) - lengths, lengths,
                                           self.shingle_size, _ASCII_FOLD[:128])
        if not plain:
            return other_codes, other_lengths
        is_plain = np.zeros(len(texts), dtype=np.bool_)
        is_plain[plain] = True
        return _interleave(folded, folded_lengths, other_codes, other_lengths, is_plain)

    def signatures(self, texts: list[str]) -> list[MinHash | None]:
        """MinHash signatures of many texts at once (None for a text with no shingles)."""
        matrix, present = self.signature_matrix(texts)
        return [self._wrap(row) if ok else None for row, ok in zip(matrix, present)]

    def keys(self) -> list[Hashable]:
        return list(self._signatures)

    def matrix(self) -> np.ndarray:
        """The indexed signatures, one row per key in `keys()` order."""
        if not self._signatures:
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        return np.stack([mh.hashvalues for mh in self._signatures.values()]).astype(np.uint32)

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
            sim = float(estimate_jaccard(self._signatures[key].hashvalues, mh.hashvalues))
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


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of signature rows: equal non-empty bins over bins that either side filled."""
    filled = (a != EMPTY) | (b != EMPTY)
    return ((a == b) & filled).sum(axis=-1) / np.maximum(filled.sum(axis=-1), 1)


@functools.cache
def _bands(threshold: float, width: int) -> tuple[int, int]:
    return _optimal_param(threshold, width, 0.5, 0.5)


def band_keys(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """One 64-bit key per (text, LSH band): texts sharing a key in any band are candidate near duplicates.

    The band count and width are datasketch's own choice for this threshold and signature
    width, so candidates match what `MinHashLSH` would return, computed for all texts at once.
    """
    bands, rows = _bands(threshold, signatures.shape[1])
    keys, blank = _band_sums(np.ascontiguousarray(signatures, dtype=np.uint32), bands, rows, _band_weights(rows))
    # a band of empty bins says nothing about the text: give it a key no other text has
    keys[blank] = np.random.default_rng().integers(0, 2**63, size=int(blank.sum()), dtype=np.uint64)
    return keys


@functools.cache
def _band_weights(rows: int) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 2**63, size=rows, dtype=np.uint64) | np.uint64(1)


@compiled
def _band_sums(signatures, bands, rows, weights):
    """Each band's values times `weights`, summed modulo 2**64, with the band number mixed in so
    equal values in different bands never meet; and which bands hold only empty bins."""
    keys = np.empty((len(signatures), bands), dtype=np.uint64)
    blank = np.empty((len(signatures), bands), dtype=np.bool_)
    for t in range(len(signatures)):
        for b in range(bands):
            key = np.uint64(0)
            empty = True
            for r in range(rows):
                value = signatures[t, b * rows + r]
                key += np.uint64(value) * weights[r]
                empty = empty and value == EMPTY
            keys[t, b] = key ^ (np.uint64(b) * np.uint64(0x9E3779B97F4A7C15))
            blank[t, b] = empty
    return keys, blank
