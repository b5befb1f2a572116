"""Schema violations as messages naming where and which field; CSV cells read as the schema's types."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import fastjsonschema
import orjson

from ledgerlm.datanets.parsers.formats import ParseError
from ledgerlm.errors import LedgerError

_NOT_COERCIBLE = object()


class CsvCoercer:
    """Reads CSV cells as the JSON types the schema asks for, learning per column.

    A column coerced once is coerced up front in later rows, so a numeric column costs one
    failed validation per file rather than one per row.
    """

    def __init__(self, validator: Callable[[dict], object]):
        self.validator = validator
        self.column_types: dict[str, tuple[str, ...]] = {}

    def validate(self, record: dict, where: str) -> None:
        try:
            self._validate(record, where)
        except _IntegerOutOfRange as exc:
            raise ParseError(f"{where}: field '{exc.column}': integer of {exc.digits} digits is outside the 64-bit"
                             " range; write it as a string") from None

    def _validate(self, record: dict, where: str) -> None:
        for column, types in self.column_types.items():
            cell = record.get(column)
            if type(cell) is str:
                self._set(record, column, _coerce_cell(cell, types, column))
        tried = set()
        while True:
            try:
                self.validator(record)
                return
            except Exception as exc:  # noqa: BLE001 - sorted into schema errors or re-raised below
                column_types = _top_level_type_violation(exc, record)
                if column_types is None or column_types[0] in tried:
                    raise_violation(exc, where)
                column, types = column_types
                value = _coerce_cell(record[column], types, column)
                if value is _NOT_COERCIBLE:
                    raise_violation(exc, where)
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
# 2**64 has 20 digits; a longer integer cannot be stored, and past 4,300 digits int() refuses to convert it.
_MAX_INTEGER_DIGITS = 20


class _IntegerOutOfRange(Exception):
    def __init__(self, column: str, digits: int):
        self.column, self.digits = column, digits


def _coerce_cell(cell: str, types: tuple[str, ...], column: str):
    text = cell.strip()
    if not text:
        return None if "null" in types else _ABSENT
    lowered = text.lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if "null" in types and lowered == "null":
        return None
    if ("integer" in types or "number" in types) and _INTEGER_CELL.fullmatch(text):
        digits = len(text.lstrip("+-"))
        if digits > _MAX_INTEGER_DIGITS:
            raise _IntegerOutOfRange(column, digits)
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


def validate_record(validator, record: dict, where: str) -> None:
    try:
        validator(record)
    except Exception as exc:  # noqa: BLE001 - sorted into schema errors or re-raised below
        raise_violation(exc, where)


# a validator's message quotes what it refused (an extra key of 8 MB, 200,000 of them): the error keeps its start
MAX_REASON_CHARS = 500


def _short(reason: str) -> str:
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return f"{reason[:MAX_REASON_CHARS]}... ({len(reason) - MAX_REASON_CHARS} more characters)"


def raise_violation(exc: Exception, where: str):
    """Re-raise a validator's exception as ParseError naming where and which field; others as is."""
    if isinstance(exc, fastjsonschema.JsonSchemaValueException):
        raise ParseError(f"{where}: {_short(_fastjsonschema_reason(exc))}") from exc
    validation_error = _jsonschema_error_type()
    if validation_error is not None and isinstance(exc, validation_error):
        raise ParseError(f"{where}: {_short(_jsonschema_reason(exc))}") from exc
    if isinstance(exc, LedgerError):
        raise ParseError(f"{where}: {_short(exc.message)}") from exc
    if isinstance(exc, ValueError):
        raise ParseError(f"{where}: {_short(str(exc))}") from exc
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
