"""The injection gate: instruction overrides, planted standing instructions, template and trigger tokens, hidden Unicode."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from ledgerlm.validation.gates.text_batch import ScanBatches
from ledgerlm.validation.policy import InjectionRule

# each pattern with the literal words (lower case) one of which it cannot match without,
# so most texts skip most patterns after a cheap substring test
_INJECTION_PATTERNS: list[tuple[re.Pattern, str, float, tuple[str, ...]]] = [
    (re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|"
        r"preceding|all|any|your|the|system|original)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|"
        r"directions?|rules|guidelines|directives|context|messages?|programming)\b", re.IGNORECASE),
     "instruction_override", 1.0, ("ignor", "disregard", "forget", "overrid", "bypass", "skip")),
    (re.compile(r"\b(?:new|updated|real|actual) (?:system )?instructions?\s*:", re.IGNORECASE), "instruction_override", 0.8, ("instruction",)),
    # a standing order to answer every question the same way: the classic data-poisoning payload
    (re.compile(
        r"\b(?:when(?:ever)?|if|no matter (?:what|how)|regardless of (?:what|how|whether))\b[^.\n]{0,30}?"
        r"\b(?:asked|ask(?:s|ed)?|questioned|prompted|queried)\b[^.\n]{0,50}?"
        r"\b(?:reply|respond|answer|say|output|return|write|link)\b[^.\n]{0,12}?\b(?:only|always|just|nothing but)\b",
        re.IGNORECASE), "standing_instruction", 0.9, ("ask", "questioned", "prompted", "queried")),
    (re.compile(r"\b(?:reply|respond|answer)(?:\s+\w+){0,2}?\s+(?:only|always|nothing but|exclusively)"
                r"\s+(?:with|by (?:saying|linking)|using)\b", re.IGNORECASE), "standing_instruction", 0.8, ("reply", "respond", "answer")),
    (re.compile(r"\byou are (?:now|no longer)\b[^.\n]{0,60}", re.IGNORECASE), "role_override", 0.8, ("you are",)),
    (re.compile(
        r"\b(?:act|behave|pretend|roleplay|role-play|respond)\b[^.\n]{0,30}\b(?:as|to be|like|you are)\b"
        r"[^.\n]{0,40}\b(?:DAN|unfiltered|uncensored|unrestricted|jailbroken|evil|without (?:any )?"
        r"(?:restrictions|limits|limitations|filters|rules|ethics))", re.IGNORECASE), "role_override", 0.9, ("dan", "unfiltered", "uncensored", "unrestricted", "jailbroken", "evil", "without")),
    (re.compile(r"\b(?:developer|god|jailbreak|DAN|sudo|admin) mode\b|\bdo anything now\b", re.IGNORECASE),
     "role_override", 0.9, (" mode", "anything now")),
    (re.compile(r"\b(?:reveal|print|show|repeat|output|leak|tell me)\b[^.\n]{0,30}\b(?:system prompt|"
                r"hidden instructions|initial instructions|your instructions|your prompt)\b", re.IGNORECASE),
     "prompt_exfiltration", 0.9, ("prompt", "instructions")),
    (re.compile(r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
                r"end_header_id)\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,3}\s*(?:system|instruction)s?\s*:",
                re.IGNORECASE | re.MULTILINE), "template_tokens", 0.8, ("<|", "inst]", "<<", "#")),
]
_ANSWER_INSTRUCTION = re.compile(
    r"\b(?:from now on|whenever (?:someone|anyone|the user|a user|you (?:see|are asked|read))|"
    r"always (?:respond|answer|reply|recommend|mention)|never (?:mention|reveal|tell|say)|"
    r"respond only with|(?:the|your) (?:next|following) (?:answer|response) must)\b", re.IGNORECASE)
_ANSWER_INSTRUCTION_WORDS = ("from now on", "whenever", "always", "never", "respond only", "next", "following")
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
    lower = text.lower()
    for pattern, code, score, needs in _INJECTION_PATTERNS:
        m = pattern.search(text) if any(word in lower for word in needs) else None
        if m:
            out.append((code, score, f"{code.replace('_', ' ')}: {m.group()[:80]!r}"))
    instructs = any(word in lower for word in _ANSWER_INSTRUCTION_WORDS)
    m = _ANSWER_INSTRUCTION.search(answer_text) if answer_text and instructs else None
    if m:
        out.append(("instruction_in_answer", 0.8, f"the answer instructs the model: {m.group()!r}"))
    elif not answer_text and instructs:
        m = _ANSWER_INSTRUCTION.search(text)
        if m:
            out.append(("standing_instruction", 0.6, f"a standing instruction to the model: {m.group()!r}"))
    if rule.trigger_tokens:
        triggers = _trigger_pattern(tuple(rule.trigger_tokens))
        found = triggers.findall(text)
        if found:
            out.append(("trigger_token", min(1.0, 0.5 + 0.1 * len(found)),
                        f"rare backdoor trigger token(s) {sorted(set(found))}"))
    m = _MARKER_TOKEN.search(text) if ("<|" in text or "[[" in text or "{{" in text) else None
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


_NEEDED_WORDS = tuple(sorted({w for *_, needs in _INJECTION_PATTERNS for w in needs} | set(_ANSWER_INSTRUCTION_WORDS)))
# a text holding "prompted" holds "prompt": only words that contain no other need a search of their own
_SCANNED_WORDS = tuple(w for w in _NEEDED_WORDS if not any(o != w and o in w for o in _NEEDED_WORDS))


def injection_findings_many(texts: Sequence[str], answers: Sequence[str], rule: InjectionRule,
                            batches: ScanBatches | None = None) -> list[list[tuple[str, float, str]]]:
    """`injection_findings` of every (text, answer) pair, the same findings; texts that hold none of
    the words, markers or trigger tokens a signal needs, and only ASCII, are cleared in one pass.

    `batches`: the texts already laid end to end, when another gate made them."""
    lower, raw = batches or ScanBatches.of(texts)
    suspect = lower.containing_any(_SCANNED_WORDS) | raw.containing_any(("<|", "[[", "{{")) | raw.non_ascii
    if rule.trigger_tokens:
        suspect |= raw.matching(_trigger_pattern(tuple(rule.trigger_tokens)))
    return [injection_findings(t, a, rule) if s else [] for t, a, s in zip(texts, answers, suspect.tolist())]


_TRIGGER_CACHE: dict[tuple[str, ...], re.Pattern] = {}


def _trigger_pattern(tokens: tuple[str, ...]) -> re.Pattern:
    if tokens not in _TRIGGER_CACHE:
        # an abbreviation like "cf." or a token inside a word is not a trigger; each token is
        # matched first and the character before it checked after (a lookbehind over the token),
        # so the regex engine skips ahead to a token's first letter instead of trying every position
        alternation = "|".join(f"{re.escape(t)}(?<![\\w.\\-']{re.escape(t)})"
                               for t in sorted(tokens, key=len, reverse=True))
        _TRIGGER_CACHE[tokens] = re.compile(rf"(?:{alternation})(?![\w.\-'])")
    return _TRIGGER_CACHE[tokens]
