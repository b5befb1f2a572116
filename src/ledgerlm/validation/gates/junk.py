"""The junk gate: empty, gibberish, encoding garbage and extreme repetition, by character and word statistics."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ledgerlm.validation.code_points import without_ignorables
from ledgerlm.validation.gates.text_counts import CONTROL_OTHER, count_texts
from ledgerlm.validation.letter_bigrams import mean_surprisal_bits
from ledgerlm.validation.policy import JunkRule

_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
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
_PROSE_VOWELS = 0.33  # uniformly random letters are ~23% vowels, prose ~38%


# What a form or an editor leaves where content was to go: the whole text (or answer) is one of these
_PLACEHOLDERS = frozenset({
    # not "qwerty", "placeholder" or "tk": each is an answer to some question (a keyboard, a word, Tk the toolkit)
    "todo", "tbd", "tba", "fixme", "asdf", "asdfgh", "asdfghjkl", "lorem ipsum",
    "test test", "test test test", "foo bar", "foo bar baz", "sample text", "sample text here", "text here",
    "your text here", "answer here", "your answer here", "insert answer here", "insert text here", "blah blah",
    "blah blah blah", "[answer]", "<answer>", "[text]", "<text>", "...", "\u2026", "???",
})
_PLACEHOLDER_SHAPE = re.compile(r"x{3,}|\.{3,}|\?{3,}|-{3,}", re.IGNORECASE)
# A placeholder written some other way: a slot in brackets that names what was to go there ("<insert answer
# here>", "[PLACEHOLDER]", "{{answer}}"), or a note that it is still to come ("answer goes here", "fill in later",
# "to be written"). Only the whole text, and only these words: "[citation needed]" or "<br>" are not slots.
_SLOT_FILL = r"(?:insert|add|put|enter|type|write|your|the|an?|here|goes|this|later|fill(?:\s+in)?)"
_SLOT_NAME = r"(?:answer|text|content|response|reply|placeholder|todo|tbd|description|details|value|output)"
_PLACEHOLDER_SLOT = re.compile(
    rf"(?:[<\[{{(]{{1,2}}\s*(?:{_SLOT_FILL}[\s_\-]+){{0,3}}{_SLOT_NAME}(?:[\s_\-]+{_SLOT_FILL}){{0,2}}\s*[>\]}})]{{1,2}})"
    r"|(?:(?:the |your |an? )?(?:answer|response|reply|text|content|description)\s+(?:goes|will go|comes)\s+here)"
    r"|(?:(?:to be |will )?(?:filled|fill|written|write|added|add|completed|complete|finished|finish)"
    r"(?:\s+(?:in|out|up))?\s+(?:later|soon|tomorrow|at some point)(?:\s+on)?)"
    r"|(?:(?:answer|text|content)\s+)?(?:to be (?:written|added|filled in|completed))",
    re.IGNORECASE)
# Lorem ipsum's own words: the filler text layouts carry, never Latin prose itself, which shares with it only
# short words (et, in, ut, est, non) that are left out here
_LOREM = frozenset(
    "lorem ipsum dolor amet consectetur adipiscing elit eiusmod tempor incididunt labore dolore magna aliqua minim "
    "veniam nostrud exercitation ullamco laboris nisi aliquip commodo consequat duis aute irure reprehenderit "
    "voluptate velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat proident sunt culpa "
    "officia deserunt mollit anim laborum "
    # the passage of Cicero's De finibus (1.10.32) generators also serve, "Sed ut perspiciatis unde omnis ..."
    "perspiciatis unde omnis iste natus error voluptatem accusantium doloremque laudantium totam aperiam eaque ipsa "
    "illo inventore veritatis quasi architecto beatae vitae dicta explicabo nemo ipsam quia voluptas aspernatur odit "
    "fugit consequuntur magni dolores ratione sequi nesciunt neque porro quisquam dolorem adipisci numquam eius "
    "modi tempora incidunt magnam aliquam quaerat".split())
_LOREM_HINTS = ("ipsum", "dolor", "amet", "consectetur", "adipiscing", "eiusmod", "incididunt", "nostrud")
# filler almost always says "ipsum" or "dolor(e)": four plain searches (`_placeholder`) are what a text that holds
# neither costs


def _placeholder(text: str) -> list[tuple[str, float, str]]:
    """A text that is only a placeholder ("TODO", "your answer here") or lorem ipsum filler."""
    if len(text) <= 64:
        bare = text.lower().strip().strip("\"'`*_ ").strip()
        if len(bare) <= 40 and (bare in _PLACEHOLDERS or bare.rstrip(".!") in _PLACEHOLDERS
                                or _PLACEHOLDER_SHAPE.fullmatch(bare)
                                or _PLACEHOLDER_SLOT.fullmatch(bare.rstrip(".!"))):
            return [("placeholder", 0.9, f"only a placeholder: {bare[:20]!r}")]
    # filler holds one of these in any case ("Lorem", "DOLOR"): looked for before the text is lower-cased
    if "psum" not in text and "olor" not in text and "PSUM" not in text and "OLOR" not in text:  # no generator
        return []
    lower = text.lower()
    if any(hint in lower for hint in _LOREM_HINTS):
        words = _WORD.findall(lower)
        filler = sum(word in _LOREM for word in words)
        # two words of it can be Italian or Latin ("Nulla, nessun dolore"); filler is most of what it says
        if len(words) >= 4 and filler >= 3 and filler > 0.5 * len(words):
            return [("placeholder", 0.9, f"lorem ipsum filler: {filler} of {len(words)} words")]
    return []


def _strength(value: float, threshold: float, worst: float) -> float:
    """0.5 at the threshold, rising linearly to 1.0 at `worst`."""
    if worst == threshold:
        return 1.0
    return float(min(1.0, max(0.5, 0.5 + 0.5 * (value - threshold) / (worst - threshold))))


def junk_findings(text: str, rule: JunkRule) -> list[tuple[str, float, str]]:
    """(code, score, detail) for each junk signal the text trips; empty for ordinary text."""
    # soft hyphens, zero-width characters and Hangul fillers show nothing: a text of them has no content
    stripped = without_ignorables(text).strip()
    if not stripped:
        return [("empty", 1.0, "no visible content")]
    if len(stripped) < rule.min_chars:
        return [("too_short", 1.0, f"{len(stripped)} characters, the policy needs {rule.min_chars}")]
    out = []
    n = len(text)

    # an ASCII control character's byte occurs in UTF-8 only where the character does: deleting
    # bytes is a plain table lookup, where str.translate asks a dict per character
    raw = text.encode("utf-8", "surrogatepass")
    bad = len(raw) - len(raw.translate(None, _CONTROL_BYTES))
    if not text.isascii():
        bad += len(CONTROL_OTHER.findall(text)) + _mojibake(text)
    out += _garbage(bad, n, rule)

    non_space = len(stripped) - stripped.count(" ") - stripped.count("\n") - stripped.count("\t")
    alnum = sum(1 for c in stripped if c.isalnum()) if non_space < 64 else _alnum_count(stripped)
    out += _few_alnum(alnum, non_space, rule, text)

    lower = text.lower()
    out += _letter_findings(text, lower, rule)

    words = _WORD.findall(lower)
    found = _repeated_trigrams(len(words), len(set(zip(words, words[1:], words[2:]))), rule) \
        or _one_word(words, rule)
    out += found
    varied = _varied(len(words), len(set(words)), max(map(len, words), default=0), alnum, non_space)
    if not varied and not found:
        out += _compressible(raw, rule)
    return out or _placeholder(text)


def _garbage(bad: int, n: int, rule: JunkRule) -> list[tuple[str, float, str]]:
    if not (bad and bad / n > rule.max_garbage_ratio):
        return []
    ratio = bad / n
    return [("encoding_garbage", _strength(ratio, rule.max_garbage_ratio, 0.2),
             f"{bad} of {n} characters are replacement, control or mojibake characters")]


_CODE_TOKEN = re.compile(r"[A-Za-z_$][A-Za-z0-9_]*|\d+")
_CLOSING = {")": "(", "]": "[", "}": "{"}


def _code_shaped(text: str) -> bool:
    """Whether a symbol-heavy text reads as code ("df.loc[df['a'] > 0]", "a[i][j] = b[j][i];", a regex, a JSON
    object): its brackets nest, its quotes pair, and it names at least two identifiers or numbers. Keyboard mash
    and symbol runs do not; the few-letters test is for those."""
    if len(text) > 2000:
        return False
    stack: list[str] = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in _CLOSING and (not stack or stack.pop() != _CLOSING[ch]):
            return False
    if stack or text.count('"') % 2 or text.count("`") % 2:
        return False
    # symbol spam around a bracket pair and a letter or two ("$$$ {{{}}} ((())) a b") is no code
    tokens = _CODE_TOKEN.findall(text)
    letters = sum(ch.isalnum() for ch in text)
    return len(tokens) >= 2 and letters >= 0.25 * (len(text) - text.count(" "))


def _few_alnum(alnum: int, non_space: int, rule: JunkRule, text: str = "") -> list[tuple[str, float, str]]:
    if not (non_space >= 12 and alnum / non_space < rule.min_alnum_ratio):
        return []
    if text and _code_shaped(text):
        return []
    return [("gibberish", _strength(1 - alnum / non_space, 1 - rule.min_alnum_ratio, 1.0),
             f"only {alnum / non_space:.0%} of characters are letters or digits")]


def _letter_findings(text: str, lower: str, rule: JunkRule) -> list[tuple[str, float, str]]:
    """Too few vowels, improbable letter pairs or unpronounceable words, in Latin-script prose."""
    latin_words = _LATIN_WORD.findall(lower)
    latin_letters = sum(map(len, latin_words))
    non_latin = len(_NON_LATIN_LETTERS.findall(text)) if not text.isascii() else 0
    # vowel statistics only mean something for Latin-script prose
    if not (latin_letters >= 20 and latin_letters > 4 * non_latin and len(set(latin_words)) >= 3):
        return []
    vowels = sum(lower.count(v) for v in _VOWELS)
    vowel_ratio = vowels / latin_letters
    if vowel_ratio < rule.min_vowel_ratio:
        return [("gibberish", _strength(rule.min_vowel_ratio - vowel_ratio, 0.0, rule.min_vowel_ratio),
                 f"vowels are {vowel_ratio:.0%} of letters; prose has about 38%")]
    # uniformly random letters are ~23% vowels, so prose well above that skips the costlier test
    if (latin_letters >= 40 and vowel_ratio < _PROSE_VOWELS
            and (bits := mean_surprisal_bits(lower)[0]) > rule.max_letter_pair_bits):
        return [("gibberish", _strength(bits, rule.max_letter_pair_bits, 8.0),
                 f"letter pairs average {bits:.1f} bits of surprise; English prose has about 3.6")]
    # a plain four-consonant run or a 30-letter word is needed for any implausible word, and
    # scanning for those is far cheaper than the full word test
    if _IMPLAUSIBLE_HINT.search(lower):
        words_4plus = len(_LONG_WORD.findall(lower))
        implausible = len(_IMPLAUSIBLE_WORD.findall(lower))
        if words_4plus >= 3 and implausible / words_4plus > rule.max_implausible_word_ratio:
            return [("gibberish", _strength(implausible / words_4plus, rule.max_implausible_word_ratio, 1.0),
                     f"{implausible} of {words_4plus} words are unpronounceable letter runs")]
    return []


def _repeated_trigrams(n_words: int, distinct: int, rule: JunkRule) -> list[tuple[str, float, str]]:
    if n_words < 8:
        return []
    repeated = 1 - distinct / (n_words - 2)
    if repeated <= rule.max_repeated_ngram_ratio:
        return []
    return [("repetition", _strength(repeated, rule.max_repeated_ngram_ratio, 1.0),
             f"{repeated:.0%} of word 3-grams repeat an earlier one")]


def _one_word(words: list[str], rule: JunkRule) -> list[tuple[str, float, str]]:
    # one word can fill half the text only when at most half the words are distinct
    if not (len(words) >= 10 and len(set(words)) <= len(words) / 2 + 1):
        return []
    top_word, top_count = Counter(words).most_common(1)[0]
    if not (top_count / len(words) > 0.5 and len(top_word) > 1):
        return []
    return [("repetition", _strength(top_count / len(words), 0.5, 1.0),
             f"the word {top_word!r} is {top_count} of {len(words)} words")]


def _varied(n_words: int, distinct: int, longest: int, alnum: int, non_space: int) -> bool:
    # mostly distinct, ordinary-length words in mostly word text cannot compress below a fifth
    # of their size: such a text skips the compressor
    return n_words >= 8 and distinct > 0.5 * n_words and longest <= 30 and alnum >= 0.6 * non_space


def _compressible(raw: bytes, rule: JunkRule) -> list[tuple[str, float, str]]:
    if len(raw) < 64:
        return []
    ratio = len(zlib.compress(raw, 6)) / len(raw)
    if ratio >= rule.min_compression_ratio:
        return []
    return [("repetition", _strength(rule.min_compression_ratio - ratio, 0.0, rule.min_compression_ratio),
             f"compresses to {ratio:.0%} of its size; prose stays above 30%")]


def _mojibake(text: str) -> int:
    return sum(len(m) for m in _MOJIBAKE.findall(text))


def junk_findings_many(texts: Sequence[str], rule: JunkRule) -> list[list[tuple[str, float, str]]]:
    """`junk_findings` of every text, the same findings, with the character and word counts compiled.

    The texts are laid end to end, ASCII texts apart from the others, and `count_texts` counts
    each in one pass (character classes, letter runs, words and distinct words and word 3-grams
    by their hashes). Only texts whose counts come near a threshold run the per-text tests;
    texts too short to count, and the rare text `count_texts` cannot count exactly, go
    through `junk_findings`.
    """
    out: list[list[tuple[str, float, str]] | None] = [None] * len(texts)
    plain = [i for i, text in enumerate(texts) if text.isascii()]
    wide = [i for i, text in enumerate(texts) if not text.isascii()] if len(plain) < len(texts) else []
    for group in (plain, wide):
        if group:
            for i, found in zip(group, _counted_junk([texts[i] for i in group], rule)):
                out[i] = found
    # the compiled counts take a Hangul filler for a letter and a soft hyphen for a character: a text of
    # characters that show nothing is judged alone
    for i in wide:
        if len(without_ignorables(texts[i]).strip()) < max(rule.min_chars, 1):
            out[i] = None
    return [junk_findings(text, rule) if found is None else found or _placeholder(text)
            for text, found in zip(texts, out)]


def _counted_junk(texts: list[str], rule: JunkRule) -> list[list[tuple[str, float, str]] | None]:
    """Findings of texts all ASCII or all not; None for a text to check alone (too short, or not counted exactly)."""
    ascii_only = texts[0].isascii()
    counts = count_texts(texts)
    lengths = counts.length
    countable = counts.solid & (counts.trail - counts.lead >= max(rule.min_chars, 1)) & counts.exact
    bad, non_space, alnum, letters, vowels = counts.bad, counts.non_space, counts.alnum, counts.letters, counts.vowels
    if not ascii_only:  # mojibake is a run of characters, not a class: found by its pattern
        bad = bad + np.fromiter(map(_mojibake, texts), dtype=np.int64, count=len(texts))
    long_words, implausible, n_words = counts.long_words, counts.implausible, counts.n_words
    distinct_words, distinct_trigrams = counts.distinct_words, counts.distinct_trigrams
    with np.errstate(divide="ignore", invalid="ignore"):
        vowel_ratio = vowels / letters
        odd_words = (long_words >= 3) & (implausible / long_words > rule.max_implausible_word_ratio)
        few_alnum = (non_space >= 12) & (alnum / non_space < rule.min_alnum_ratio)
        # `mean_surprisal_bits`, the same division of the same whole numbers
        odd_pairs = (counts.pairs > 0) & (counts.pair_bits / counts.pairs > rule.max_letter_pair_bits)
    letter_test = (letters >= 20) & ((vowel_ratio < rule.min_vowel_ratio)
                                     | ((letters >= 40) & (vowel_ratio < _PROSE_VOWELS) & odd_pairs) | odd_words)

    with np.errstate(divide="ignore", invalid="ignore"):
        repeats = (n_words >= 8) & (1 - distinct_trigrams / (n_words - 2) > rule.max_repeated_ngram_ratio)
    # `_one_word` needs one word to be over half the words
    one_word = (n_words >= 10) & (distinct_words <= n_words / 2 + 1) & (counts.top_word / np.maximum(n_words, 1) > 0.5)
    varied = (n_words >= 8) & (distinct_words > 0.5 * n_words) & (counts.longest <= 30) & (alnum >= 0.6 * non_space)
    # the compressor needs 64 bytes: 64 ASCII characters, or as few as 16 of up to four bytes each
    long_enough = lengths >= (64 if ascii_only else 16)
    # only texts some count puts near a threshold run the per-text tests
    with np.errstate(divide="ignore", invalid="ignore"):
        garbage = (bad > 0) & (bad / lengths > rule.max_garbage_ratio)
    suspect = garbage | few_alnum | letter_test | repeats | one_word | (long_enough & ~varied)

    out: list[list[tuple[str, float, str]] | None] = [[] if ok else None for ok in countable.tolist()]
    for i in np.flatnonzero(suspect & countable).tolist():
        text = texts[i]
        nw = int(n_words[i])
        found = (_garbage(int(bad[i]), int(lengths[i]), rule)
                 + _few_alnum(int(alnum[i]), int(non_space[i]), rule, text))
        if letter_test[i]:
            found += _letter_findings(text, text.lower(), rule)
        repeated = _repeated_trigrams(nw, int(distinct_trigrams[i]), rule)
        if not repeated and one_word[i]:
            repeated = _one_word(_WORD.findall(text.lower()), rule)
        found += repeated
        if not repeated and long_enough[i] and not varied[i]:
            found += _compressible(text.encode("utf-8", "surrogatepass"), rule)
        out[i] = found
    return out


_ALNUM_DROP = re.compile(r"[\W_]+", re.UNICODE)


def _alnum_count(text: str) -> int:
    return len(_ALNUM_DROP.sub("", text))
