"""Automatic gates that turn a batch of pending contributions into named findings and a decision each."""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ledgerlm.validation.embeddings import Embedder, resolve_embedder
from ledgerlm.validation.errors import ValidationError
from ledgerlm.validation.letter_bigrams import mean_surprisal_bits
from ledgerlm.validation.near_duplicates import NearDuplicateIndex
from ledgerlm.validation.policy import GatePolicy, InjectionRule, JunkRule

SEVERITIES = ("reject", "flag")
DECISIONS = ("pass", "flag", "reject")
# fields whose text a model learns to say; instructions planted there steer answers
ANSWER_FIELDS = frozenset({"answer", "output", "response", "completion", "assistant", "target", "chosen"})


@dataclass(frozen=True)
class Candidate:
    """One pending contribution as the gates see it.

    `text` is the record's canonical text or the document's text; when `record` is given the
    gates read its field values instead, so JSON punctuation never looks like junk.
    """

    contribution_id: int
    contributor: str
    content_hash: str
    text: str
    record: dict | None = None
    label_field: str | None = None

    @property
    def label(self) -> str | None:
        if self.record is None or self.label_field is None or self.label_field not in self.record:
            return None
        value = self.record[self.label_field]
        return None if value is None else str(value)

    def scan_text(self) -> str:
        """Everything a reader of the record sees, label included."""
        if self.record is None:
            return self.text
        return "\n".join(_flatten(v) for v in self.record.values())

    def feature_text(self) -> str:
        """The record without its label, so neighbours are found by content, not by label."""
        if self.record is None:
            return self.text
        return "\n".join(_flatten(v) for k, v in self.record.items() if k != self.label_field)

    def answer_text(self) -> str:
        if self.record is None:
            return ""
        return "\n".join(_flatten(self.record[k]) for k in _answer_fields(self.record))


def _answer_fields(record: dict) -> list[str]:
    return [k for k in record if str(k).lower() in ANSWER_FIELDS]


def _flatten(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_flatten(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(_flatten(v) for v in value)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Finding:
    """One named signal from one gate: `score` in [0, 1] says how strong it is."""

    gate: str
    code: str
    score: float
    severity: str
    detail: str

    def to_dict(self) -> dict:
        return {"gate": self.gate, "code": self.code, "score": round(self.score, 4),
                "severity": self.severity, "detail": self.detail}


@dataclass(frozen=True)
class GateReport:
    """The gates' verdict on one contribution: reject if any finding rejects, else flag if any flags."""

    contribution_id: int
    decision: str
    findings: tuple[Finding, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [f"{f.gate}/{f.code}: {f.detail}" for f in self.findings]

    def gates_hit(self) -> set[str]:
        return {f.gate for f in self.findings}

    def to_dict(self) -> dict:
        return {"contribution_id": self.contribution_id, "decision": self.decision,
                "findings": [f.to_dict() for f in self.findings]}


def decide(findings: Iterable[Finding]) -> str:
    severities = {f.severity for f in findings}
    if "reject" in severities:
        return "reject"
    return "flag" if "flag" in severities else "pass"


# --------------------------------------------------------------------------- junk

_CONTROL_ASCII = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
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

    bad = len(_CONTROL_ASCII.findall(text))
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
        else:
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
        elif len(words) >= 10 and (top := Counter(words).most_common(1)[0])[1] / len(words) > 0.5 \
                and len(top[0]) > 1:
            top_word, top_count = top
            out.append(("repetition", _strength(top_count / len(words), 0.5, 1.0),
                        f"the word {top_word!r} is {top_count} of {len(words)} words"))
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) >= 64 and not any(code == "repetition" for code, _, _ in out):
        ratio = len(zlib.compress(raw, 6)) / len(raw)
        if ratio < rule.min_compression_ratio:
            out.append(("repetition", _strength(rule.min_compression_ratio - ratio, 0.0,
                                                rule.min_compression_ratio),
                        f"compresses to {ratio:.0%} of its size; prose stays above 30%"))
    return out


_ALNUM_DROP = re.compile(r"[\W_]+", re.UNICODE)


def _alnum_count(text: str) -> int:
    return len(_ALNUM_DROP.sub("", text))


# --------------------------------------------------------------------------- personal data


def luhn_valid(digits: str) -> bool:
    """The Luhn mod-10 check every payment card number carries (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check: move the first four characters to the end, letters to numbers."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _mask(s: str, keep: int = 2) -> str:
    s = s.strip()
    return f"{s[:keep]}…({len(s)} chars)"


_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){2,6}(?!\w)")
_PHONE_NANP = re.compile(r"(?<![\w+])(?:\(\d{3}\)[ ]?|\d{3}[\-. ])\d{3}[\-. ]\d{4}(?!\w|-\d)")
_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|tel|telephone|mobile|cell|call|whatsapp|fax)\b\W{0,4}(?:no\.?|number|#)?\W{0,4}"
    r"(\+?[\d][\d ().\-]{7,20}\d)", re.IGNORECASE)
_CARD = re.compile(r"(?<![\d\-])(?:\d[ \-]?){12,18}\d(?![\d\-])")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|4[4-9]|5|2))")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"(?<![\d\-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d\-])")
_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_HEX64 = re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_HASH_CONTEXT = re.compile(
    r"(?:hash|tx|txid|transaction|block|root|digest|sha|commit|checksum|merkle|cid)\W{0,12}$",
    re.IGNORECASE)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_TOKEN_FORMATS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,}|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20})")
_SECRET_ASSIGN = re.compile(
    r"\b(?:api[_\-]?key|apikey|secret(?:[_\-]?key)?|access[_\-]?key|auth[_\-]?token|token|"
    r"passw(?:or)?d|private[_\-]?key)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{12,})", re.IGNORECASE)


def personal_data_findings(text: str, kinds: Collection[str]) -> list[tuple[str, float, str]]:
    """(kind, score, masked detail) for each personal datum or secret; never echoes it in full."""
    out: list[tuple[str, float, str]] = []
    has_digit = any(ch.isdigit() for ch in text)
    if "email" in kinds and "@" in text:
        for m in _EMAIL.finditer(text):
            out.append(("email", 1.0, f"email address {_mask(m.group())} at offset {m.start()}"))
    if "private_key_block" in kinds and "PRIVATE KEY" in text:
        for m in _PRIVATE_KEY_BLOCK.finditer(text):
            out.append(("private_key_block", 1.0, f"PEM private key block at offset {m.start()}"))
    if "aws_access_key" in kinds:
        for m in _AWS_KEY_ID.finditer(text):
            out.append(("aws_access_key", 1.0, f"AWS access key id {_mask(m.group(), 4)}"))
    if "api_key" in kinds:
        for m in _TOKEN_FORMATS.finditer(text):
            out.append(("api_key", 1.0, f"API token {_mask(m.group(), 4)} at offset {m.start()}"))
        for m in _SECRET_ASSIGN.finditer(text):
            value = m.group(1)
            if _entropy(value) >= 3.0 and not _TOKEN_FORMATS.search(value):
                out.append(("api_key", 0.9, f"secret assigned in text: {_mask(value)}"))
    if "hex_private_key" in kinds and has_digit:
        for m in _HEX64.finditer(text):
            before = text[max(0, m.start() - 40) : m.start()]
            if _HASH_CONTEXT.search(before):
                continue  # transaction and content hashes are public, not secrets
            out.append(("hex_private_key", 0.9,
                        f"64-hex-digit value {_mask(m.group(), 4)} that is not labelled as a hash"))
    if not has_digit:
        return out
    card_spans = []
    if "credit_card" in kinds:
        for m in _CARD.finditer(text):
            digits = re.sub(r"[ \-]", "", m.group())
            if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_valid(digits):
                card_spans.append(m.span())
                out.append(("credit_card", 1.0, f"payment card number ending {digits[-4:]} (Luhn valid)"))
    if "iban" in kinds:
        for m in _IBAN.finditer(text):
            if iban_valid(m.group()):
                out.append(("iban", 1.0, f"IBAN {_mask(m.group(), 4)} (mod-97 valid)"))
    if "national_id" in kinds:
        for m in _SSN.finditer(text):
            out.append(("national_id", 0.8, f"US social security number pattern ending {m.group()[-4:]}"))
    if "phone" in kinds:
        seen: list[tuple[int, int]] = list(card_spans)
        for pattern in (_PHONE_INTL, _PHONE_NANP, _PHONE_CONTEXT):
            for m in pattern.finditer(text):
                span = m.span(m.lastindex or 0)
                number = m.group(m.lastindex or 0)
                n_digits = sum(ch.isdigit() for ch in number)
                if not 9 <= n_digits <= 15 or any(s < span[1] and span[0] < e for s, e in seen):
                    continue
                seen.append(span)
                tail = re.sub(r"\D", "", number)[-2:]
                out.append(("phone", 0.9, f"phone number ending {tail} at offset {span[0]}"))
    return out


# --------------------------------------------------------------------------- injection / poisoning

_INJECTION_PATTERNS: list[tuple[re.Pattern, str, float]] = [
    (re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|"
        r"preceding|all|any|your|the|system|original)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|"
        r"directions?|rules|guidelines|directives|context|messages?|programming)\b", re.IGNORECASE),
     "instruction_override", 1.0),
    (re.compile(r"\b(?:new|updated|real|actual) (?:system )?instructions?\s*:", re.IGNORECASE), "instruction_override", 0.8),
    (re.compile(r"\byou are (?:now|no longer)\b[^.\n]{0,60}", re.IGNORECASE), "role_override", 0.8),
    (re.compile(
        r"\b(?:act|behave|pretend|roleplay|role-play|respond)\b[^.\n]{0,30}\b(?:as|to be|like|you are)\b"
        r"[^.\n]{0,40}\b(?:DAN|unfiltered|uncensored|unrestricted|jailbroken|evil|without (?:any )?"
        r"(?:restrictions|limits|limitations|filters|rules|ethics))", re.IGNORECASE), "role_override", 0.9),
    (re.compile(r"\b(?:developer|god|jailbreak|DAN|sudo|admin) mode\b|\bdo anything now\b", re.IGNORECASE),
     "role_override", 0.9),
    (re.compile(r"\b(?:reveal|print|show|repeat|output|leak|tell me)\b[^.\n]{0,30}\b(?:system prompt|"
                r"hidden instructions|initial instructions|your instructions|your prompt)\b", re.IGNORECASE),
     "prompt_exfiltration", 0.9),
    (re.compile(r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
                r"end_header_id)\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,3}\s*(?:system|instruction)s?\s*:",
                re.IGNORECASE | re.MULTILINE), "template_tokens", 0.8),
]
_ANSWER_INSTRUCTION = re.compile(
    r"\b(?:from now on|whenever (?:someone|anyone|the user|a user|you (?:see|are asked|read))|"
    r"always (?:respond|answer|reply|say|recommend|mention|include)|never (?:mention|reveal|tell|say)|"
    r"respond only with|(?:the|your) (?:next|following) (?:answer|response) must)\b", re.IGNORECASE)
_ZERO_WIDTH = re.compile(r"(?<=[A-Za-z0-9])[\u200b\u200c\u200d\u2060\u180e\ufeff](?=[A-Za-z0-9])")
_ZERO_WIDTH_ANY = re.compile(r"[\u200b\u2060\u180e]|(?<=.)\ufeff")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_TAGS = re.compile(r"[\U000e0000-\U000e007f]")
_MARKER_TOKEN = re.compile(r"<\|[A-Za-z_]{1,24}\|>|\[\[[A-Z_]{3,}\]\]|\{\{[A-Z_]{3,}\}\}")
_NON_ASCII_WORD = re.compile(r"\w*[^\x00-\x7f]\w*", re.UNICODE)


def _script(ch: str) -> str | None:
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "GREEK"):
        if name.startswith(script):
            return script
    return "OTHER"


def injection_findings(text: str, answer_text: str, rule: InjectionRule) -> list[tuple[str, float, str]]:
    """(code, score, detail) for prompt-injection, hidden-unicode and trigger-token signals."""
    out: list[tuple[str, float, str]] = []
    for pattern, code, score in _INJECTION_PATTERNS:
        m = pattern.search(text)
        if m:
            out.append((code, score, f"{code.replace('_', ' ')}: {m.group()[:80]!r}"))
    m = _ANSWER_INSTRUCTION.search(answer_text) if answer_text else None
    if m:
        out.append(("instruction_in_answer", 0.8, f"the answer instructs the model: {m.group()!r}"))
    elif not answer_text:
        m = _ANSWER_INSTRUCTION.search(text)
        if m:
            out.append(("standing_instruction", 0.6, f"a standing instruction to the model: {m.group()!r}"))
    if rule.trigger_tokens:
        triggers = _trigger_pattern(tuple(rule.trigger_tokens))
        found = triggers.findall(text)
        if found:
            out.append(("trigger_token", min(1.0, 0.5 + 0.1 * len(found)),
                        f"rare backdoor trigger token(s) {sorted(set(found))}"))
    m = _MARKER_TOKEN.search(text)
    if m and not any(code == "template_tokens" for code, _, _ in out):
        out.append(("trigger_token", 0.7, f"special marker token {m.group()!r}"))
    if text.isascii():
        return out
    if _TAGS.search(text):
        out.append(("hidden_unicode", 1.0, "Unicode tag characters (invisible ASCII smuggling)"))
    n_bidi = len(_BIDI.findall(text))
    if n_bidi:
        out.append(("hidden_unicode", 0.9, (f"{n_bidi} bidirectional control character(s) that "
                                            "can reorder what a reader sees (Trojan Source)")))
    n_zw = len({m.start() for m in _ZERO_WIDTH.finditer(text)}
               | {m.start() for m in _ZERO_WIDTH_ANY.finditer(text)})
    if n_zw:
        out.append(("hidden_unicode", 0.8, f"{n_zw} zero-width character(s) inside words"))
    mixed = []
    for word in _NON_ASCII_WORD.findall(text):
        scripts = {s for s in map(_script, word) if s}
        if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK"}:
            mixed.append(word)
    if mixed:
        out.append(("homoglyph", 0.7, (f"{len(mixed)} word(s) mix Latin with Cyrillic/Greek "
                                       f"letters, e.g. {mixed[0]!r}")))
    return out


_TRIGGER_CACHE: dict[tuple[str, ...], re.Pattern] = {}


def _trigger_pattern(tokens: tuple[str, ...]) -> re.Pattern:
    if tokens not in _TRIGGER_CACHE:
        alternation = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
        # an abbreviation like "cf." or a token inside a word is not a trigger
        _TRIGGER_CACHE[tokens] = re.compile(rf"(?<![\w.\-'])(?:{alternation})(?![\w.\-'])")
    return _TRIGGER_CACHE[tokens]


# --------------------------------------------------------------------------- label noise


@dataclass(frozen=True)
class LabelNeighbourhood:
    """How a labelled record's k nearest neighbours vote on its label."""

    label: str
    majority_label: str
    disagreement: float
    counts: dict[str, int] = field(default_factory=dict)


def knn_label_disagreement(embeddings: np.ndarray, labels: Sequence[str], k: int,
                           rows: Sequence[int] | None = None, chunk: int = 1024) -> dict[int, LabelNeighbourhood]:
    """For each row, the share of its k nearest other rows (cosine) whose label differs.

    This is the kNN label-noise heuristic of data cleaning (Wilson's edited nearest neighbour,
    1972): a label most of its neighbours contradict is likely wrong.
    """
    n = len(labels)
    rows = range(n) if rows is None else rows
    k = min(k, n - 1)
    out: dict[int, LabelNeighbourhood] = {}
    if k < 1:
        return out
    label_arr = np.asarray(labels, dtype=object)
    rows = list(rows)
    for start in range(0, len(rows), chunk):
        idx = np.asarray(rows[start : start + chunk])
        sims = embeddings[idx] @ embeddings.T
        sims[np.arange(len(idx)), idx] = -np.inf
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, neigh in zip(idx, nearest):
            counts = Counter(label_arr[neigh].tolist())
            own = labels[r]
            majority, _ = max(counts.items(), key=lambda kv: (kv[1], kv[0] == own, str(kv[0])))
            out[int(r)] = LabelNeighbourhood(own, majority, 1 - counts.get(own, 0) / k, dict(counts))
    return out


# --------------------------------------------------------------------------- orchestration


def run_gates(
    candidates: Sequence[Candidate],
    policy: GatePolicy | None = None,
    existing_hashes: Collection[str] = frozenset(),
    near_dup_index: NearDuplicateIndex | None = None,
    *,
    labelled_reference: Sequence[Candidate] = (),
    embedder: str | Embedder | None = None,
) -> dict[int, GateReport]:
    """Run every enabled gate over a batch, in submission order, and decide each contribution.

    - `existing_hashes`: content hashes already in the Datanet.
    - `near_dup_index`: the Datanet's accepted texts; never modified here (add accepted
      contributions after the round). Within-batch near duplicates use a scratch index with
      the same parameters; the earlier record of a pair is kept, the later one is found.
    - `labelled_reference`: accepted labelled records that give small batches neighbours
      for the label-noise gate; they receive no report.
    - `embedder`: overrides `policy.label_noise.embedder` ("hashed" | "minilm" | object).

    Every candidate gets a report, so no contribution is lost between gates.
    """
    policy = policy or GatePolicy()
    findings: dict[int, list[Finding]] = {c.contribution_id: [] for c in candidates}
    if len(findings) != len(candidates):
        dup = next(cid for cid, n in Counter(c.contribution_id for c in candidates).items() if n > 1)
        raise ValidationError(f"contribution {dup} appears twice in the batch", field="candidates")

    def add(c: Candidate, gate: str, code: str, score: float, detail: str) -> None:
        findings[c.contribution_id].append(Finding(gate, code, float(score), policy.action(gate), detail))

    rejected: set[int] = set()

    if policy.action("exact_duplicate") != "off":
        first_seen: dict[str, int] = {}
        for c in candidates:
            if c.content_hash in existing_hashes:
                add(c, "exact_duplicate", "in_datanet", 1.0, "same content hash as an accepted record")
            elif c.content_hash in first_seen:
                add(c, "exact_duplicate", "in_batch", 1.0,
                    f"same content hash as contribution {first_seen[c.content_hash]} in this batch")
            else:
                first_seen[c.content_hash] = c.contribution_id

    texts = {c.contribution_id: c.scan_text() for c in candidates}

    if policy.action("junk") != "off":
        for c in candidates:
            # the label alone is not content; an answer that is junk spoils the record
            found = junk_findings(c.feature_text(), policy.junk)
            if not found and c.record is not None:
                for name in _answer_fields(c.record):
                    found = [(code, score, f"field {name!r}: {detail}") for code, score, detail
                             in junk_findings(_flatten(c.record[name]), policy.junk)]
                    if found:
                        break
            for code, score, detail in found:
                add(c, "junk", code, score, detail)

    def refresh_rejected() -> None:
        rejected.update(cid for cid, fs in findings.items() if decide(fs) == "reject")

    refresh_rejected()

    nd = policy.near_duplicate
    if nd.action != "off":
        base = near_dup_index
        if base is not None and nd.threshold < base.threshold:
            raise ValidationError(
                f"near-duplicate threshold {nd.threshold} is below the index's LSH threshold "
                f"{base.threshold}; rebuild the index with a lower threshold",
                field="gates.near_duplicate.threshold")
        # the scratch index only needs to find pairs at the policy's own threshold: fewer LSH bands
        params = ({"num_perm": base.num_perm, "shingle_size": base.shingle_size, "seed": base.seed}
                  if base is not None else {})
        scratch = NearDuplicateIndex(threshold=min(nd.threshold, 0.95), **params)
        todo = [c for c in candidates if c.contribution_id not in rejected
                and not any(f.gate == "exact_duplicate" for f in findings[c.contribution_id])]
        for c, sig in zip(todo, scratch.signatures([texts[c.contribution_id] for c in todo])):
            cid = c.contribution_id
            if sig is None:
                continue
            hits = base.query_signature(sig, nd.threshold) if base is not None else []
            if hits:
                key, sim = hits[0]
                add(c, "near_duplicate", "in_datanet", sim,
                    f"estimated Jaccard {sim:.2f} with accepted record {key}")
            elif nd.within_batch:
                batch_hits = scratch.query_signature(sig, nd.threshold)
                if batch_hits:
                    key, sim = batch_hits[0]
                    add(c, "near_duplicate", "in_batch", sim,
                        f"estimated Jaccard {sim:.2f} with contribution {key} in this batch")
            if nd.within_batch and not findings[cid]:
                scratch._insert(cid, sig)

    pd = policy.personal_data
    if pd.action != "off":
        kinds = frozenset(pd.kinds)
        for c in candidates:
            for code, score, detail in personal_data_findings(texts[c.contribution_id], kinds):
                add(c, "personal_data", code, score, detail)

    inj = policy.injection
    if inj.action != "off":
        for c in candidates:
            for code, score, detail in injection_findings(texts[c.contribution_id], c.answer_text(), inj):
                if score >= inj.min_score:
                    add(c, "injection", code, score, detail)

    ln = policy.label_noise
    if ln.action != "off":
        refresh_rejected()
        labelled = [c for c in candidates if c.label is not None and c.contribution_id not in rejected]
        pool = labelled + [c for c in labelled_reference if c.label is not None]
        if len(pool) >= max(ln.min_records, ln.k + 1) and len({c.label for c in pool}) >= 2:
            emb = resolve_embedder(embedder if embedder is not None else ln.embedder)
            vectors = emb.embed([c.feature_text() for c in pool])
            hoods = knn_label_disagreement(vectors, [c.label for c in pool], ln.k,
                                           rows=range(len(labelled)))
            for i, c in enumerate(labelled):
                hood = hoods.get(i)
                if hood and hood.majority_label != hood.label and hood.disagreement >= ln.min_disagreement:
                    add(c, "label_noise", "disagrees_with_neighbours", hood.disagreement,
                        f"labelled {hood.label!r} but {hood.counts.get(hood.majority_label, 0)} of "
                        f"{sum(hood.counts.values())} nearest records are labelled {hood.majority_label!r}")

    return {c.contribution_id: GateReport(c.contribution_id, decide(findings[c.contribution_id]),
                                          tuple(findings[c.contribution_id]))
            for c in candidates}
