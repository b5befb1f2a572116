"""Character and word counts of texts laid end to end, every count of a text in one compiled pass over its characters."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ledgerlm.validation import code_points
from ledgerlm.validation.compiled import compiled
from ledgerlm.validation.letter_bigrams import PAIR_COST
from ledgerlm.validation.span_hashes import POLY, mix64

# one bit per character class the junk gate counts, so a single table lookup classifies a byte
CONTROL, SPACE, ALNUM, LETTER, VOWEL, WORD, CONSONANT, STRIP = (1 << i for i in range(8))
_CONSONANTS = "bcdfghjklmnpqrstvwxz"
# beyond ASCII: C1 controls, the replacement and interlinear annotation characters, private use
_CONTROL_RANGES = ((0x80, 0x9F), (0xFFFD, 0xFFFD), (0xFFF9, 0xFFFC), (0xE000, 0xF8FF))
CONTROL_OTHER = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _CONTROL_RANGES) + "]")


def _classes() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for flag, chars in ((CONTROL, [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]),
                        (SPACE, " \n\t"), (ALNUM, string.ascii_letters + string.digits),
                        (LETTER, string.ascii_letters), (VOWEL, "aeiouyAEIOUY"),
                        (WORD, string.ascii_letters + string.digits + "_"),
                        (CONSONANT, _CONSONANTS + _CONSONANTS.upper()),
                        (STRIP, " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")):  # what str.strip() removes
        for c in chars:
            table[ord(c) if isinstance(c, str) else c] |= flag
    return table


CLASSES = _classes()
# letter_bigrams' table by byte: a-z (either case) are letters 1..26, every other byte a boundary
_LETTER_INDEX = np.zeros(256, dtype=np.int64)
_LETTER_INDEX[97:123] = _LETTER_INDEX[65:91] = np.arange(1, 27)
# each byte lower-cased, for the words' hashes
_LOWER = np.arange(256, dtype=np.uint32)
_LOWER[65:91] += 32


class TextCounts(NamedTuple):
    """Per text: where its stripped part lies and what the junk gate counts in it (in characters)."""

    length: np.ndarray  # characters
    exact: np.ndarray  # False where lower-casing a character changes its class or length: count such a text apart
    solid: np.ndarray  # whether any character survives str.strip()
    lead: np.ndarray  # the stripped part is text[lead:trail]
    trail: np.ndarray
    bad: np.ndarray  # control characters (ASCII, C1, replacement, private use), whole text
    non_space: np.ndarray  # stripped part, less " ", "\n", "\t"
    alnum: np.ndarray  # str.isalnum() characters, stripped part
    letters: np.ndarray  # a-z either case, whole text
    vowels: np.ndarray  # whole text, y included
    long_words: np.ndarray  # runs of 4+ letters
    implausible: np.ndarray  # letter runs no language writes: 4+ consonants only, 6 consonants in a row, 30+ letters
    n_words: np.ndarray  # runs of \w
    longest: np.ndarray  # the longest such run
    distinct_words: np.ndarray  # of the lower-cased words
    distinct_trigrams: np.ndarray  # distinct runs of three consecutive words
    top_word: np.ndarray  # how often the commonest word occurs
    pair_bits: np.ndarray  # letter_bigrams' surprisal summed over the text's letter pairs (a-z, case folded)
    pairs: np.ndarray  # and how many pairs: pair_bits / pairs is `mean_surprisal_bits`


def count_texts(texts: Sequence[str]) -> TextCounts:
    """`TextCounts` of each text, laid end to end and counted in one compiled pass.

    ASCII texts go in as their bytes. Other texts go in as symbols of a small alphabet made for
    the batch: an ASCII character is its own symbol and every other code point the batch holds
    gets one past 127, with its class (`str.isalnum`, `str.isspace`, control) and lower case
    worked out once in tables the pass reads like the ASCII ones.
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = (np.cumsum(lengths + 1) - lengths - 1).astype(np.int64)  # one "\0" after each text
    joined = "\0".join(texts) + "\0"
    exact = np.ones(len(texts), dtype=np.bool_)
    if joined.isascii():
        data = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        classes, letter_index, fold = CLASSES, _LETTER_INDEX, _LOWER
    else:
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        wide = np.flatnonzero(codes >= 128)
        distinct, which = np.unique(codes[wide], return_inverse=True)
        wide_classes, wide_lower, odd = _wide_tables(distinct)
        data = codes.astype(np.int32)
        data[wide] = 128 + which
        classes = np.concatenate([CLASSES[:128], wide_classes])
        letter_index = np.concatenate([_LETTER_INDEX[:128], np.zeros(len(distinct), dtype=np.int64)])
        fold = np.concatenate([_LOWER[:128], wide_lower])
        if odd.any():  # rare: which texts hold such a code point is worked out only then
            exact[np.searchsorted(starts, wide[odd[which]], side="right") - 1] = False
    out = _count(data, starts, lengths, classes, letter_index, PAIR_COST, fold)
    return TextCounts(lengths, exact, out[:, 0].astype(bool), *(out[:, i] for i in range(1, out.shape[1])))


def _wide_tables(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes, lower-case code points and oddness of code points past ASCII (`code_points.described`).

    A code point is odd when its lower case is not one character past ASCII of the same
    `isalnum`: the junk gate reads words and letters of the lower-cased text, so a text holding
    one is counted apart.
    """
    flags, lower = code_points.described(points)
    control = np.zeros(len(points), dtype=np.bool_)
    for a, b in _CONTROL_RANGES:
        control |= (points >= a) & (points <= b)
    classes = (np.where(flags & code_points.ALNUM, ALNUM | WORD, 0) | np.where(flags & code_points.SPACE, STRIP, 0)
               | np.where(control, CONTROL, 0)).astype(np.uint8)
    return classes, lower, (flags & code_points.ODD) != 0


@compiled
def _count(data, starts, lengths, classes, letter_index, pair_cost, fold):
    """Every count of `TextCounts` as columns, text by text.

    One pass over a text's characters keeps its letter run, consonant run and word open and counts
    each when it closes; distinct words and word 3-grams are then counted by their 64-bit
    hashes in a small hash table, in buffers the size of the longest text instead of the whole
    batch.
    """
    n = len(starts)
    out = np.zeros((n, 17), dtype=np.int64)
    longest_text = 0
    for d in range(n):
        longest_text = max(longest_text, lengths[d])
    words = np.empty(longest_text // 2 + 1, dtype=np.uint64)
    keys = np.empty(longest_text // 2 + 1, dtype=np.uint64)
    poly = np.uint64(POLY)

    # distinct values counted in an open-addressing table at least twice a text's word count
    # (the values are mixed hashes: their low bits pick the slot); only filled slots are cleared
    size = 64
    while size < longest_text + 2:
        size *= 2
    slot_keys = np.zeros(size, dtype=np.uint64)
    slot_counts = np.zeros(size, dtype=np.int64)
    filled = np.empty(size, dtype=np.int64)

    def distinct(values):  # how many distinct values, and how often the commonest occurs
        found = top = 0
        mask = np.uint64(size - 1)
        for i in range(len(values)):
            v = values[i]
            j = np.int64(v & mask)
            while slot_counts[j] and slot_keys[j] != v:
                j = (j + 1) & (size - 1)
            if not slot_counts[j]:
                slot_keys[j] = v
                filled[found] = j
                found += 1
            slot_counts[j] += 1
            top = max(top, slot_counts[j])
        for t in range(found):
            slot_counts[filled[t]] = 0
        return found, top

    for d in range(n):
        s, e = starts[d], starts[d] + lengths[d]
        lead, trail = e, e
        for k in range(s, e):
            if not classes[data[k]] & STRIP:
                lead = k
                break
        for k in range(e - 1, lead - 1, -1):
            if not classes[data[k]] & STRIP:
                trail = k + 1
                break
        solid = lead < e
        if not solid:
            lead, trail = s, e
        bad = space = alnum = letters = vowels = 0
        long_words = implausible = n_words = longest = 0
        run = run_consonants = consonant_run = 0
        six = False
        word_len = 0
        h = np.uint64(0)
        before = pair_bits = pairs = 0  # the letter before (0: a boundary), for letter-pair surprisal
        for k in range(s, e + 1):  # one step past the end closes the last runs
            f = classes[data[k]] if k < e else 0
            letter = letter_index[data[k]] if k < e else 0
            if letter or before:  # runs of boundaries count as one
                pair_bits += pair_cost[before * 27 + letter]
                pairs += 1
                before = letter
            bad += (f & CONTROL) != 0
            letters += (f & LETTER) != 0
            vowels += (f & VOWEL) != 0
            if lead <= k < trail:
                space += (f & SPACE) != 0
                alnum += (f & ALNUM) != 0
            if f & LETTER:
                run += 1
                if f & CONSONANT:
                    run_consonants += 1
                    consonant_run += 1
                    six = six or consonant_run >= 6
                else:
                    consonant_run = 0
            elif run:
                long_words += run >= 4
                implausible += (run >= 4 and run_consonants == run) or six or run >= 30
                run = run_consonants = consonant_run = 0
                six = False
            if f & WORD:
                h = h * poly + np.uint64(fold[data[k]])
                word_len += 1
            elif word_len:
                words[n_words] = mix64(h)
                n_words += 1
                longest = max(longest, word_len)
                word_len = 0
                h = np.uint64(0)
        distinct_words, top_word = distinct(words[:n_words])
        n_trigrams = max(0, n_words - 2)
        for i in range(n_trigrams):
            keys[i] = mix64((words[i] * poly + words[i + 1]) * poly + words[i + 2])
        distinct_trigrams = distinct(keys[:n_trigrams])[0]
        out[d, 0] = solid
        out[d, 1], out[d, 2] = lead - s, trail - s
        out[d, 3], out[d, 4], out[d, 5] = bad, (trail - lead) - space, alnum
        out[d, 6], out[d, 7], out[d, 8], out[d, 9] = letters, vowels, long_words, implausible
        out[d, 10], out[d, 11], out[d, 12], out[d, 13] = n_words, longest, distinct_words, distinct_trigrams
        out[d, 14], out[d, 15], out[d, 16] = top_word, pair_bits, pairs
    return out
