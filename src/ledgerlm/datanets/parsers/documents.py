"""The plain text of a text, Markdown, PDF or DOCX upload."""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ledgerlm.datanets.parsers.formats import BOM, LABEL, RECORD_FORMATS, ParseError, bad_utf8

_MEDIA_TYPE = {
    "text": "text/plain",
    "markdown": "text/markdown",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
# pypdf logs each repair it tries on a damaged file ("EOF marker not found") to stderr; the one-line
# ParseError is what the uploader should read, so those records stop here.
logging.getLogger("pypdf").addHandler(logging.NullHandler())
# A DOCX is a zip; a 50 MB upload could otherwise expand to many GB inside python-docx.
MAX_DOCX_EXPANDED_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class ParsedDocument:
    """The plain text of one uploaded document, newlines normalised to "\\n"."""

    text: str
    media_type: str
    pages: int | None



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
        raise ParseError(f"{name}: a {LABEL[fmt]} file holds records, not a document")
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
    bom = len(BOM) if data.startswith(BOM) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bom + bad.start) + 1
        raise ParseError(bad_utf8(f"{name} line {line}", bad, bom)) from None
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
