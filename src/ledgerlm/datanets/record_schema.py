"""A Datanet's record schema compiled to a validator whose patterns and formats take time linear in the record."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
import re2
from fastjsonschema.draft07 import CodeGeneratorDraft07

from ledgerlm.datanets.schemas import DatanetError

# Python's `re` backtracks, and a record is checked while the node's process holds its interpreter
# lock: one pattern like ^(a+)+$ against 30 characters, or fastjsonschema's own e-mail format
# (a look-ahead over the whole string) against 64 KB, stalled every request for seconds. RE2 runs
# every pattern in time linear in the text; it refuses look-arounds and back-references instead.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is answered with an error, not a line on stderr

# an unescaped \Z (fastjsonschema's end of string for `$`) is RE2's \z
_END_OF_TEXT = re.compile(r"(?<!\\)((?:\\\\)*)\\Z")

# The two formats whose fastjsonschema regexes use look-arounds keep those regexes, run only on
# values as long as the format allows: an address is at most 254 characters (RFC 5321 with
# RFC 3696's erratum), a host name at most 253, so backtracking never sees more.
_EMAIL = re.compile(CodeGeneratorDraft07.FORMAT_REGEXS["email"])
_IDN_HOSTNAME = re.compile(CodeGeneratorDraft07.FORMAT_REGEXS["idn-hostname"])


def _email(value: str) -> bool:
    return len(value) <= 254 and _EMAIL.match(value) is not None


def _idn_hostname(value: str) -> bool:
    return len(value) <= 253 and _IDN_HOSTNAME.match(value) is not None


def _regex(value: str) -> bool:
    """A value of format "regex" is one RE2 compiles: the same engine the node matches patterns with."""
    try:
        re2.compile(value, _OPTIONS)
    except (re2.error, UnicodeEncodeError, TypeError):
        return False
    return True


FORMATS: dict[str, Callable[[str], bool]] = {"email": _email, "idn-hostname": _idn_hostname, "regex": _regex}


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


def compile_record_schema(schema: dict) -> Callable[[dict], Any]:
    """The validator of a record schema, every pattern run by RE2; a pattern RE2 cannot run is refused by name."""
    try:
        validate = fastjsonschema.compile(schema, formats=FORMATS)
    except Exception as exc:  # fastjsonschema raises several kinds on unsupported constructs
        raise DatanetError(f"schema cannot be compiled: {exc}", field="schema") from exc
    # with custom formats the validator is a functools.partial of the generated function
    patterns = getattr(validate, "func", validate).__globals__["REGEX_PATTERNS"]
    for key, compiled in list(patterns.items()):
        try:
            patterns[key] = _LinearPattern(re2.compile(_END_OF_TEXT.sub(r"\1\\z", compiled.pattern), _OPTIONS))
        except (re2.error, UnicodeEncodeError) as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            raise DatanetError(
                f"schema pattern {key!r} cannot be checked in linear time ({reason}); records are matched with RE2, "
                "which has no look-arounds or back-references: write the pattern without them", field="schema",
            ) from exc
    return validate
