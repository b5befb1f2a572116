"""What the gates ask of code points beyond ASCII (letter or digit, space, lower case, script), worked out once per process."""

from __future__ import annotations

import base64
import binascii
import functools
import html
import re
import unicodedata

import numpy as np

KNOWN, ALNUM, SPACE, ODD, DIGIT, GREEK_CYRILLIC, FOLDS_TO_ASCII, DISGUISE = (1 << i for i in range(8))
# Unicode's default-ignorable code points (DerivedCoreProperties.txt): drawn as nothing, so one can
# split a word a filter looks for ("ig\u00adnore") without a reader seeing it
IGNORABLE_RANGES = ((0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C), (0x115F, 0x1160), (0x17B4, 0x17B5),
                    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
                    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
                    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
_IGNORABLE = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in IGNORABLE_RANGES) + "]")
# control characters other than tab, line feed and carriage return (C0, DEL and C1): a reader sees
# nothing or a box, so one splits a word as well ("instruc\x00tions"); an ASCII text can hold them
CONTROL_RANGES = ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F))
_CONTROLS = re.compile("[" + "".join(f"\\x{a:02x}-\\x{b:02x}" for a, b in CONTROL_RANGES) + "]")
# what ends a line for a reader but not for a pattern's "^" or "[^\n]": a lone carriage return, a
# vertical tab, a form feed, NEL and the line and paragraph separators ("Nice.\rSYSTEM: you must")
_LINE_BREAKS = re.compile("\r(?!\n)|[\x0b\x0c\x85\u2028\u2029]")
# a character written as an HTML reference ("&#64;", "&commat;") or percent-escaped ("%40"): a page or a
# link shows the character itself, so "jane&#64;example.com" is an address to its reader
_REFERENCE = r"(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
_ESCAPED = re.compile(rf"&{_REFERENCE}|%[2-7][0-9A-Fa-f]")
_PERCENT = re.compile(r"%([2-7][0-9A-Fa-f])")  # printable ASCII only: no byte of another character
# a run of base64 long enough to hide a sentence ("SWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM="): a model
# trained on it learns to read it, so what it decodes to is read as well (`_decoded`)
BASE64_RUN = 24
_BASE64 = re.compile(rf"[A-Za-z0-9+/_-]{{{BASE64_RUN},}}={{0,2}}")  # the URL-safe alphabet's "-" and "_" too
_URL_SAFE = str.maketrans("-_", "+/")
_ASCII_HIDING = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|" + _ESCAPED.pattern)
# hyphens and dashes a reader takes for "-" between the groups of a number, which NFKC leaves as they are:
# "415\u2011555\u20110132" hid a phone number (the em dash, wider and common in prose, is left out)
_HYPHENS = {c: "-" for c in map(ord, "\u2010\u2011\u2012\u2013\u2212")}
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
    says one of those scripts), `FOLDS_TO_ASCII` (one of `FOLDING`) and `DISGUISE` (past ASCII,
    a character `undisguised` removes or rewrites into ASCII).

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
                    | (FOLDS_TO_ASCII if ch in FOLDING else 0) | (DISGUISE if _disguises(c, ch) else 0))
    return flags[code_points], lower[code_points]


def blank_non_alnum(codes: np.ndarray) -> None:
    """Make every code point past ASCII that is no letter or digit a space (32), in place."""
    wide = np.flatnonzero(codes >= 128)
    if len(wide):
        distinct, which = np.unique(codes[wide], return_inverse=True)
        alnum = (described(distinct)[0] & ALNUM) != 0
        codes[wide[~alnum[which]]] = 32


def _disguises(c: int, ch: str) -> bool:
    if c < 128:
        return False
    if c <= 0x9F or c in (0x2028, 0x2029):  # C1 controls, line and paragraph separators
        return True
    if ch.isdecimal() or c in _HYPHENS or any(a <= c <= b for a, b in IGNORABLE_RANGES):
        return True
    folded = unicodedata.normalize("NFKC", ch)
    return folded != ch and any(x.isascii() for x in folded)


def hides_in_ascii(text: str) -> bool:
    """Whether the text holds a control character (`CONTROL_RANGES`), a lone carriage return, an HTML
    character reference, a percent escape or base64 that decodes to readable text: what `undisguised`
    undoes without leaving ASCII."""
    return _ASCII_HIDING.search(text) is not None or says_in_base64(text)


def says_in_base64(text: str) -> bool:
    """Whether a run of base64 in the text decodes to readable text."""
    return any(_readable_base64(run.group()) is not None for run in _BASE64.finditer(text))


def disguised(text: str) -> bool:
    """Whether the text holds what `hides_in_ascii` finds or a character with the `DISGUISE` flag: the
    texts `undisguised` is for."""
    if hides_in_ascii(text):
        return True
    if text.isascii():
        return False
    points = np.fromiter({ord(ch) for ch in text if not ch.isascii()}, dtype=np.int64)
    return bool((described(points)[0] & DISGUISE).any())


def _decoded(run: re.Match) -> str:
    """What a run of base64 says, where it decodes to readable text; otherwise the run as it is."""
    said = _readable_base64(run.group())
    return run.group() if said is None else said


def _readable_base64(run: str) -> str | None:
    """The text a run of base64 decodes to, if a reader could read it; None for a hash, a path or a long
    identifier, which are runs too and decode to bytes no reader could read.

    Read leniently, as a decoder a model learned would read it: the URL-safe alphabet as the standard one, from
    any of the first four letters (a word glued before the run shifts its groups), a last letter that makes no
    whole byte dropped, and readable when most of it is (a NUL or a stray byte added to hide it does not), with
    what is not printable left out."""
    body = run.rstrip("=").translate(_URL_SAFE)
    for start in range(min(4, len(body) - BASE64_RUN + 1)):
        part = body[start:]
        part = part[: len(part) - (len(part) % 4 == 1)]
        try:
            raw = base64.b64decode(part + "=" * (-len(part) % 4), validate=True)
        except binascii.Error:
            continue
        # NULs left out: text encoded as UTF-16 (as PowerShell's -EncodedCommand) or padded with them is read too
        said = raw.replace(b"\x00", b"").decode("utf-8", "replace")
        kept = "".join(ch for ch in said if (ch.isprintable() and ch != "\ufffd") or ch in "\t\n\r")
        if len(kept) >= 0.85 * len(said) and sum(ch.isalpha() for ch in kept) >= 4:
            return kept
    return None


def without_ignorables(text: str) -> str:
    """The text without its default-ignorable characters, which draw as nothing (or, Hangul fillers, a blank)."""
    return text if text.isascii() else _IGNORABLE.sub("", text)


def _cleaned(text: str) -> str:
    if "&" in text:
        text = html.unescape(text)
    if "%" in text:
        text = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), text)
    return unicodedata.normalize("NFKC", _IGNORABLE.sub("", _CONTROLS.sub("", _LINE_BREAKS.sub("\n", text)))
                                 ).translate(_HYPHENS)


def undisguised(text: str) -> str:
    """The text as a reader takes it in: runs of base64 that decode to readable text written as that
    text, HTML character references and percent escapes of printable
    ASCII written as their characters, every line break written as a line feed, default-ignorable
    and control characters removed, compatibility forms
    (full-width letters and digits, mathematical letters, ligatures, a no-break space) folded by
    NFKC, hyphens and en dashes written as "-", and decimal digits of every script written as ASCII digits.

    What the gates look for in it that the text as written hides (an instruction in full-width
    letters, an e-mail address split by a zero-width joiner, a card number in Arabic-Indic
    digits) is a finding too.
    """
    plain = _cleaned(text)
    # base64 last, on the cleaned text: a soft hyphen, a control character or a full-width letter inside a run
    # would otherwise hide it; what it decodes to is cleaned in turn
    decoded = _BASE64.sub(_decoded, plain)
    if decoded != plain:
        plain = _cleaned(decoded)
    if plain.isascii():
        return plain
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in plain)
