"""Builders of small upload files (PDF, DOCX, Parquet, JSONL, CSV) for Datanet tests."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson


def make_pdf(path: Path, text: str | Sequence[str]) -> Path:
    """Write a valid PDF with one page per string (a str is one page); lines split on "\\n".

    Built by hand (catalog, page tree, Helvetica, one content stream per page, exact xref
    offsets) so tests need no PDF-writing library. Text must be encodable as cp1252; an empty
    string gives a page with no text.
    """
    pages = [text] if isinstance(text, str) else list(text)
    font_id = 3
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        font_id: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"
        b" /Encoding /WinAnsiEncoding >>",
    }
    kids = []
    for i, page_text in enumerate(pages):
        page_id, content_id = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page_id} 0 R".encode())
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            f" /Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >>"
        ).encode()
        stream = _content_stream(page_text)
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(pages))

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    count = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for number in range(1, count):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref_at)
    Path(path).write_bytes(bytes(out))
    return Path(path)


def _content_stream(text: str) -> bytes:
    if not text:
        return b""
    shows = []
    for line in text.split("\n"):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        shows.append(b"(" + escaped.encode("cp1252") + b") Tj")
    # T* moves to the next line (leading set by TL) between lines, never after the last one.
    return b"BT /F1 12 Tf 14 TL 72 720 Td\n" + b"\nT* ".join(shows) + b"\nET"


def make_docx(
    path: Path,
    paragraphs: Iterable[str],
    *,
    table: Sequence[Sequence[str]] | None = None,
) -> Path:
    """Write a DOCX with the given paragraphs, then (optionally) a table of the given rows."""
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    document.save(str(path))
    return Path(path)


def make_parquet(path: Path, rows: list[dict], *, row_group_size: int | None = None) -> Path:
    """Write rows (dicts with the same keys) as a Parquet table, types inferred by pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return Path(path)


def make_jsonl(path: Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line."""
    with open(path, "wb") as out:
        for record in records:
            out.write(orjson.dumps(record) + b"\n")
    return Path(path)


def make_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write a CSV with a header row."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)
