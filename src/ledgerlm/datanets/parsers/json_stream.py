"""A `.json` upload read a chunk at a time: its top-level value, or its array's elements one by one, each bounded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

from ledgerlm.datanets.parsers.formats import BOM, ParseError

CHUNK_BYTES = 1 << 20
# How much of the buffer one run of elements, parsed in one call, may span.
RUN_BYTES = 1 << 14
_COMMA = re.compile(rb"[ \t\r\n]*+,[ \t\r\n]*+")
_SPACE = re.compile(rb"[ \t\r\n]*+")
# From a point outside any string: everything up to the next bracket, strings skipped whole. A match
# ends at a bracket, at the end of the buffer, or at the quote of a string the buffer cuts short.
_TO_BRACKET = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
# Most arrays hold flat objects: the comma before one and the whole object, found in one match.
_NEXT_FLAT_OBJECT = re.compile(rb'[ \t\r\n]*+,[ \t\r\n]*+(\{(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+\})', re.DOTALL)
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
# A number, true, false, null, or whatever malformed word stands in their place.
_SCALAR = re.compile(rb'[^ \t\r\n,\[\]{}"]*+')
_OPEN = frozenset(b"[{")
_NOT_A_VALUE = frozenset(b",:]}")
_CONTINUATION = bytes(range(0x80, 0xC0))


class JsonValue(NamedTuple):
    """The bytes of one JSON value of the file: an array element (`item` from 1) or the top-level value (0)."""

    raw: bytes
    item: int
    offset: int  # of its first byte in the file
    record: object = None  # already parsed and checked, as one of a run (raw and offset are then empty)


class JsonStream:
    """Reads the values of one `.json` file without holding more than one of them and a chunk.

    Element boundaries are found by counting brackets outside strings; whether an element is
    well-formed JSON is left to the parser that reads its bytes, so a wrong guess about a
    malformed element can only change where its error is reported, never let it through.
    """

    def __init__(self, file: BinaryIO, name: str, max_value_bytes: int, *, too_large: str,
                 chunk_bytes: int | None = None):
        self.file = file
        self.name = name
        self.max_value_bytes = max_value_bytes
        self.too_large = too_large  # the reason a value past max_value_bytes is refused
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.buf = file.read(len(BOM))
        self.base = 0  # file offset of buf[0]
        if self.buf == BOM:
            self.buf, self.base = b"", len(BOM)
        self.pos = 0
        self.eof = False

    # ---------------------------------------------------------------- buffer

    def _more(self, keep: int) -> bool:
        """Read another chunk, dropping what precedes buf[keep]; False at the end of the file."""
        chunk = b"" if self.eof else self.file.read(self.chunk_bytes)
        if not chunk:
            self.eof = True
            return False
        self.base += keep
        self.buf = self.buf[keep:] + chunk
        self.pos -= keep
        return True

    def _skip_space(self) -> int | None:
        """The next byte that is not JSON whitespace (consumed up to it, not past), None at the end."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more(self.pos):
                return None

    def _take(self, item: int) -> JsonValue:
        """The value starting at self.pos, read to its end (or to the end of the file, if it never ends)."""
        first = self.buf[self.pos]
        if first in _NOT_A_VALUE:
            what = f" for item {item}" if item else ""
            self._malformed(f"expected a JSON value{what}, found {_shown(first)}")
        start = scan = self.pos
        depth = 0
        while True:
            end = None
            if first in _OPEN:
                while scan < len(self.buf):
                    scan = _TO_BRACKET.match(self.buf, scan).end()
                    if scan == len(self.buf) or self.buf[scan] == 0x22:  # a string cut short: resume at its quote
                        break
                    depth += 1 if self.buf[scan] in _OPEN else -1
                    scan += 1
                    if depth == 0:
                        end = scan
                        break
            else:
                match = (_STRING if first == 0x22 else _SCALAR).match(self.buf, start)
                if match and match.end() < len(self.buf):
                    end = match.end()
            if end is None and len(self.buf) - start > self.max_value_bytes:
                end = len(self.buf)  # it ends beyond, so it is too large already
            if end is None and not self._more(start):
                end = len(self.buf)  # never closed: the parser of its bytes says how
            if end is not None:
                if end - start > self.max_value_bytes:
                    self._too_large(item, start)
                self.pos = end
                return JsonValue(self.buf[start:end], item, self.base + start)
            scan -= start
            start = 0

    def _too_large(self, item: int, start: int):
        raise ParseError(f"{self.where(item, *self.position(self.base + start))}: {self.too_large}")

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column) of a byte offset of the file."""
        return file_position(self.file, offset)

    def where(self, item: int, line: int, column: int | None = None) -> str:
        """`name item N (line L column C)`, or `name line L column C` for a place outside any item."""
        place = f"line {line}" if column is None else f"line {line} column {column}"
        return f"{self.name} item {item} ({place})" if item else f"{self.name} {place}"

    def _malformed(self, reason: str):
        raise ParseError(f"{self.where(0, *self.position(self.base + self.pos))}: malformed JSON: {reason}")

    # ---------------------------------------------------------------- values

    def first_byte(self) -> int | None:
        """The first byte of the top-level value, None for a file of only whitespace."""
        return self._skip_space()

    def top_value(self) -> JsonValue:
        """The whole top-level value; call after `first_byte` returned a byte."""
        return self._take(0)

    def rest_is_blank(self) -> bool:
        return self._skip_space() is None

    def items(self, parse_run: Callable[[bytes], list | None] | None = None) -> Iterator[JsonValue]:
        """The elements of the top-level array, one at a time; call after `first_byte` returned `[`.

        `parse_run` may take a run of elements at once: given the bytes from one element's start to
        a '}' further on, it returns their records, or None to have them read one by one. It may
        return records only when '[' + those bytes + ']' parses as an array: a cut inside an element
        leaves a string or a bracket open that the ']' cannot close, so a run it accepts ends where
        an element does.
        """
        self.pos += 1
        item = 0
        retry_at = 0  # a run that failed is not tried again until this offset, so failures cost one parse per run
        after = self._skip_space()
        while after != ord("]"):
            if after is None:
                self._malformed(f"the file ends inside the array{f', after item {item}' if item else ''} (']' is missing)")
            if item:
                if after != ord(","):
                    self._malformed(f"expected ',' or ']' after item {item}, found {_shown(after)}")
                self.pos += 1
                after = self._skip_space()
                if after is None:
                    continue
                if after == ord("]"):
                    self._malformed(f"trailing comma after item {item}")
            item += 1
            yield self._take(item)
            while True:
                if parse_run is not None and self.base + self.pos >= retry_at:
                    records = self._run(parse_run)
                    if records is not None:
                        for record in records:
                            item += 1
                            yield JsonValue(b"", item, 0, record)
                        continue
                    retry_at = self.base + self.pos + RUN_BYTES
                flat = _NEXT_FLAT_OBJECT.match(self.buf, self.pos)
                if flat is None:
                    break
                start, self.pos = flat.span(1)
                item += 1
                if self.pos - start > self.max_value_bytes:
                    self._too_large(item, start)
                yield JsonValue(self.buf[start:self.pos], item, self.base + start)
            after = self._skip_space()
        self.pos += 1
        after = self._skip_space()
        if after is not None:
            self._malformed(f"content after the array's closing ']' ({_shown(after)})")

    def _run(self, parse_run: Callable[[bytes], list | None]) -> list | None:
        """The records `parse_run` makes of the elements after the next comma, up to the last '}' within
        RUN_BYTES of the buffer; consumed only if it accepts them."""
        comma = _COMMA.match(self.buf, self.pos)
        if comma is None:
            return None
        start = comma.end()
        close = self.buf.rfind(b"}", start, start + RUN_BYTES)
        if close < 0:
            return None
        records = parse_run(self.buf[start:close + 1])
        if records:
            self.pos = close + 1
        return records or None


def _shown(byte: int) -> str:
    return repr(chr(byte)) if 0x20 <= byte < 0x7F else f"byte 0x{byte:02x}"


def file_position(file: BinaryIO, offset: int) -> tuple[int, int]:
    """(line, column) from 1 of a byte offset, the column in characters, read again from the file's start.

    Only an error pays for this, so the stream keeps no line count; a file of one long line
    (what most tools write) is still read a chunk at a time.
    """
    here = file.tell()
    try:
        file.seek(0)
        left = offset
        if file.read(len(BOM)) == BOM:
            left -= len(BOM)
        else:
            file.seek(0)
        line, column = 1, 0
        while left > 0:
            chunk = file.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            if b"\n" in chunk:
                line += chunk.count(b"\n")
                chunk = chunk[chunk.rfind(b"\n") + 1:]
                column = 0
            column += len(chunk.translate(None, _CONTINUATION))
    finally:
        file.seek(here)
    return line, column + 1
