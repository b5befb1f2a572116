"""A batch of texts laid end to end, so a substring or pattern is looked for once per batch instead of once per text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import NamedTuple

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

    def holding(self, needles: Sequence[str], fold: bool = False) -> np.ndarray:
        """Which of `needles` (ASCII, no NUL) each text contains, (texts x needles), from one compiled pass over the batch.

        With `fold` the texts' ASCII capitals count as small letters (needles are then given in
        lower case): the same as `needle in text.lower()` for an ASCII text, not for every other
        one (`str.lower` maps a few other characters, such as the Kelvin sign, to ASCII letters).
        An ASCII needle's bytes occur in UTF-8 only where its characters do.
        """
        codes = [needle.encode("ascii") for needle in needles]
        if not codes:
            return np.zeros((len(self), 0), dtype=bool)
        lengths = np.fromiter(map(len, codes), dtype=np.int64, count=len(codes))
        flat = np.frombuffer(b"".join(codes), dtype=np.uint8)
        offsets = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        return _holding(self._bytes, self._byte_starts, self._byte_lengths, fold, flat, offsets, lengths)

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



@compiled
def _holding(data, starts, lengths, fold, codes, offsets, sizes):
    """`TextBatch.holding`: each byte is looked up by itself and with the byte after it, so only
    needles that start there are compared further."""
    n_needles = len(sizes)
    # needles by their first byte (one-byte needles) or first two bytes, as ranges of `order`
    single = np.full(256, -1, dtype=np.int64)
    pair_count = np.zeros(65537, dtype=np.int64)
    for i in range(n_needles):
        if sizes[i] == 1:
            single[codes[offsets[i]]] = i
        else:
            pair_count[(np.int64(codes[offsets[i]]) << 8 | codes[offsets[i] + 1]) + 1] += 1
    pair_start = np.cumsum(pair_count)
    # which byte pairs start a needle, one bit each: 8 KiB that stay in cache
    starting = np.zeros(1024, dtype=np.uint64)
    for key in range(65536):
        if pair_start[key + 1] > pair_start[key]:
            starting[key >> 6] |= np.uint64(1) << np.uint64(key & 63)
    order = np.empty(n_needles, dtype=np.int64)
    filled = pair_start[:-1].copy()
    for i in range(n_needles):
        if sizes[i] > 1:
            key = np.int64(codes[offsets[i]]) << 8 | codes[offsets[i] + 1]
            order[filled[key]] = i
            filled[key] += 1
    table = np.arange(256, dtype=np.int64)
    if fold:
        table[65:91] += 32
    out = np.zeros((len(starts), n_needles), dtype=np.bool_)
    for d in range(len(starts)):
        s, e = starts[d], starts[d] + lengths[d]
        prev = np.int64(-1)
        for k in range(s, e):
            c = table[data[k]]
            if single[c] >= 0:
                out[d, single[c]] = True
            if prev >= 0:
                key = prev << 8 | c
                if (starting[key >> 6] >> np.uint64(key & 63)) & np.uint64(1):
                    at = k - 1  # where a needle with these first two bytes would start
                    for t in range(pair_start[key], pair_start[key + 1]):
                        i = order[t]
                        if out[d, i] or at + sizes[i] > e:
                            continue
                        same = True
                        for j in range(2, sizes[i]):
                            if table[data[at + j]] != codes[offsets[i] + j]:
                                same = False
                                break
                        out[d, i] = same
            prev = c
    return out


class ScanBatches(NamedTuple):
    """The same texts laid end to end lower-cased and as written: what the personal-data and injection gates search."""

    lower: TextBatch
    raw: TextBatch

    @classmethod
    def of(cls, texts: Sequence[str]) -> ScanBatches:
        return cls(TextBatch(texts, lower=True), TextBatch(texts))
