"""A batch of texts laid end to end, so a substring or pattern is looked for once per batch instead of once per text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import NamedTuple

import numpy as np

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
        """Whether each text contains any of `needles` (ASCII, no NUL): one pass over the batch for all of them.

        Every place where some needle's first two bytes stand is found with one table lookup per
        byte pair of the UTF-8 batch; only those few places are compared with the rest of a
        needle. (An ASCII needle's bytes occur in UTF-8 only where its characters do.)
        """
        out = np.zeros(len(self), dtype=bool)
        if not needles or not len(self._bytes):
            return out
        codes = [needle.encode("ascii") for needle in needles]
        wanted = np.zeros(1 << 16, dtype=bool)
        wanted[[c[0] << 8 | c[1] for c in codes if len(c) > 1]] = True
        places = np.flatnonzero(wanted[self._byte_pairs])
        pairs = self._byte_pairs[places]
        data, n = self._bytes, len(self._bytes)
        for code in codes:
            if len(code) == 1:
                found = np.flatnonzero(data == code[0])
            else:
                found = places[pairs == (code[0] << 8 | code[1])]
                for j in range(2, len(code)):
                    found = found[found + j < n]
                    found = found[data[found + j] == code[j]]
            out[np.searchsorted(self._byte_starts, found, side="right") - 1] = True
        return out

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

    @cached_property
    def _byte_pairs(self) -> np.ndarray:
        """Each byte with the one after it, as one 16-bit number."""
        data = self._bytes
        return (data[:-1].astype(np.uint16) << 8) | data[1:]

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



class ScanBatches(NamedTuple):
    """The same texts laid end to end lower-cased and as written: what the personal-data and injection gates search."""

    lower: TextBatch
    raw: TextBatch

    @classmethod
    def of(cls, texts: Sequence[str]) -> ScanBatches:
        return cls(TextBatch(texts, lower=True), TextBatch(texts))
