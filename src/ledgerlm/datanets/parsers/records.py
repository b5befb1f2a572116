"""Records of a JSONL, JSON, CSV or Parquet upload, validated against the schema and hashed."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

from ledgerlm.datanets.parsers.formats import BOM, DOCUMENT_FORMATS, LABEL, ParseError, bad_utf8
from ledgerlm.datanets.parsers.json_keys import check_unique_keys, repeated_key, repeated_key_reason
from ledgerlm.datanets.parsers.json_stream import JsonStream, JsonValue
from ledgerlm.datanets.parsers.schema_errors import CsvCoercer, validate_record
from ledgerlm.datanets.schemas import EXPORT_FIELDS

# orjson turns integers beyond 64 bits into floats without a word; a run of 19+ digits is the
# only way such a number can appear, so only those lines pay for a range check. Counting digits
# first is ten times cheaper than the regex search it spares on ordinary lines.
_LONG_DIGITS = re.compile(rb"\d{19}")
_DIGITS = b"0123456789"
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_DIGITS_AS_ZERO, _19_ZEROS = bytes.maketrans(b"123456789", b"0" * 9), b"0" * 19
_PARQUET_BATCH_ROWS = 4096
# One record of a JSON Lines or JSON file is read whole before it is parsed, so its size is bounded while it
# is read; parsed, a record takes several times its bytes.
MAX_RECORD_BYTES = 16 * 1024 * 1024
# Fields of one record, those inside its objects included: each is a column of the version's Parquet export, and a
# 12 MB record of a million fields took that export 5 GiB. A field takes at least 4 bytes of JSON ('"":0,' less
# one), so only a record of more than 4 bytes a field is counted.
MAX_RECORD_FIELDS = 4096
# Parquet is compressed: a 1.3 KB file of repeated text expands to 200 MiB of records (zstd), so the
# expanded size is bounded, from the footer before anything is inflated and again as batches arrive.
PARQUET_EXPANDED_BYTES = 512 * 1024 * 1024
# How much of a batch becomes Python records at once.
_PARQUET_SLICE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ParsedRecord:
    """One record of a records Datanet, with the canonical bytes its content hash is taken over."""

    record: dict
    canonical: bytes
    content_hash: str
    location: str




def iter_records(
    path: Path,
    name: str,
    fmt: str,
    *,
    validator: Callable[[dict], object] | None = None,
    max_record_bytes: int | None = None,
) -> Iterator[ParsedRecord]:
    """Stream the records of a JSONL, JSON, CSV or Parquet file, validated and hashed.

    Memory stays flat in the number of records; a `.json` array is read an element at a time.
    A JSON Lines line or JSON array element longer than `max_record_bytes` (MAX_RECORD_BYTES by
    default) is refused while it is read; a CSV or Parquet record whose JSON form is longer is refused
    too, from the sizes of its cells before it is written as JSON. `validator` raises on a schema violation (a
    fastjsonschema-compiled function or a jsonschema `validate`); the error is re-raised as
    ParseError naming file, line/row and field.
    The record is hashed after validation, so schema defaults a validator fills in are part of it.

    CSV cells stay strings unless the validator rejects a cell for its type: then the cell is
    read as the type(s) the schema asks for (integer, number, boolean, null) and the record is
    validated again; an empty cell the schema rejects counts as absent.
    """
    path = Path(path)
    max_bytes = MAX_RECORD_BYTES if max_record_bytes is None else max_record_bytes
    if fmt == "jsonl":
        return _iter_jsonl(path, name, validator, max_bytes)
    if fmt == "json":
        return _iter_json(path, name, validator, max_bytes)
    if fmt == "csv":
        return _iter_csv(path, name, validator, max_bytes)
    if fmt == "parquet":
        return _iter_parquet(path, name, validator, max_bytes)
    if fmt in DOCUMENT_FORMATS:
        raise ParseError(f"{name}: a {LABEL[fmt]} file holds a document, not records")
    raise ParseError(f"{name}: unknown format '{fmt}'")


def _hashed(record: dict, location: str, validator, where: str | None = None,
            max_bytes: int | None = None) -> ParsedRecord:
    """`max_bytes` bounds a record built from cells (CSV, Parquet), which no line length bounded as it was read."""
    # Escaped as JSON a control character takes six bytes: a 60 MiB Parquet cell of them was a 377 MB record. The
    # characters a record holds are a floor of its JSON size, so a record over the limit by them is refused before
    # it is written out; one that only its escapes take over is refused by its written size.
    if max_bytes is not None and _json_bytes_at_least(record) > max_bytes:
        raise ParseError(f"{where or location}: {_too_large(max_bytes)}")
    reserved = [k for k in EXPORT_FIELDS if k in record]
    if reserved:
        raise ParseError(f"{where or location}: field '{reserved[0]}' is reserved: an export writes who contributed "
                         "the record and its hash there, so a record may not set it")
    if validator is not None:
        validate_record(validator, record, where or location)
    try:
        canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise ParseError(f"{where or location}: {_unserialisable(exc)}") from None
    if max_bytes is not None and len(canonical) > max_bytes:
        raise ParseError(f"{where or location}: {_too_large(max_bytes)}")
    if len(canonical) > 4 * MAX_RECORD_FIELDS and _fields(record) > MAX_RECORD_FIELDS:
        raise ParseError(f"{where or location}: the record has more than {MAX_RECORD_FIELDS:,} fields (those inside "
                         "its objects included); each is a column of the version's Parquet export")
    return ParsedRecord(record, canonical, hashlib.sha256(canonical).hexdigest(), location)


def _fields(value) -> int:
    """How many fields `value` has, those of the objects inside it (in lists too) included."""
    if type(value) is dict:
        return len(value) + sum(_fields(item) for item in value.values() if type(item) in (dict, list))
    return sum(_fields(item) for item in value if type(item) in (dict, list))


def _json_bytes_at_least(value) -> int:
    """A lower bound of the bytes of `value` written as JSON, without writing it: a string counts its characters
    and quotes (UTF-8 and escapes only add), any other scalar one byte."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is dict:  # '{', then per item '"key":' and the value and a ',' or '}'
        size = 1 + 4 * len(value) + sum(map(len, value))
        for item in value.values():  # a loop, not a generator: this runs on every CSV and Parquet record
            size += len(item) + 2 if type(item) is str else _json_bytes_at_least(item)
        return size
    if kind is list:
        size = 1 + len(value)
        for item in value:
            size += len(item) + 2 if type(item) is str else _json_bytes_at_least(item)
        return size
    return 1


def _unserialisable(exc: TypeError) -> str:
    if "Recursion" in str(exc):
        return "the record is nested more than 254 levels deep"
    if "64-bit" in str(exc):
        return "an integer in the record is outside the 64-bit range; write it as a string"
    return f"the record cannot be written as JSON ({exc})"


def _iter_jsonl(path: Path, name: str, validator, max_bytes: int) -> Iterator[ParsedRecord]:
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    offset = 0
    count = 0
    with open(path, "rb") as lines:
        lineno = 0
        # room for the line break, CRLF included, after a record of exactly max_bytes
        while line := lines.readline(max_bytes + 2 + (len(BOM) if lineno == 0 else 0)):
            lineno += 1
            start = offset
            offset += len(line)
            if len(line) > max_bytes and len(line.removeprefix(BOM).rstrip(b"\r\n")) > max_bytes:
                raise ParseError(f"{name} line {lineno}: {_too_large(max_bytes)}")
            if lineno == 1 and line.startswith(BOM):
                line = line[3:]
                start = 3
            if len(line) <= 2 and not line.strip():  # a raised parse error per blank line: 20 MB of them took 44 s
                continue
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
            check_unique_keys(line, record, name, lineno)
            count += 1
            yield _hashed(record, location, validator)
    if count == 0:
        reason = "file is empty" if offset == 0 else "no records (only blank lines)"
        raise ParseError(f"{name}: {reason}")


def _json_line_error(name: str, lineno: int, line: bytes, start: int, exc) -> ParseError:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return ParseError(bad_utf8(f"{name} line {lineno}", bad, start))
    return ParseError(f"{name} line {lineno}: malformed JSON: {exc.msg} (column {exc.colno})")


def _check_int_range(text: bytes, location: str) -> None:
    """Refuse integers orjson would have read as floats."""
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
        walk(json.loads(text.decode("utf-8-sig")), "", location)
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


def _too_large(max_bytes: int) -> str:
    return f"the record is larger than the limit of {max_bytes} bytes for one record (split it into smaller records)"


def _iter_json(path: Path, name: str, validator, max_bytes: int) -> Iterator[ParsedRecord]:
    with open(path, "rb") as file:
        stream = JsonStream(file, name, max_bytes, too_large=_too_large(max_bytes))
        first = stream.first_byte()
        if first is None:
            raise ParseError(f"{name}: file is empty")
        if first != ord("["):
            value = stream.top_value()
            if first == ord("{") and not stream.rest_is_blank():
                # A first object followed by more is JSON Lines saved under a .json name.
                yield from _iter_jsonl(path, name, validator, max_bytes)
                return
            record = _json_record(stream, value, name)
            if type(record) is not dict:
                raise ParseError(f"{name}: expected an array of JSON objects, got {_json_kind(record)}")
            yield _hashed(record, name, validator)
            return
        count = 0
        for value in stream.items(lambda run: _run_of_records(run, max_bytes)):
            location = f"{name} item {value.item}"
            record = value.record if value.record is not None else _json_record(stream, value, location)
            if type(record) is not dict:
                raise ParseError(f"{location}: expected a JSON object, got {_json_kind(record)}")
            count += 1
            yield _hashed(record, location, validator)
    if count == 0:
        raise ParseError(f"{name}: no records (the array is empty)")


def _run_of_records(run: bytes, max_bytes: int) -> list | None:
    """Array elements parsed in one call, when that gives what reading each alone would: none larger than
    max_bytes, none malformed, only objects, no repeated key, no integer past 64 bits. Otherwise None, and
    they are read one by one, which says what is wrong and where."""
    if len(run) > max_bytes or _19_ZEROS in run.translate(_DIGITS_AS_ZERO):  # a regex search took 20x as long
        return None
    text = b"[" + run + b"]"
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if any(type(record) is not dict for record in parsed) or repeated_key(text, parsed) is not None:
        return None
    return parsed


def _json_record(stream: JsonStream, value: JsonValue, location: str):
    """One value of a `.json` file parsed and checked as a JSON Lines line is, its errors placed in the file."""
    raw = value.raw
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            where = stream.where(value.item, stream.position(value.offset + bad.start)[0])
            raise ParseError(bad_utf8(where, bad, value.offset)) from None
        offset = value.offset + len(text[:exc.pos].encode())
        raise ParseError(f"{stream.where(value.item, *stream.position(offset))}: malformed JSON: {exc.msg}") from None
    if type(record) is not dict:
        return record
    if len(raw) - len(raw.translate(None, _DIGITS)) >= 19 and _LONG_DIGITS.search(raw):
        _check_int_range(raw, location)
    duplicate = repeated_key(raw, record)
    if duplicate is not None:
        key, lines = duplicate
        line = stream.position(value.offset)[0] + lines
        raise ParseError(f"{stream.where(value.item, line)}: {repeated_key_reason(key)}")
    return record


class _RowTooLong(Exception):
    """A CSV row whose lines pass the record limit, raised before csv splits it into cells."""


class _BoundedRows:
    """The lines of a CSV as csv.reader pulls them, refused once one row's lines pass `limit` characters.

    Written as JSON a record takes at least a byte per character of its row (a comma becomes at least
    `"key":"",`), so a longer row is over the record limit; csv made a 30 MB row of commas 30 million
    cells, 350 MB of memory, before any check could see it. The reader calls `row_done` after each row.
    """

    def __init__(self, text, limit: int):
        self.text, self.limit, self.used, self.lines = text, limit, 0, 0
        self.row_line = 1  # the line the row being read starts on

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.limit - self.used + 1)
        if not line:
            raise StopIteration
        self.used += len(line)
        self.lines += 1
        if self.used > self.limit:
            raise _RowTooLong
        return line

    def row_done(self) -> None:
        self.used, self.row_line = 0, self.lines + 1


def _iter_csv(path: Path, name: str, validator, max_bytes: int) -> Iterator[ParsedRecord]:
    coercer = CsvCoercer(validator) if validator is not None else None
    with open(path, encoding="utf-8-sig", newline="") as text:
        lines = _BoundedRows(text, max_bytes + 2)  # room for a CRLF after a record of exactly max_bytes
        reader = csv.reader(lines, strict=True)
        rowno = None  # rows are numbered once the header is read
        try:
            header = None
            for row in reader:
                lines.row_done()
                if row:
                    header = row
                    break
            if header is None:
                raise ParseError(f"{name}: file is empty (a CSV needs a header row)")
            header = _csv_header(f"{name} line {reader.line_num}", header)
            rowno = 0
            for cells in reader:
                lines.row_done()
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
                if any("\0" in cell for cell in cells):  # the format check saw only the file's head
                    raise ParseError(f"{where}: contains a NUL byte, so it is not text")
                record = dict(zip(header, cells, strict=True))
                if coercer is not None:
                    coercer.validate(record, where)
                # After coercion: a cell read as a number or boolean may be shorter than its text.
                yield _hashed(record, f"{name} row {rowno}", None, where, max_bytes)
        except UnicodeDecodeError:
            raise ParseError(_locate_bad_utf8(path, name)) from None
        except _RowTooLong:
            where = f"{name} line {lines.row_line}" if rowno is None else f"{name} row {rowno + 1} (line {lines.row_line})"
            raise ParseError(f"{where}: {_too_large(max_bytes)}") from None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise ParseError(f"{name} line {reader.line_num}: a cell holds more than the CSV cell limit of"
                                 f" {csv.field_size_limit()} characters; send such records as JSON Lines") from None
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
                return bad_utf8(f"{name} line {lineno}", bad, offset)
            offset += len(line)
    return f"{name}: invalid UTF-8; save the file as UTF-8"


def _iter_parquet(path: Path, name: str, validator, max_bytes: int) -> Iterator[ParsedRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        dictionary_columns = _dictionary_columns(parquet.metadata)
        if dictionary_columns:
            # Read back as dictionaries, not expanded: a footer counts a dictionary page once however many rows
            # repeat it (450 bytes of Parquet repeating one 500 KiB string in 4,096 rows declared 0.5 MB, and
            # expanded to 3 GB of memory before the size check could see it); `_decoded_bytes` counts the
            # expansion, and the rows become Python objects a bounded slice at a time.
            parquet.close()
            parquet = pq.ParquetFile(path, read_dictionary=dictionary_columns)
        meta = parquet.metadata
        group_sizes = [(sum(meta.row_group(g).column(c).total_uncompressed_size for c in range(meta.num_columns)),
                        meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        declared = sum(size for size, _ in group_sizes)
        # Arrow inflates a whole batch at once: rows of 100 KB came to 400 MB and 1.4 GB of memory per batch of
        # 4,096, so a batch holds as many rows as the densest row group declares fit in one slice.
        per_row = max((size // max(rows, 1) for size, rows in group_sizes), default=0)
        batches = parquet.iter_batches(batch_size=max(1, min(_PARQUET_BATCH_ROWS, _PARQUET_SLICE_BYTES // max(per_row, 1))))
        repeated = _repeated_name(parquet.schema_arrow)
    except (pa.ArrowException, OSError) as exc:
        raise ParseError(f"{name}: not a readable Parquet file ({exc})") from None
    if repeated is not None:
        # Read as records, the last of two same-named columns would silently replace the first, as a JSON key
        # given twice would; JSON uploads refuse that, and so does Parquet.
        where, field = repeated
        raise ParseError(f"{name}: {where} '{field}' appears twice; each field of a record may appear only once")
    if declared > PARQUET_EXPANDED_BYTES:
        raise ParseError(f"{name}: the Parquet file expands to {declared} bytes; the limit is {PARQUET_EXPANDED_BYTES}"
                         " (split it into smaller files)")
    rowno = expanded = 0
    with parquet:
        while True:
            try:
                batch = next(batches, None)
                if batch is None:
                    break
                size = _decoded_bytes(batch)
                expanded += size
                if expanded > PARQUET_EXPANDED_BYTES:  # a footer that understated its sizes
                    raise ParseError(f"{name} row {rowno + 1}: the Parquet file expands past the limit of "
                                     f"{PARQUET_EXPANDED_BYTES} bytes (split it into smaller files)")
            except (pa.ArrowException, OSError, KeyError) as exc:
                raise ParseError(f"{name} row {rowno + 1}: corrupt Parquet data ({exc})") from None
            # Rows become Python objects a slice at a time: 4,096 rows of 100 KB were 1.9 GB of memory at once.
            step = max(1, batch.num_rows * _PARQUET_SLICE_BYTES // max(size, 1))
            oversized = _first_row_over(batch, max_bytes)
            for start in range(0, batch.num_rows, step):
                if oversized is not None and oversized < start + step:  # before its text becomes Python strings
                    raise ParseError(f"{name} row {rowno + oversized - start + 1}: {_too_large(max_bytes)}")
                part = batch.slice(start, step)
                try:
                    rows = _dense(part).to_pylist(maps_as_pydicts="strict")
                except (pa.ArrowException, OSError) as exc:
                    raise ParseError(f"{name} row {rowno + 1}: corrupt Parquet data ({exc})") from None
                except _UNREADABLE as exc:
                    raise _unreadable_cell(part, name, rowno + 1, exc) from None
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
                    yield _hashed(record, location, validator, max_bytes=max_bytes)
    if rowno == 0:
        raise ParseError(f"{name}: no records (the table has no rows)")


def _dense(part):
    """A slice (already bounded by its expanded size) with its top-level dictionary columns decoded: Python reads
    plain text columns about half again as fast as dictionary ones."""
    import pyarrow as pa

    if not any(pa.types.is_dictionary(column.type) for column in part.columns):
        return part
    return pa.RecordBatch.from_arrays([column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
                                       for column in part.columns], names=part.schema.names)


def _dictionary_columns(meta) -> list[str]:
    """The paths of the text and bytes columns some row group of the file stores with a dictionary page."""
    found = []
    for c in range(meta.num_columns):
        column = meta.row_group(0).column(c) if meta.num_row_groups else None
        if column is None or column.physical_type != "BYTE_ARRAY":
            continue
        if any(meta.row_group(g).column(c).has_dictionary_page for g in range(meta.num_row_groups)):
            found.append(column.path_in_schema)
    return found


def _repeated_name(schema) -> tuple[str, str] | None:
    """("column", name) for a column name the table repeats, or ("field", path) for a field name a struct
    repeats (as `column.field`, a list's items as `column[]`, a map's values as `column{}`); None if all differ."""
    import pyarrow as pa

    def in_fields(fields, path: str):
        seen = set()
        for field in fields:
            if field.name in seen:
                return ("field", f"{path}.{field.name}") if path else ("column", field.name)
            seen.add(field.name)
        for field in fields:
            found = in_type(field.type, f"{path}.{field.name}" if path else field.name)
            if found is not None:
                return found
        return None

    def in_type(kind, path: str):
        if pa.types.is_struct(kind):
            return in_fields([kind.field(i) for i in range(kind.num_fields)], path)
        if pa.types.is_map(kind):
            return in_type(kind.item_type, f"{path}{{}}")
        if pa.types.is_dictionary(kind):
            return in_type(kind.value_type, path)
        if isinstance(kind, (pa.ListType, pa.LargeListType, pa.FixedSizeListType, pa.ListViewType,
                             pa.LargeListViewType)):
            return in_type(kind.value_type, f"{path}[]")
        return None

    return in_fields(list(schema), "")


def _first_row_over(batch, max_bytes: int) -> int | None:
    """The first row of `batch` whose top-level text cells and list elements alone come to more than `max_bytes`
    bytes of JSON, found from Arrow's lengths before any cell becomes a Python object; None if there is none.
    Nested text is counted once it is Python, before the record is written out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def is_text(kind) -> bool:
        return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)

    total = None
    for column in batch.columns:
        if pa.types.is_dictionary(column.type) and is_text(column.type.value_type):
            lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
        elif is_text(column.type):
            lengths = pc.binary_length(column)
        elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            # a list's elements, nulls and booleans too, take at least two bytes each as JSON ("0,")
            lengths = pc.multiply(pc.cast(pc.list_value_length(column), pa.int64()), 2)
        else:
            continue
        lengths = pc.fill_null(pc.cast(lengths, pa.int64()), 0)
        total = lengths if total is None else pc.add(total, lengths)
    if total is None:
        return None
    over = pc.greater(total, max_bytes)
    return pc.index(over, True).as_py() if pc.any(over).as_py() else None


# What Arrow raises for a cell it stores but Python cannot hold: text that is not UTF-8 (a ValueError), a date
# past the year 9999, a map that repeats a key, or a map keyed by lists or structs (unhashable in Python)
_UNREADABLE = (ValueError, OverflowError, KeyError, TypeError)


def _unreadable_cell(part, name: str, first_row: int, exc: Exception) -> ParseError:
    """The error for rows Arrow stores but Python cannot hold, naming the row and column of the first bad cell."""
    problem = _UNREADABLE
    for column_name, column in zip(part.schema.names, part.columns, strict=True):
        try:
            column.to_pylist(maps_as_pydicts="strict")
            continue
        except problem:
            pass
        for i in range(len(column)):
            try:
                column[i].as_py(maps_as_pydicts="strict")
            except problem as cell_exc:
                return ParseError(f"{name} row {first_row + i}: field '{column_name}': "
                                  f"{_unreadable_reason(cell_exc, column.type)}")
        return ParseError(f"{name} rows {first_row}-{first_row + len(part) - 1}: field '{column_name}': "
                          f"{_unreadable_reason(exc, column.type)}")
    return ParseError(f"{name} rows {first_row}-{first_row + len(part) - 1}: {_unreadable_reason(exc, None)}")


def _unreadable_reason(exc: Exception, kind) -> str:
    import pyarrow as pa

    if kind is not None and pa.types.is_dictionary(kind):  # how it was stored, not how it is read back
        kind = kind.value_type
    if isinstance(exc, UnicodeDecodeError):
        return (f"a {kind} value is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start} of"
                " the value); write the column as UTF-8 text")
    if isinstance(exc, OverflowError):
        # Python dates and times end at the year 9999: a timestamp[ms] of 2**52 or a date32 of 2**31 - 1 has no
        # Python form, so no ISO 8601 one.
        return f"a {kind} value is out of the range that can be read ({exc}); store it as a string or an integer"
    if isinstance(exc, KeyError):  # maps_as_pydicts="strict" refuses a map that repeats a key
        return "a map holds the same key twice; each key of a record may appear only once"
    if isinstance(exc, TypeError):
        return "a map keyed by lists or structs has no JSON form; its keys must be text or numbers"
    return f"a {kind} value cannot be read ({exc})"


def _decoded_bytes(array) -> int:
    """What `array` (a batch, or one column) comes to once every dictionary in it is expanded, as `to_pylist`
    expands it. Arrow's own size counts a dictionary once however many rows repeat its values, and a column
    written with a dictionary type is read back with one: 10 KB of Parquet repeating one 256 KiB string in
    4,096 rows measured 300 KB that way, and became 1 GiB of records."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.RecordBatch):
        return sum(_decoded_bytes(column) for column in array.columns)
    kind = array.type
    if pa.types.is_dictionary(kind):
        values = array.dictionary
        if any(test(values.type) for test in (pa.types.is_binary, pa.types.is_string, pa.types.is_large_binary,
                                                pa.types.is_large_string)):
            repeated = pc.sum(pc.take(pc.cast(pc.binary_length(values), pa.int64()), array.indices)).as_py() or 0
        else:  # fixed-width values, or nested ones counted as the whole dictionary each time: an upper bound
            try:
                each = max(1, values.type.bit_width // 8)
            except ValueError:
                each = _decoded_bytes(values)
            repeated = each * len(array)
        return array.indices.nbytes + repeated
    if pa.types.is_struct(kind):
        return sum(_decoded_bytes(array.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) or \
            pa.types.is_map(kind):
        # each element becomes a slot of a Python list (8 bytes) whatever Arrow stores for it: a list of 20
        # million nulls is 518 bytes of Parquet, no bytes of values, and 160 MB of Python list
        return array.nbytes - array.values.nbytes + _decoded_bytes(array.values) + 8 * len(array.values)
    return array.nbytes


def _json_object(value: dict, location: str, field: str) -> dict:
    """A Parquet map as a JSON object: its keys become text, and a key whose text is not its own (bytes, NaN) or
    that another key's text repeats (1 and "1") is refused rather than silently merged or written as a repr."""
    out = {}
    for key, item in value.items():
        if isinstance(key, (bytes, bytearray, memoryview)) or (isinstance(key, float) and not math.isfinite(key)):
            raise ParseError(f"{location}: field '{field}': a map key {key!r} has no JSON form; use text keys")
        text = key if isinstance(key, str) else key.isoformat() if hasattr(key, "isoformat") else str(key)
        if text in out:
            raise ParseError(f"{location}: field '{field}': the map keys repeat {text!r} once written as text; each "
                             "key of a record may appear only once")
        out[text] = _json_value(item, location, f"{field}.{text}")
    return out


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
        return _json_object(value, location, field)
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
