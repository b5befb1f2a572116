"""A batch of texts laid end to end, so a substring or pattern is looked for once per batch instead of once per text."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from ledgerlm.validation.code_points import BASE64_RUN, described, says_in_base64
from ledgerlm.validation.compiled import compiled

SEPARATOR = "\0"  # between texts: no word, needle or pattern the gates look for contains it


class TextBatch:
    """`texts` joined by NUL, with where each one starts.

    The gates' per-text tests are mostly "does this text contain any of these words": one
    compiled pass over the joined batch answers them for every text and word at once.
    """

    def __init__(self, texts: Sequence[str]):
        self.texts = texts
        self.joined = SEPARATOR.join(texts)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        self.starts = np.r_[0, np.cumsum(lengths + 1)[:-1]].astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def text_at(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Which text each position of the joined string falls in."""
        return np.searchsorted(self.starts, np.asarray(positions, dtype=np.int64), side="right") - 1

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
        parts = [t.encode("utf-8", "surrogatepass") for t in self.texts]
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
        """Whether each text holds a character beyond ASCII."""
        return np.fromiter((not t.isascii() for t in self.texts), dtype=bool, count=len(self))

    @cached_property
    def ascii_hiding(self) -> np.ndarray:
        """`code_points.hides_in_ascii` of each text: an ASCII control character other than tab, line
        feed and carriage return (those past ASCII carry `DISGUISE`), a carriage return without a line
        feed after it, an HTML character reference, a percent escape or base64 that decodes to readable text
        (the few texts with a long enough run of base64 letters are decoded one by one)."""
        found = _hiding(self._bytes, self._byte_starts, self._byte_lengths, BASE64_RUN)
        hiding = found == 1
        for i in np.flatnonzero(found == 2).tolist():
            hiding[i] = says_in_base64(self.texts[i])
        return hiding

    def holding_beyond_ascii(self, flags: int, ranges: Sequence[tuple[int, int]] = ()) -> np.ndarray:
        """Whether each text holds a code point past ASCII with any of `flags` (`code_points.described`)
        or within one of the inclusive `ranges`."""
        codes, where, described_flags = self._beyond_ascii
        hit = (described_flags & flags) != 0
        for a, b in ranges:
            hit |= (codes >= a) & (codes <= b)
        out = np.zeros(len(self), dtype=bool)
        out[where[hit]] = True
        return out

    @cached_property
    def _beyond_ascii(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch's code points past ASCII, the text each is in, and their flags."""
        which = np.flatnonzero(self.non_ascii)
        parts = [self.texts[i] for i in which.tolist()]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        codes = np.frombuffer("".join(parts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        at = np.flatnonzero(codes >= 128)
        distinct, inverse = np.unique(codes[at], return_inverse=True)
        return (codes[at], which[np.searchsorted(np.cumsum(lengths), at, side="right")],
                described(distinct)[0][inverse])


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


@compiled
def _hiding(data, starts, lengths, base64_run):
    """`TextBatch.ascii_hiding`, one pass over the batch's bytes: each text's bytes are read until one
    is a control character (NUL among them: the texts are cut by their lengths, not by the NUL
    between them), a lone carriage return, the "&" or "%" that starts what `code_points._ESCAPED`
    matches (a reference's digits, hex digits or name run as far as they go, then ";"): 1. Otherwise 2 where a
    run of base64 letters reached `base64_run`, else 0."""

    def digit(c):
        return 48 <= c <= 57

    def hex_digit(c):
        return 48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102

    def letter(c):
        return 65 <= c <= 90 or 97 <= c <= 122

    out = np.zeros(len(starts), dtype=np.int8)
    for d in range(len(starts)):
        s, e = starts[d], starts[d] + lengths[d]
        streak = 0
        long_run = False
        for k in range(s, e):
            c = data[k]
            if letter(c) or digit(c) or c == 43 or c == 47 or c == 45 or c == 95:  # base64's "+/", URL-safe "-_"
                streak += 1
                if streak == base64_run:
                    long_run = True
                continue
            streak = 0
            if c < 32 or c == 127:
                if c != 9 and c != 10 and (c != 13 or k + 1 == e or data[k + 1] != 10):
                    out[d] = 1
                    break
            elif c == 37:  # "%" and two hex digits, the first 2-7: printable ASCII
                if k + 2 < e and 50 <= data[k + 1] <= 55 and hex_digit(data[k + 2]):
                    out[d] = 1
                    break
            elif c == 38 and k + 1 < e:  # "&"
                j = k + 1
                if data[j] == 35:  # "#"
                    j += 1
                    hexadecimal = j < e and (data[j] == 120 or data[j] == 88)
                    if hexadecimal:
                        j += 1
                    run = j
                    while j < e and (hex_digit(data[j]) if hexadecimal else digit(data[j])):
                        j += 1
                    most = 6 if hexadecimal else 7
                    if 1 <= j - run <= most and j < e and data[j] == 59:
                        out[d] = 1
                        break
                elif letter(data[j]):
                    j += 1
                    run = j
                    while j < e and (letter(data[j]) or digit(data[j])):
                        j += 1
                    if 1 <= j - run <= 31 and j < e and data[j] == 59:
                        out[d] = 1
                        break
        if out[d] == 0 and long_run:
            out[d] = 2
    return out
