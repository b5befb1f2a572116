"""What the gates ask of code points beyond ASCII (letter or digit, space, lower case, script), worked out once per process."""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

KNOWN, ALNUM, SPACE, ODD, DIGIT, GREEK_CYRILLIC, FOLDS_TO_ASCII = (1 << i for i in range(7))
# the only characters beyond ASCII that IGNORECASE matches to an ASCII letter or that str.lower()
# turns into one (dotted and dotless i, long s, Kelvin sign), checked over every code point: a
# text without them folds as ASCII
FOLDING = ("\u0130", "\u0131", "\u017f", "\u212a")
_ALL = 0x110000


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    # one slot per code point (5.5 MB, pages touched only where texts go), so however many
    # distinct characters an upload holds the memory stays bounded
    return np.zeros(_ALL, dtype=np.uint8), np.zeros(_ALL, dtype=np.uint32)


def described(code_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flags of each code point, and the first character of its lower case.

    The flags: `ALNUM` (str.isalnum, which is also what `re`'s \\w accepts besides "_"), `SPACE`
    (str.isspace), `ODD` (its lower case is not one character of the same ALNUM, or, for a
    character past ASCII, is ASCII), `DIGIT` (str.isdecimal: `re`'s \\d), `GREEK_CYRILLIC` (a letter whose name
    says one of those scripts) and `FOLDS_TO_ASCII` (one of `FOLDING`).

    A character is asked of Python the first time a process meets it; a batch of text holds a
    few hundred distinct ones, most of them met in earlier batches.
    """
    flags, lower = _tables()
    code_points = np.asarray(code_points, dtype=np.int64)
    new = code_points[(flags[code_points] & KNOWN) == 0]
    for c in np.unique(new).tolist():
        ch = chr(c)
        low = ch.lower()
        alnum = ch.isalnum()
        lower[c] = ord(low[0])
        odd = len(low) != 1 or (c >= 128 and low.isascii()) or low.isalnum() != alnum
        # the flags go in last: a reader that sees KNOWN also sees the lower case
        script = ch.isalpha() and unicodedata.name(ch, "").startswith(("CYRILLIC", "GREEK"))
        flags[c] = (KNOWN | (ALNUM if alnum else 0) | (SPACE if ch.isspace() else 0) | (ODD if odd else 0)
                    | (DIGIT if ch.isdecimal() else 0) | (GREEK_CYRILLIC if script else 0)
                    | (FOLDS_TO_ASCII if ch in FOLDING else 0))
    return flags[code_points], lower[code_points]


def blank_non_alnum(codes: np.ndarray) -> None:
    """Make every code point past ASCII that is no letter or digit a space (32), in place."""
    wide = np.flatnonzero(codes >= 128)
    if len(wide):
        distinct, which = np.unique(codes[wide], return_inverse=True)
        alnum = (described(distinct)[0] & ALNUM) != 0
        codes[wide[~alnum[which]]] = 32
