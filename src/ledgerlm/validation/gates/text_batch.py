"""A batch of texts laid end to end, so a substring or pattern is looked for once per batch instead of once per text."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from ledgerlm.validation.compiled import compiled

SEPARATOR = "\0"  # between texts: no word, needle or pattern the gates look for contains it


class TextBatch:
    """`texts` (lower-cased when `lower`) joined by NUL, with where each one starts.

    The gates' per-text tests are mostly "does this text contain any of these words": asking the
    joined batch costs one C-level search per text that does, not one Python call per text.
    """

    def __init__(self, texts: Sequence[str], lower: bool = False):
        self.texts = texts
        parts = [t.lower() for t in texts] if lower else list(texts)
        self._parts = parts
        self.joined = SEPARATOR.join(parts)
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        self.starts = np.r_[0, np.cumsum(lengths + 1)[:-1]].astype(np.int64)
        self.lengths = lengths
        self._next = np.r_[self.starts[1:], len(self.joined) + 1].tolist()

    def __len__(self) -> int:
        return len(self.starts)

    def text_at(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Which text each position of the joined string falls in."""
        return np.searchsorted(self.starts, np.asarray(positions, dtype=np.int64), side="right") - 1

    def containing(self, needle: str) -> np.ndarray:
        """Whether each text contains `needle` (a plain substring test, as `needle in text`)."""
        out = np.zeros(len(self), dtype=bool)
        find, joined, starts, nxt = self.joined.find, self.joined, self.starts, self._next
        pos = find(needle)
        while pos != -1:
            i = int(np.searchsorted(starts, pos, side="right")) - 1
            out[i] = True
            pos = find(needle, nxt[i]) if nxt[i] < len(joined) else -1
        return out

    def containing_any(self, needles: Sequence[str]) -> np.ndarray:
        """Whether each text contains any of `needles` (ASCII, no NUL): one pass over the batch for all of them."""
        if not needles:
            return np.zeros(len(self), dtype=bool)
        return self.holding(needles).any(axis=1)

    def holding(self, needles: Sequence[str], fold: bool | Sequence[bool] = False) -> np.ndarray:
        """Which of `needles` (ASCII, no NUL) each text contains, (texts x needles), from one compiled pass over the batch.

        A needle looked for with `fold` (one flag for all, or one per needle) counts the texts'
        ASCII capitals as small letters and is given in lower case: the same as `needle in
        text.lower()` for an ASCII text, not for every other one (`str.lower` maps a few other
        characters, such as the Kelvin sign, to ASCII letters). An ASCII needle's bytes occur in
        UTF-8 only where its characters do.
        """
        if not needles:
            return np.zeros((len(self), 0), dtype=bool)
        folds = tuple(np.broadcast_to(np.asarray(fold, dtype=bool), (len(needles),)).tolist())
        return _holding(self._bytes, self._byte_starts, self._byte_lengths, *_filed(tuple(needles), folds))

    @cached_property
    def _byte_lengths(self) -> np.ndarray:
        return np.r_[self._byte_starts[1:] - 1, len(self._bytes)] - self._byte_starts

    @cached_property
    def _utf8(self) -> tuple[np.ndarray, np.ndarray]:
        """The batch as UTF-8 bytes, and where each text starts in them."""
        if self.joined.isascii():
            return np.frombuffer(self.joined.encode("ascii"), dtype=np.uint8), self.starts
        parts = [t.encode("utf-8", "surrogatepass") for t in self._parts]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        return (np.frombuffer(SEPARATOR.encode().join(parts), dtype=np.uint8),
                np.r_[0, np.cumsum(lengths + 1)[:-1]].astype(np.int64))

    @property
    def _bytes(self) -> np.ndarray:
        return self._utf8[0]

    @property
    def _byte_starts(self) -> np.ndarray:
        return self._utf8[1]

    def matching(self, pattern: re.Pattern) -> np.ndarray:
        """Whether `pattern` matches somewhere in each text (it must not match across a NUL)."""
        out = np.zeros(len(self), dtype=bool)
        out[self.text_at([m.start() for m in pattern.finditer(self.joined)])] = True
        return out

    @cached_property
    def non_ascii(self) -> np.ndarray:
        """Whether each text (as given, before lower-casing) holds a character beyond ASCII."""
        return np.fromiter((not t.isascii() for t in self.texts), dtype=bool, count=len(self))

    def count_chars(self, chars: str) -> np.ndarray:
        """How many of `chars` (single code points) each text holds."""
        codes = np.frombuffer(self.joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        points = sorted({ord(c) for c in chars})
        hit = np.zeros(len(codes) + 1, dtype=bool)  # one more place: an empty last text starts there
        if points[-1] - points[0] + 1 == len(points):  # a run of code points, as "0".."9": one range test
            np.less_equal(codes - np.uint32(points[0]), np.uint32(points[-1] - points[0]), out=hit[:-1])
        else:
            hit[:-1] = np.isin(codes, np.array(points, dtype=np.uint32))
        hit[self.starts[1:] - 1] = False  # the separators between texts
        return np.add.reduceat(hit, self.starts, dtype=np.int64)



def _prefix_hash(a, b, c):
    """Three bytes to 16 bits: the key a needle of three or more bytes is filed under."""
    return ((a << 16 | b << 8 | c) * 0x9E3779B1 >> 13) & 0xFFFF


_LOWER = np.arange(256, dtype=np.int64)
_LOWER[65:91] += 32


@functools.lru_cache(maxsize=64)
def _filed(needles: tuple[str, ...], folds: tuple[bool, ...]) -> tuple:
    """Needles filed by their first byte, first two bytes or `_prefix_hash` of their first three
    (read folded), as the compiled search takes them; each gate asks for the same needles in every batch."""
    codes = [needle.encode("ascii") for needle in needles]
    sizes = np.fromiter(map(len, codes), dtype=np.int64, count=len(codes))
    width = np.minimum(sizes, 3)
    keys = np.empty(len(codes), dtype=np.int64)
    for i, code in enumerate(codes):
        c = [int(_LOWER[b]) for b in code[:3]]
        keys[i] = c[0] if len(c) == 1 else c[0] << 8 | c[1] if len(c) == 2 else _prefix_hash(*c)
    starts, filed, used = [], [], []
    for w in (1, 2, 3):
        mine = np.flatnonzero(width == w)
        counts = np.bincount(keys[mine], minlength=65536)
        starts.append(np.r_[0, np.cumsum(counts)])
        filed.append(mine[np.argsort(keys[mine], kind="stable")])
        used.append(np.packbits(counts > 0, bitorder="little").view("<u8").astype(np.uint64))
    filed_all = np.zeros((3, max(1, len(codes))), dtype=np.int64)
    for w in range(3):
        filed_all[w, : len(filed[w])] = filed[w]
    return (np.frombuffer(b"".join(codes), dtype=np.uint8), np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64), sizes,
            np.array(folds, dtype=np.bool_), np.stack(starts), filed_all, np.stack(used), _LOWER)


@compiled
def _holding(data, starts, lengths, codes, offsets, sizes, folds, buckets, filed, used, lower):
    """`TextBatch.holding`: at each byte of the batch only the needles filed under the one, two
    and three bytes that end there (`_filed`) are compared in full."""
    n_needles = len(sizes)

    def prefix_hash(a, b, c):  # _prefix_hash
        return ((a << 16 | b << 8 | c) * 0x9E3779B1 >> 13) & 0xFFFF

    def compare(out, d, w, key, at, e):  # the needles filed under `key` that start at `at`
        for t in range(buckets[w, key], buckets[w, key + 1]):
            i = filed[w, t]
            if out[d, i] or at + sizes[i] > e:
                continue
            same = True
            for j in range(sizes[i]):
                b = np.int64(data[at + j])
                if folds[i]:
                    b = lower[b]
                if b != codes[offsets[i] + j]:
                    same = False
                    break
            out[d, i] = same

    one, two, three = used[0], used[1], used[2]
    out = np.zeros((len(starts), n_needles), dtype=np.bool_)
    for d in range(len(starts)):
        s, e = starts[d], starts[d] + lengths[d]
        c1 = c2 = np.int64(0)  # the folded bytes one and two before (NUL: no needle holds it)
        for k in range(s, e):
            c = lower[data[k]]
            if (one[c >> 6] >> np.uint64(c & 63)) & np.uint64(1):
                compare(out, d, 0, c, k, e)
            key = c1 << 8 | c
            if (two[key >> 6] >> np.uint64(key & 63)) & np.uint64(1) and k > s:
                compare(out, d, 1, key, k - 1, e)
            key = prefix_hash(c2, c1, c)
            if (three[key >> 6] >> np.uint64(key & 63)) & np.uint64(1) and k > s + 1:
                compare(out, d, 2, key, k - 2, e)
            c2, c1 = c1, c
    return out
