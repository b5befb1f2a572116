"""The code-point tables the gates read say what Python's string methods and `re` say of every character."""

from __future__ import annotations

import re
import string
import sys

import numpy as np

from ledgerlm.validation import code_points as cp


def test_every_code_point_is_described_as_str_and_re_see_it():
    points = np.arange(sys.maxunicode + 1)
    flags, lower = cp.described(points)
    chars = [chr(c) for c in range(sys.maxunicode + 1)]
    word, digit = re.compile(r"\w"), re.compile(r"\d")
    assert np.array_equal((flags & cp.ALNUM) != 0, [ch.isalnum() for ch in chars])
    assert np.array_equal((flags & cp.ALNUM) != 0, [word.match(ch) is not None and ch != "_" for ch in chars])
    assert np.array_equal((flags & cp.DIGIT) != 0, [digit.match(ch) is not None for ch in chars])
    assert np.array_equal((flags & cp.SPACE) != 0, [ch.isspace() for ch in chars])
    assert np.array_equal(lower, [ord(ch.lower()[0]) for ch in chars])
    assert (flags & cp.KNOWN).all()
    # asked again, nothing is worked out afresh and the answer is the same
    assert np.array_equal(cp.described(points[::-1])[0], flags[::-1])


def test_only_the_folding_characters_match_or_lower_to_ascii_letters():
    # Latin, Greek, Cyrillic and letter-like blocks and ligatures: where such characters live
    blocks = [(0x80, 0x2FF), (0x370, 0x52F), (0x1E00, 0x1FFF), (0x2100, 0x218F), (0xFB00, 0xFB4F), (0xFF00, 0xFFEF)]
    letters = [re.compile(re.escape(a), re.IGNORECASE) for a in string.ascii_letters]
    folding = [chr(c) for a, b in blocks for c in range(a, b + 1)
               if any(ch.isascii() for ch in chr(c).lower()) or any(p.fullmatch(chr(c)) for p in letters)]
    assert folding == sorted(cp.FOLDING)
    flags, _ = cp.described(np.array([ord(ch) for ch in folding] + [ord("a"), 0x0430]))
    assert ((flags & cp.FOLDS_TO_ASCII) != 0).tolist() == [True] * len(folding) + [False, False]


def test_greek_and_cyrillic_letters_are_told_from_latin_and_other_scripts():
    text = "a\u00e9\u0430\u0416\u03b1\u03a9\u4e2d\u0661\u2116"
    flags, _ = cp.described(np.array([ord(ch) for ch in text]))
    assert ((flags & cp.GREEK_CYRILLIC) != 0).tolist() == [False, False, True, True, True, True, False, False, False]


def test_blanking_keeps_letters_and_digits_past_ascii_and_nothing_else():
    text = "caf\u00e9\u2014x\u00a0\u0661\u200b!"
    codes = np.array([ord(ch) for ch in text], dtype=np.uint32)
    cp.blank_non_alnum(codes)
    assert "".join(map(chr, codes.tolist())) == "caf\u00e9 x \u0661 !"
