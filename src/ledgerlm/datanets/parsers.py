"""Parsing of uploaded contribution files into hashed records or plain text, errors saying where."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath

import fastjsonschema
import orjson

from ledgerlm.errors import LedgerError

__all__ = [
    "DOCUMENT_FORMATS",
    "RECORD_FORMATS",
    "ParseError",
    "ParsedDocument",
    "ParsedRecord",
    "detect_format",
    "extract_document",
    "iter_records",
    "safe_file_name",
]

RECORD_FORMATS = frozenset({"jsonl", "json", "csv", "parquet"})
DOCUMENT_FORMATS = frozenset({"text", "markdown", "pdf", "docx"})

_FORMAT_BY_EXTENSION = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".pdf": "pdf",
    ".docx": "docx",
}
_EXTENSION_HINTS = {
    ".xlsx": "save the sheet as CSV",
    ".xls": "save the sheet as CSV",
    ".doc": "save it as .docx",
    ".tsv": "save it as comma-separated .csv",
}
_LABEL = {
    "jsonl": "JSON Lines",
    "json": "JSON",
    "csv": "CSV",
    "parquet": "Parquet",
    "text": "plain text",
    "markdown": "Markdown",
    "pdf": "PDF",
    "docx": "DOCX",
}
_MEDIA_TYPE = {
    "text": "text/plain",
    "markdown": "text/markdown",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
_TEXT_FORMATS = frozenset({"jsonl", "json", "csv", "text", "markdown"})

_BOM = b"\xef\xbb\xbf"
# orjson turns integers beyond 64 bits into floats without a word; a run of 19+ digits is the
# only way such a number can appear, so only those lines pay for a range check. Counting digits
# first is ten times cheaper than the regex search it spares on ordinary lines.
_LONG_DIGITS = re.compile(rb"\d{19}")
_DIGITS = b"0123456789"
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# Bidirectional overrides make a name display as something else ("txt.exe" shown as "exe.txt").
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# A DOCX is a zip; a 50 MB upload could otherwise expand to many GB inside python-docx.
MAX_DOCX_EXPANDED_BYTES = 512 * 1024 * 1024
_PARQUET_BATCH_ROWS = 4096


class ParseError(LedgerError):
    """An uploaded file that cannot be read as its format; the message names the file and where."""

    def __init__(self, message: str, *, field: str | None = "files", status: int | None = None):
        super().__init__(message, field=field, status=status)


@dataclass(frozen=True)
class ParsedRecord:
    """One record of a records Datanet, with the canonical bytes its content hash is taken over."""

    record: dict
    canonical: bytes
    content_hash: str
    location: str


@dataclass(frozen=True)
class ParsedDocument:
    """The plain text of one uploaded document, newlines normalised to "\\n"."""

    text: str
    media_type: str
    pages: int | None


# ---------------------------------------------------------------------------------------------
# names and formats


def safe_file_name(name: str) -> str:
    """Return `name` unchanged if it is a plain file name safe to store and show, else raise."""
    shown = ascii(name) if len(name) <= 80 else ascii(name[:77]) + "..."
    if not name:
        raise ParseError("file name is empty")
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in name):
        raise ParseError(f"file name {shown} contains control characters")
    if name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name):
        raise ParseError(f"file name {shown} is an absolute path; give the file's own name only")
    if "/" in name or "\\" in name:
        raise ParseError(
            f"file name {shown} contains a path separator; give the file's own name only"
        )
    if name in (".", ".."):
        raise ParseError(f"file name {shown} is a directory reference, not a file name")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ParseError(f"file name {shown} is not valid Unicode") from None
    if size > 255:
        raise ParseError(f"file name {shown} is {size} bytes long; the limit is 255")
    return name


def detect_format(name: str, head: bytes) -> str:
    """The format of an upload from its extension, confirmed against its first bytes.

    `head` is the start of the file; 4 KiB is plenty. Returns one of RECORD_FORMATS or
    DOCUMENT_FORMATS.
    """
    suffix = PurePosixPath(name).suffix.lower()
    fmt = _FORMAT_BY_EXTENSION.get(suffix)
    if fmt is None:
        supported = ", ".join(_FORMAT_BY_EXTENSION)
        what = f"file type '{suffix}'" if suffix else "a file without extension"
        hint = f" ({_EXTENSION_HINTS[suffix]})" if suffix in _EXTENSION_HINTS else ""
        raise ParseError(f"{name}: {what} is not supported{hint}; supported: {supported}")
    if not head:
        raise ParseError(f"{name}: file is empty")
    label = _LABEL[fmt]
    if fmt == "pdf" and b"%PDF-" not in head[:1024]:
        raise ParseError(f"{name}: not a PDF (no %PDF- header){_looks_like(head)}")
    if fmt == "docx" and not head.startswith(b"PK\x03\x04"):
        raise ParseError(
            f"{name}: not a DOCX (not a zip archive; password-protected Word files are not"
            f" supported){_looks_like(head)}"
        )
    if fmt == "parquet" and not head.startswith(b"PAR1"):
        raise ParseError(f"{name}: not a Parquet file (no PAR1 header){_looks_like(head)}")
    if fmt in _TEXT_FORMATS:
        binary = _binary_kind(head)
        if binary:
            raise ParseError(f"{name}: content is {binary}, not {label}")
    return fmt


def _binary_kind(head: bytes) -> str | None:
    if head.startswith(b"%PDF-"):
        return "a PDF"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (e.g. DOCX or XLSX)"
    if head.startswith(b"PAR1"):
        return "a Parquet file"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (save it as UTF-8)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed (decompress it first)"
    if b"\x00" in head:
        return "binary (it contains NUL bytes)"
    return None


def _looks_like(head: bytes) -> str:
    kind = _binary_kind(head)
    return f"; it looks like {kind}" if kind else ""


# ---------------------------------------------------------------------------------------------
# records


def iter_records(
    path: Path,
    name: str,
    fmt: str,
    *,
    validator: Callable[[dict], object] | None = None,
) -> Iterator[ParsedRecord]:
    """Stream the records of a JSONL, JSON, CSV or Parquet file, validated and hashed.

    Memory stays flat in the number of records except for `.json` (one top-level array, read
    whole). `validator` raises on a schema violation (a fastjsonschema-compiled function or a
    jsonschema `validate`); the error is re-raised as ParseError naming file, line/row and field.
    The record is hashed after validation, so schema defaults a validator fills in are part of it.

    CSV cells stay strings unless the validator rejects a cell for its type: then the cell is
    read as the type(s) the schema asks for (integer, number, boolean, null) and the record is
    validated again; an empty cell the schema rejects counts as absent.
    """
    path = Path(path)
    if fmt == "jsonl":
        return _iter_jsonl(path, name, validator)
    if fmt == "json":
        return _iter_json(path, name, validator)
    if fmt == "csv":
        return _iter_csv(path, name, validator)
    if fmt == "parquet":
        return _iter_parquet(path, name, validator)
    if fmt in DOCUMENT_FORMATS:
        raise ParseError(f"{name}: a {_LABEL[fmt]} file holds a document, not records")
    raise ParseError(f"{name}: unknown format '{fmt}'")


def _hashed(record: dict, location: str, validator, where: str | None = None) -> ParsedRecord:
    if validator is not None:
        _validate(validator, record, where or location)
    try:
        canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise ParseError(f"{where or location}: {_unserialisable(exc)}") from None
    return ParsedRecord(record, canonical, hashlib.sha256(canonical).hexdigest(), location)


def _unserialisable(exc: TypeError) -> str:
    if "Recursion" in str(exc):
        return "the record is nested more than 254 levels deep"
    if "64-bit" in str(exc):
        return "an integer in the record is outside the 64-bit range; write it as a string"
    return f"the record cannot be written as JSON ({exc})"


def _iter_jsonl(path: Path, name: str, validator) -> Iterator[ParsedRecord]:
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    offset = 0
    count = 0
    with open(path, "rb") as lines:
        for lineno, line in enumerate(lines, 1):
            start = offset
            offset += len(line)
            if lineno == 1 and line.startswith(_BOM):
                line = line[3:]
                start = 3
            try:
                record = loads(line)
            except JSONDecodeError as exc:
                if not line.strip():
                    continue
                raise _json_line_error(name, lineno, line, start, exc) from None
            location = f"{name} line {lineno}"
            if type(record) is not dict:
                raise ParseError(f"{location}: expected a JSON object, got {_json_kind(record)}")
            if len(line) - len(line.translate(None, _DIGITS)) >= 19 and _LONG_DIGITS.search(line):
                _check_int_range(line, location)
            count += 1
            yield _hashed(record, location, validator)
    if count == 0:
        reason = "file is empty" if offset == 0 else "no records (only blank lines)"
        raise ParseError(f"{name}: {reason}")


def _json_line_error(name: str, lineno: int, line: bytes, start: int, exc) -> ParseError:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return ParseError(_bad_utf8(f"{name} line {lineno}", bad, start))
    return ParseError(f"{name} line {lineno}: malformed JSON: {exc.msg} (column {exc.colno})")


def _bad_utf8(where: str, exc: UnicodeDecodeError, base: int) -> str:
    return (
        f"{where}: invalid UTF-8 at byte offset {base + exc.start}"
        f" (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8"
    )


def _check_int_range(text: bytes, location: str) -> None:
    """Refuse integers orjson would have read as floats; a top-level array is checked per item."""
    import json  # the standard parser keeps big integers exact, which is what the check needs

    def walk(value, field: str, where: str) -> None:
        if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
            shown = field if len(field) <= 80 else field[:77] + "..."
            raise ParseError(
                f"{where}: {f'field {shown!r}: ' if shown else ''}integer {value} is outside"
                " the 64-bit range; write it as a string"
            )
        if type(value) is dict:
            for key, item in value.items():
                walk(item, f"{field}.{key}" if field else key, where)
        elif type(value) is list:
            for i, item in enumerate(value):
                walk(item, f"{field}[{i}]", where)

    try:
        value = json.loads(text.decode("utf-8"))
        if type(value) is list:
            for i, item in enumerate(value, 1):
                walk(item, "", f"{location} item {i}")
        else:
            walk(value, "", location)
    except RecursionError:
        raise ParseError(f"{location}: the record is nested too deeply") from None


def _json_kind(value) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _iter_json(path: Path, name: str, validator) -> Iterator[ParsedRecord]:
    data = path.read_bytes()
    bom = len(_BOM) if data.startswith(_BOM) else 0
    data = data[bom:]
    if not data.strip():
        raise ParseError(f"{name}: file is empty")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # A first complete value followed by more is JSON Lines saved under a .json name.
        if data.lstrip()[:1] == b"{" and exc.msg.startswith("unexpected content after document"):
            yield from _iter_jsonl(path, name, validator)
            return
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            line = data.count(b"\n", 0, bad.start) + 1
            raise ParseError(_bad_utf8(f"{name} line {line}", bad, bom)) from None
        raise ParseError(
            f"{name} line {exc.lineno} column {exc.colno}: malformed JSON: {exc.msg}"
        ) from None
    if not isinstance(value, (dict, list)):
        raise ParseError(f"{name}: expected an array of JSON objects, got {_json_kind(value)}")
    if not value and isinstance(value, list):
        raise ParseError(f"{name}: no records (the array is empty)")
    if _LONG_DIGITS.search(data):
        _check_int_range(data, name)
    if isinstance(value, dict):
        yield _hashed(value, name, validator)
        return
    for i, record in enumerate(value, 1):
        location = f"{name} item {i}"
        if type(record) is not dict:
            raise ParseError(f"{location}: expected a JSON object, got {_json_kind(record)}")
        yield _hashed(record, location, validator)


def _iter_csv(path: Path, name: str, validator) -> Iterator[ParsedRecord]:
    coercer = _CsvCoercer(validator) if validator is not None else None
    with open(path, encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text, strict=True)
        try:
            header = next((row for row in reader if row), None)
            if header is None:
                raise ParseError(f"{name}: file is empty (a CSV needs a header row)")
            header = _csv_header(f"{name} line {reader.line_num}", header)
            rowno = 0
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue  # blank lines and all-empty rows (",,,") carry no data
                rowno += 1
                where = f"{name} row {rowno} (line {reader.line_num})"
                if len(cells) != len(header):
                    cells_word = "cell" if len(cells) == 1 else "cells"
                    raise ParseError(
                        f"{where}: has {len(cells)} {cells_word} but the header has"
                        f" {len(header)} columns"
                    )
                record = dict(zip(header, cells, strict=True))
                if coercer is not None:
                    coercer.validate(record, where)
                yield _hashed(record, f"{name} row {rowno}", None, where)
        except UnicodeDecodeError:
            raise ParseError(_locate_bad_utf8(path, name)) from None
        except csv.Error as exc:
            raise ParseError(f"{name} line {reader.line_num}: malformed CSV: {exc}") from None
    if rowno == 0:
        raise ParseError(f"{name}: no records (only a header row)")


def _csv_header(where: str, header: list[str]) -> list[str]:
    # Surrounding spaces in a column name are invisible in a spreadsheet and never meant.
    header = [column.strip() for column in header]
    for i, column in enumerate(header, 1):
        if not column:
            raise ParseError(f"{where}: header column {i} has no name")
    seen = set()
    for column in header:
        if column in seen:
            raise ParseError(f"{where}: column '{column}' appears twice in the header")
        seen.add(column)
    return header


def _locate_bad_utf8(path: Path, name: str) -> str:
    offset = 0
    with open(path, "rb") as lines:
        for lineno, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return _bad_utf8(f"{name} line {lineno}", bad, offset)
            offset += len(line)
    return f"{name}: invalid UTF-8; save the file as UTF-8"


_NOT_COERCIBLE = object()


class _CsvCoercer:
    """Reads CSV cells as the JSON types the schema asks for, learning per column.

    A column coerced once is coerced up front in later rows, so a numeric column costs one
    failed validation per file rather than one per row.
    """

    def __init__(self, validator: Callable[[dict], object]):
        self.validator = validator
        self.column_types: dict[str, tuple[str, ...]] = {}

    def validate(self, record: dict, where: str) -> None:
        for column, types in self.column_types.items():
            cell = record.get(column)
            if type(cell) is str:
                self._set(record, column, _coerce_cell(cell, types))
        tried = set()
        while True:
            try:
                self.validator(record)
                return
            except Exception as exc:  # noqa: BLE001 - sorted into schema errors or re-raised below
                column_types = _top_level_type_violation(exc, record)
                if column_types is None or column_types[0] in tried:
                    _raise_violation(exc, where)
                column, types = column_types
                value = _coerce_cell(record[column], types)
                if value is _NOT_COERCIBLE:
                    _raise_violation(exc, where)
                tried.add(column)
                self.column_types[column] = types
                self._set(record, column, value)

    @staticmethod
    def _set(record: dict, column: str, value) -> None:
        if value is _ABSENT:
            del record[column]
        elif value is not _NOT_COERCIBLE:
            record[column] = value


_ABSENT = object()
_INTEGER_CELL = re.compile(r"[+-]?\d+")


def _coerce_cell(cell: str, types: tuple[str, ...]):
    text = cell.strip()
    if not text:
        return None if "null" in types else _ABSENT
    lowered = text.lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if "null" in types and lowered == "null":
        return None
    if ("integer" in types or "number" in types) and _INTEGER_CELL.fullmatch(text):
        return int(text)
    if "number" in types:
        try:
            number = float(text)
        except ValueError:
            return _NOT_COERCIBLE
        return number if math.isfinite(number) else _NOT_COERCIBLE
    return _NOT_COERCIBLE


def _top_level_type_violation(exc: Exception, record: dict) -> tuple[str, tuple[str, ...]] | None:
    """(column, expected types) when `exc` says a top-level string field has the wrong type."""
    if isinstance(exc, fastjsonschema.JsonSchemaValueException):
        if exc.rule != "type" or not (exc.name or "").startswith("data."):
            return None
        column, expected = exc.name[5:], exc.rule_definition
    else:
        validation_error = _jsonschema_error_type()
        if validation_error is None or not isinstance(exc, validation_error):
            return None
        if exc.validator != "type" or len(exc.path) != 1:
            return None
        column, expected = exc.path[0], exc.validator_value
    if type(record.get(column)) is not str:
        return None
    return column, (expected,) if isinstance(expected, str) else tuple(expected)


def _jsonschema_error_type():
    try:
        from jsonschema import ValidationError
    except ImportError:
        return None
    return ValidationError


def _validate(validator, record: dict, where: str) -> None:
    try:
        validator(record)
    except Exception as exc:  # noqa: BLE001 - sorted into schema errors or re-raised below
        _raise_violation(exc, where)


def _raise_violation(exc: Exception, where: str):
    """Re-raise a validator's exception as ParseError naming where and which field; others as is."""
    if isinstance(exc, fastjsonschema.JsonSchemaValueException):
        raise ParseError(f"{where}: {_fastjsonschema_reason(exc)}") from exc
    validation_error = _jsonschema_error_type()
    if validation_error is not None and isinstance(exc, validation_error):
        raise ParseError(f"{where}: {_jsonschema_reason(exc)}") from exc
    if isinstance(exc, LedgerError):
        raise ParseError(f"{where}: {exc.message}") from exc
    if isinstance(exc, ValueError):
        raise ParseError(f"{where}: {exc}") from exc
    raise exc


def _fastjsonschema_reason(exc) -> str:
    name = exc.name or "data"
    field = name[4:].lstrip(".") if name.startswith("data") else name
    if exc.rule == "required" and isinstance(exc.value, dict):
        missing = [key for key in exc.rule_definition if key not in exc.value]
        if missing:
            return f"field '{_join(field, missing[0])}': is required but missing"
    message = exc.message
    reason = message[len(name) :].strip() if message.startswith(name) else message
    if isinstance(exc.value, (str, int, float, bool)) or exc.value is None:
        reason += f" (got {_preview(exc.value)})"
    return f"field '{field}': {reason}" if field else f"record {reason}"


def _jsonschema_reason(exc) -> str:
    field = ""
    for part in exc.path:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    if exc.validator == "required" and isinstance(exc.instance, dict):
        missing = [key for key in exc.validator_value if key not in exc.instance]
        if missing:
            return f"field '{_join(field, missing[0])}': is required but missing"
    return f"field '{field}': {exc.message}" if field else exc.message


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _preview(value) -> str:
    text = str(value) if isinstance(value, float) else orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def _iter_parquet(path: Path, name: str, validator) -> Iterator[ParsedRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS)
    except (pa.ArrowException, OSError) as exc:
        raise ParseError(f"{name}: not a readable Parquet file ({exc})") from None
    rowno = 0
    with parquet:
        while True:
            try:
                batch = next(batches, None)
                rows = batch.to_pylist(maps_as_pydicts="strict") if batch is not None else None
            except (pa.ArrowException, OSError, KeyError) as exc:
                raise ParseError(f"{name} row {rowno + 1}: corrupt Parquet data ({exc})") from None
            if rows is None:
                break
            for row in rows:
                rowno += 1
                location = f"{name} row {rowno}"
                # Parquet has no "absent": every row has every column, so a top-level null is
                # read as a missing field, as a JSON Lines record that left it out.
                record = {}
                for key, value in row.items():
                    value = _json_value(value, location, key)
                    if value is not None:
                        record[key] = value
                yield _hashed(record, location, validator)
    if rowno == 0:
        raise ParseError(f"{name}: no records (the table has no rows)")


def _json_value(value, location: str, field: str):
    """A Parquet cell as a JSON value: dates as ISO 8601 strings, NaN as null, bytes refused."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isnan(value):
            return None  # NaN is how pandas writes a missing number
        if math.isinf(value):
            raise ParseError(f"{location}: field '{field}': infinity has no JSON form")
        return value
    if kind is dict:
        return {str(k): _json_value(v, location, f"{field}.{k}") for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_json_value(v, location, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ParseError(f"{location}: field '{field}': {value} has no JSON form")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise ParseError(
            f"{location}: field '{field}': binary values cannot be stored in a record;"
            " encode them (e.g. base64) as a string column"
        )
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _json_value(value.item(), location, field)
    raise ParseError(
        f"{location}: field '{field}': values of type {kind.__name__} have no JSON form"
    )


# ---------------------------------------------------------------------------------------------
# documents


def extract_document(path: Path, name: str, fmt: str) -> ParsedDocument:
    """The plain text of a text, Markdown (kept as written), PDF or DOCX upload."""
    path = Path(path)
    pages = None
    if fmt in ("text", "markdown"):
        text = _read_text(path, name)
    elif fmt == "pdf":
        text, pages = _pdf_text(path, name)
    elif fmt == "docx":
        text = _docx_text(path, name)
    elif fmt in RECORD_FORMATS:
        raise ParseError(f"{name}: a {_LABEL[fmt]} file holds records, not a document")
    else:
        raise ParseError(f"{name}: unknown format '{fmt}'")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        hint = " (a scanned PDF needs OCR first)" if fmt == "pdf" else ""
        raise ParseError(f"{name}: no extractable text{hint}")
    return ParsedDocument(text=text, media_type=_MEDIA_TYPE[fmt], pages=pages)


def _read_text(path: Path, name: str) -> str:
    data = path.read_bytes()
    if not data:
        raise ParseError(f"{name}: file is empty")
    bom = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bom + bad.start) + 1
        raise ParseError(_bad_utf8(f"{name} line {line}", bad, bom)) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ParseError(f"{name} line {line}: contains a NUL byte, so it is not text")
    return text


def _pdf_text(path: Path, name: str) -> tuple[str, int]:
    from pypdf import PdfReader

    # pypdf reading a hostile file can fail with almost any exception type; each one means
    # "this PDF cannot be read", so they are reported as such rather than as a server fault.
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:  # noqa: BLE001 - unsupported cipher counts as locked
                opened = 0
            if not opened:
                raise ParseError(
                    f"{name}: the PDF is encrypted with a password; upload an unlocked copy"
                )
        texts = [page.extract_text() or "" for page in reader.pages]
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above
        raise ParseError(f"{name}: unreadable PDF ({type(exc).__name__}: {exc})") from None
    return "\n\n".join(text.strip("\n") for text in texts), len(texts)


def _docx_text(path: Path, name: str) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseError(f"{name}: not a DOCX (corrupt zip archive: {exc})") from None
    if "word/document.xml" not in {member.filename for member in members}:
        raise ParseError(f"{name}: not a DOCX (the zip archive has no word/document.xml)")
    expanded = sum(member.file_size for member in members)
    if expanded > MAX_DOCX_EXPANDED_BYTES:
        raise ParseError(
            f"{name}: the DOCX expands to {expanded} bytes; the limit is {MAX_DOCX_EXPANDED_BYTES}"
        )

    import docx
    from docx.table import Table

    # As with PDF, a hostile DOCX can break python-docx in many ways; all mean "unreadable".
    try:
        document = docx.Document(str(path))
        blocks = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks.extend(_table_lines(block))
            else:
                blocks.append(block.text)
    except Exception as exc:  # noqa: BLE001 - see above
        raise ParseError(f"{name}: unreadable DOCX ({type(exc).__name__}: {exc})") from None
    return "\n".join(blocks)


def _table_lines(table) -> list[str]:
    lines = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            # A merged cell appears once per grid column it spans; its text counts once.
            if id(cell._tc) not in seen:
                seen.add(id(cell._tc))
                cells.append(cell.text)
        lines.append("\t".join(cells))
    return lines
