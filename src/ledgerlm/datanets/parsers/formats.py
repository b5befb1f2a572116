"""Upload file names and formats: safe names, format detection by extension and content."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from ledgerlm.errors import LedgerError

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
LABEL = {
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

BOM = b"\xef\xbb\xbf"
# orjson turns integers beyond 64 bits into floats without a word; a run of 19+ digits is the
# only way such a number can appear, so only those lines pay for a range check. Counting digits
# first is ten times cheaper than the regex search it spares on ordinary lines.
# Bidirectional overrides make a name display as something else ("txt.exe" shown as "exe.txt").
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class ParseError(LedgerError):
    """An uploaded file that cannot be read as its format; the message names the file and where."""

    def __init__(self, message: str, *, field: str | None = "files", status: int | None = None):
        super().__init__(message, field=field, status=status)




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
    label = LABEL[fmt]
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


def bad_utf8(where: str, exc: UnicodeDecodeError, base: int) -> str:
    """The message for invalid UTF-8: where, the byte offset and the offending byte."""
    return (
        f"{where}: invalid UTF-8 at byte offset {base + exc.start}"
        f" (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8"
    )


