"""A Datanet's record schema compiled to a validator whose patterns and formats take time linear in the record."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
import fastjsonschema.draft04
import re2
from fastjsonschema.draft2019 import CodeGeneratorDraft2019

from ledgerlm.datanets.schemas import DatanetError

# Python's `re` backtracks, and a record is checked while the node's process holds its interpreter
# lock: one pattern like ^(a+)+$ against 30 characters, or fastjsonschema's own e-mail format
# (a look-ahead over the whole string) against 64 KB, stalled every request for seconds. RE2 runs
# every pattern in time linear in the text; it refuses look-arounds and back-references instead.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is answered with an error, not a line on stderr

# What RE2 spells differently from the patterns schemas are written in (ECMA 262, and Python's re,
# which fastjsonschema's own formats use), rewritten when not escaped: \Z (fastjsonschema's end of
# string for `$`) is \z, \u00e9 (four hex digits) is \x{00e9}, and {,n} is {0,n} (RE2 reads {,n} as the literal text,
# which broke the ipv6 format's groups of up to four hex digits).
_UNESCAPED = r"(?<!\\)((?:\\\\)*)"
_SPELLINGS = (
    (re.compile(_UNESCAPED + r"\\Z"), r"\1\\z"),
    (re.compile(_UNESCAPED + r"\\u([0-9a-fA-F]{4})"), r"\1\\x{\2}"),
    (re.compile(_UNESCAPED + r"\{,(\d+)\}"), r"\1{0,\2}"),
)


def re2_pattern(pattern: str):
    """`pattern` compiled by RE2, spelled as RE2 reads it; raises re2.error when RE2 cannot run it."""
    for spelling, rewritten in _SPELLINGS:
        pattern = spelling.sub(rewritten, pattern)
    return re2.compile(pattern, _OPTIONS)


def _refusal(what: str, exc: Exception) -> DatanetError:
    reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
    return DatanetError(
        f"schema {what} cannot be checked in linear time: RE2, which matches every record's patterns, refuses it"
        f" ({reason}); write it without look-arounds, back-references or repeat counts above 1000", field="schema")


# A format whose fastjsonschema regex RE2 cannot run (look-arounds: e-mail, idn-hostname, duration) keeps
# that regex, run only on values as long as the format allows, so backtracking never sees more: an address
# is at most 254 characters (RFC 5321 with RFC 3696's erratum), a host name 253, a duration far less.
_LONGEST = {"email": 254, "idn-email": 254, "idn-hostname": 253}


def _bounded_format(regex: str, longest: int) -> Callable[[str], bool]:
    compiled = re.compile(regex)
    return lambda value: len(value) <= longest and compiled.match(value) is not None


def _regex(value: str) -> bool:
    """A value of format "regex" is one RE2 compiles: the same engine the node matches patterns with."""
    try:
        re2_pattern(value)
    except (re2.error, UnicodeEncodeError, TypeError):
        return False
    return True


def _formats() -> dict[str, Callable[[str], bool]]:
    out: dict[str, Callable[[str], bool]] = {"regex": _regex}
    for name, regex in CodeGeneratorDraft2019.FORMAT_REGEXS.items():  # draft 2019's list holds the earlier ones
        try:
            re2_pattern(regex)
        except re2.error:
            out[name] = _bounded_format(regex, _LONGEST.get(name, 128))
    return out


FORMATS = _formats()


class _LinearPattern:
    """An RE2 pattern with the two methods fastjsonschema's generated code calls."""

    __slots__ = ("_compiled",)

    def __init__(self, compiled) -> None:
        self._compiled = compiled

    def search(self, text: str):
        try:
            return self._compiled.search(text)
        except UnicodeEncodeError:  # a lone surrogate matches no pattern
            return None

    def match(self, text: str):
        try:
            return self._compiled.match(text)
        except UnicodeEncodeError:
            return None


class _GeneratorRe:
    """The `re` fastjsonschema's generator searches with while it compiles a schema: RE2's search.

    With "additionalProperties": false the generator checks each `required` name against the
    `patternProperties` itself; a pattern like ^(a|a)+$ and a 25-character name held the node for
    4 s in Python's re before any record was read. Compiling stays Python's (the generator reads
    the compiled patterns' text back).
    """

    def __getattr__(self, name: str):
        return getattr(re, name)

    @staticmethod
    def search(pattern, string, flags=0):
        try:
            return re2_pattern(pattern if isinstance(pattern, str) else pattern.pattern).search(string)
        except re2.error as exc:
            raise _refusal(f"pattern {pattern!r}", exc) from exc


fastjsonschema.draft04.re = _GeneratorRe()


def _refuse_remote(uri: str):
    raise DatanetError(f"schema $ref {uri!r} is not in the schema: a record schema may only refer within itself",
                       field="schema")


# a $ref outside the schema would be fetched by the node (urlopen) while the schema compiles
_NO_FETCH = dict.fromkeys(("http", "https", "file", "ftp", "data", "jar", ""), _refuse_remote)


def _local_refs_only(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            _refuse_remote(ref)
        for value in node.values():
            _local_refs_only(value)
    elif isinstance(node, list):
        for value in node:
            _local_refs_only(value)


def compile_record_schema(schema: dict) -> Callable[[dict], Any]:
    """The validator of a record schema, every pattern run by RE2; a pattern RE2 cannot run is refused by name."""
    _local_refs_only(schema)
    try:
        validate = fastjsonschema.compile(schema, handlers=_NO_FETCH, formats=FORMATS)
    except DatanetError:
        raise
    except Exception as exc:  # fastjsonschema raises several kinds on unsupported constructs
        raise DatanetError(f"schema cannot be compiled: {exc}", field="schema") from exc
    # with custom formats the validator is a functools.partial of the generated function
    patterns = getattr(validate, "func", validate).__globals__["REGEX_PATTERNS"]
    for key, compiled in list(patterns.items()):
        try:
            patterns[key] = _LinearPattern(re2_pattern(compiled.pattern))
        except (re2.error, UnicodeEncodeError) as exc:
            raise _refusal(f"pattern {key!r}", exc) from exc
    return validate
