"""Parsing of uploaded contribution files into hashed records or plain text, errors saying where."""

from ledgerlm.datanets.parsers.documents import ParsedDocument, extract_document
from ledgerlm.datanets.parsers.formats import (
    DOCUMENT_FORMATS,
    RECORD_FORMATS,
    ParseError,
    detect_format,
    safe_file_name,
)
from ledgerlm.datanets.parsers.records import ParsedRecord, iter_records

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
