"""The junk gate: empty, gibberish, encoding garbage and extreme repetition, by character and word statistics."""

from __future__ import annotations

import re
import zlib
from collections import Counter

from ledgerlm.validation.letter_bigrams import mean_surprisal_bits
from ledgerlm.validation.policy import JunkRule

_DROP_CONTROL_ASCII = dict.fromkeys([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_CONTROL_OTHER = re.compile(r"[\x80-\x9f\ufffd\ufff9-\ufffc\ue000-\uf8ff]")
# UTF-8 bytes decoded as Latin-1/cp1252: a lead byte shown as Â..ï followed by continuation bytes
_CP1252_CONT = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc" \
               "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_MOJIBAKE = re.compile(f"[\u00c2-\u00df][{_CP1252_CONT}]|[\u00e0-\u00ef][{_CP1252_CONT}]{{2}}")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_WORD = re.compile(r"\w+", re.UNICODE)
_NON_LATIN_LETTERS = re.compile(r"[^\W\d_A-Za-z]", re.UNICODE)
_C = "bcdfghjklmnpqrstvwxz"
_LONG_WORD = re.compile(r"(?<![a-z])[a-z]{4,}(?![a-z])")
# no vowel at all, six consonants in a row, or thirty letters: no language writes such words
_IMPLAUSIBLE_WORD = re.compile(
    rf"(?<![a-z])(?:[{_C}]{{4,}}|[a-z]*[{_C}]{{6,}}[a-z]*|[a-z]{{30,}})(?![a-z])")
_IMPLAUSIBLE_HINT = re.compile(rf"[{_C}]{{4}}|[a-z]{{30}}")
_VOWELS = "aeiouy"


def _strength(value: float, threshold: float, worst: float) -> float:
    """0.5 at the threshold, rising linearly to 1.0 at `worst`."""
    if worst == threshold:
        return 1.0
    return float(min(1.0, max(0.5, 0.5 + 0.5 * (value - threshold) / (worst - threshold))))


def junk_findings(text: str, rule: JunkRule) -> list[tuple[str, float, str]]:
    """(code, score, detail) for each junk signal the text trips; empty for ordinary text."""
    stripped = text.strip()
    if not stripped:
        return [("empty", 1.0, "no visible content")]
    if len(stripped) < rule.min_chars:
        return [("too_short", 1.0, f"{len(stripped)} characters, the policy needs {rule.min_chars}")]
    out = []
    n = len(text)

    bad = len(text) - len(text.translate(_DROP_CONTROL_ASCII))
    if not text.isascii():
        bad += len(_CONTROL_OTHER.findall(text)) + sum(len(m) for m in _MOJIBAKE.findall(text))
    if bad and bad / n > rule.max_garbage_ratio:
        ratio = bad / n
        out.append(("encoding_garbage", _strength(ratio, rule.max_garbage_ratio, 0.2),
                    f"{bad} of {n} characters are replacement, control or mojibake characters"))

    non_space = len(stripped) - stripped.count(" ") - stripped.count("\n") - stripped.count("\t")
    alnum = sum(1 for c in stripped if c.isalnum()) if non_space < 64 else _alnum_count(stripped)
    if non_space >= 12 and alnum / non_space < rule.min_alnum_ratio:
        out.append(("gibberish", _strength(1 - alnum / non_space, 1 - rule.min_alnum_ratio, 1.0),
                    f"only {alnum / non_space:.0%} of characters are letters or digits"))

    lower = text.lower()
    latin_words = _LATIN_WORD.findall(lower)
    latin_letters = sum(map(len, latin_words))
    non_latin = len(_NON_LATIN_LETTERS.findall(text)) if not text.isascii() else 0
    # vowel statistics only mean something for Latin-script prose
    if latin_letters >= 20 and latin_letters > 4 * non_latin and len(set(latin_words)) >= 3:
        vowels = sum(lower.count(v) for v in _VOWELS)
        vowel_ratio = vowels / latin_letters
        if vowel_ratio < rule.min_vowel_ratio:
            out.append(("gibberish", _strength(rule.min_vowel_ratio - vowel_ratio, 0.0,
                                               rule.min_vowel_ratio),
                        f"vowels are {vowel_ratio:.0%} of letters; prose has about 38%"))
        # uniformly random letters are ~23% vowels, so prose well above that skips the costlier test
        elif (latin_letters >= 40 and vowel_ratio < 0.33
              and (bits := mean_surprisal_bits(lower)[0]) > rule.max_letter_pair_bits):
            out.append(("gibberish", _strength(bits, rule.max_letter_pair_bits, 8.0),
                        f"letter pairs average {bits:.1f} bits of surprise; English prose has about 3.6"))
        # a plain four-consonant run or a 30-letter word is needed for any implausible word, and
        # scanning for those is far cheaper than the full word test
        elif _IMPLAUSIBLE_HINT.search(lower):
            words_4plus = len(_LONG_WORD.findall(lower))
            implausible = len(_IMPLAUSIBLE_WORD.findall(lower))
            if words_4plus >= 3 and implausible / words_4plus > rule.max_implausible_word_ratio:
                out.append(("gibberish", _strength(implausible / words_4plus,
                                                   rule.max_implausible_word_ratio, 1.0),
                            f"{implausible} of {words_4plus} words are unpronounceable letter runs"))

    words = _WORD.findall(lower)
    if len(words) >= 8:
        trigrams = list(zip(words, words[1:], words[2:]))
        repeated = 1 - len(set(trigrams)) / len(trigrams)
        if repeated > rule.max_repeated_ngram_ratio:
            out.append(("repetition", _strength(repeated, rule.max_repeated_ngram_ratio, 1.0),
                        f"{repeated:.0%} of word 3-grams repeat an earlier one"))
        # one word can fill half the text only when at most half the words are distinct
        elif len(words) >= 10 and len(set(words)) <= len(words) / 2 + 1 \
                and (top := Counter(words).most_common(1)[0])[1] / len(words) > 0.5 and len(top[0]) > 1:
            top_word, top_count = top
            out.append(("repetition", _strength(top_count / len(words), 0.5, 1.0),
                        f"the word {top_word!r} is {top_count} of {len(words)} words"))
    raw = text.encode("utf-8", "surrogatepass")
    # mostly distinct, ordinary-length words in mostly word text cannot compress below a fifth
    # of their size: skip the compressor
    varied = (len(words) >= 8 and len(set(words)) > 0.5 * len(words) and max(map(len, words)) <= 30
              and alnum >= 0.6 * non_space)
    if len(raw) >= 64 and not varied and not any(code == "repetition" for code, _, _ in out):
        ratio = len(zlib.compress(raw, 6)) / len(raw)
        if ratio < rule.min_compression_ratio:
            out.append(("repetition", _strength(rule.min_compression_ratio - ratio, 0.0,
                                                rule.min_compression_ratio),
                        f"compresses to {ratio:.0%} of its size; prose stays above 30%"))
    return out


_ALNUM_DROP = re.compile(r"[\W_]+", re.UNICODE)


def _alnum_count(text: str) -> int:
    return len(_ALNUM_DROP.sub("", text))
