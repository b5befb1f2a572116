"""Duplicate keys in JSON objects: a cheap count rules them out, the standard parser names key and line."""

from __future__ import annotations

import json
import re

from ledgerlm.datanets.parsers.formats import ParseError


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _key_count(value) -> int:
    if type(value) is dict:
        return len(value) + sum(_key_count(v) for v in value.values() if type(v) in (dict, list))
    if type(value) is list:
        return sum(_key_count(v) for v in value if type(v) in (dict, list))
    return 0


def check_unique_keys(text: bytes, value, where: str, first_line: int) -> None:
    """Refuse `text` (parsed as `value`) when one of its objects repeats a key; `first_line` is the line `text`
    starts on."""
    duplicate = repeated_key(text, value)
    if duplicate is not None:
        key, line = duplicate
        raise ParseError(f"{where} line {first_line + line}: {repeated_key_reason(key)}")


def repeated_key(text: bytes, value) -> tuple[str, int] | None:
    """(key, lines into `text` from 0) of the first key an object of `text` (parsed as `value`) repeats.

    Every key is followed by a colon, so when the text holds no more colons than the parsed
    value has keys, nothing can have been collapsed; only text with extra colons (inside
    strings: URLs, times) pays for the exact check.
    """
    if text.count(b":") <= _key_count(value):
        return None
    decoded = text.decode("utf-8-sig")
    decoder = json.JSONDecoder(object_pairs_hook=_unique_pairs)
    try:
        decoder.decode(decoded)
    except _DuplicateKey as duplicate:
        return duplicate.key, _second_key_line(decoded, duplicate.key)
    except ValueError:
        return None  # orjson accepted it; the standard parser's stricter corners are not this check's business
    return None


def repeated_key_reason(key: str) -> str:
    return f"key {key!r} appears twice in one object; each key of a record may appear only once"


def _second_key_line(text: str, key: str) -> int:
    """Lines (from 0) to the second `"key":` in the innermost object that repeats it."""
    pattern = re.compile(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:")
    hits = [m.start() for m in pattern.finditer(text)]
    # The repeated key is the first hit whose object (the text since the previous hit, at the
    # same brace depth) was not closed in between; counting braces outside strings is enough.
    for earlier, later in zip(hits, hits[1:], strict=False):
        if _same_object(text[earlier:later]):
            return text.count("\n", 0, later)
    return text.count("\n", 0, hits[1]) if len(hits) > 1 else 0


def _same_object(between: str) -> bool:
    depth, in_string, escaped = 0, False, False
    for char in between:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
