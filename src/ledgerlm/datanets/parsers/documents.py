"""The plain text of a text, Markdown, PDF or DOCX upload."""

from __future__ import annotations

import logging
import time
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
_XML_CHUNK = 1 << 16
_TEXT_CHUNK = 1 << 20


@dataclass(frozen=True)
class DocumentLimits:
    """What reading one document may cost, so that a small upload cannot be a bomb.

    A DOCX is a zip of XML: a 200 KB file can expand to 50 MiB that python-docx then turns into
    objects for a minute and a gigabyte. Sizes are checked from the zip directory before
    anything is inflated, depth while streaming the XML once, time between blocks and while a PDF
    page's content is drawn.
    """

    expanded_bytes: int = 16 * 1024 * 1024  # XML inside a DOCX; text out of a PDF, a text or Markdown file
    archive_bytes: int = 128 * 1024 * 1024  # every part of a DOCX, images included
    directory_bytes: int = 1024 * 1024  # a DOCX's zip directory: a few hundred parts take tens of KB
    xml_depth: int = 256
    # elements in a DOCX's document.xml: python-docx holds each as objects, and 25 KB of zip inflating to 16 MiB
    # of empty paragraphs took 660 MB and 20 s; a several-hundred-page document with tables has about 100,000
    xml_elements: int = 500_000
    pages: int = 5000
    seconds: float = 20.0


DEFAULT_LIMITS = DocumentLimits()


@dataclass(frozen=True)
class ParsedDocument:
    """The plain text of one uploaded document, newlines normalised to "\\n"."""

    text: str
    media_type: str
    pages: int | None



def extract_document(path: Path, name: str, fmt: str, limits: DocumentLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """The plain text of a text, Markdown (kept as written), PDF or DOCX upload, within `limits`."""
    path = Path(path)
    pages = None
    deadline = time.monotonic() + limits.seconds
    if fmt in ("text", "markdown"):
        text = _read_text(path, name, limits)
    elif fmt == "pdf":
        text, pages = _pdf_text(path, name, limits, deadline)
    elif fmt == "docx":
        text = _docx_text(path, name, limits, deadline)
    elif fmt in RECORD_FORMATS:
        raise ParseError(f"{name}: a {LABEL[fmt]} file holds records, not a document")
    else:
        raise ParseError(f"{name}: unknown format '{fmt}'")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if fmt in ("pdf", "docx"):
        _check_extracted(text, name)
    if not text.strip():
        hint = " (a scanned PDF needs OCR first)" if fmt == "pdf" else ""
        raise ParseError(f"{name}: no extractable text{hint}")
    return ParsedDocument(text=text, media_type=_MEDIA_TYPE[fmt], pages=pages)


def _check_extracted(text: str, name: str) -> None:
    """Refuse text a PDF or DOCX decoded to that no text store holds: a NUL (PostgreSQL's text refuses it) or half of
    a UTF-16 surrogate pair (a font's character map may name U+D800, which no UTF-8 encodes)."""
    if "\x00" in text:
        raise ParseError(f"{name}: its text holds a NUL character at character {text.index(chr(0)):,}, so it is "
                         "not text; export it again or upload its text as a .txt file")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as bad:
        raise ParseError(f"{name}: its text holds half of a UTF-16 surrogate pair (U+{ord(text[bad.start]):04X}) at "
                         f"character {bad.start:,}, which is no character; export it again or upload its text as a "
                         ".txt file") from None


def _read_text(path: Path, name: str, limits: DocumentLimits) -> str:
    """The text of a UTF-8 file, read a chunk at a time and refused once it passes the text limit."""
    parts: list[str] = []
    carry = b""  # the start of a character the last read cut in two
    with open(path, "rb") as file:
        if file.read(len(BOM)) != BOM:
            file.seek(0)
        start = offset = file.tell()  # offset: of `chunk` in the file
        lines = 0  # line breaks before `chunk`
        while True:
            data = file.read(_TEXT_CHUNK)
            chunk, carry = carry + data, b""
            if offset + len(chunk) - start > limits.expanded_bytes:
                raise ParseError(f"{name}: the file holds more than {limits.expanded_bytes} bytes of text;"
                                 " split it into smaller files")
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as bad:
                if not data or bad.reason != "unexpected end of data":
                    line = lines + chunk.count(b"\n", 0, bad.start) + 1
                    raise ParseError(bad_utf8(f"{name} line {line}", bad, offset)) from None
                chunk, carry = chunk[:bad.start], chunk[bad.start:]
                text = chunk.decode("utf-8")
            if "\x00" in text:
                line = lines + text.count("\n", 0, text.index("\x00")) + 1
                raise ParseError(f"{name} line {line}: contains a NUL byte, so it is not text")
            parts.append(text)
            offset += len(chunk)
            lines += chunk.count(b"\n")
            if not data:
                break
    if offset == 0:
        raise ParseError(f"{name}: file is empty")
    return "".join(parts)


def _out_of_time(name: str, limits: DocumentLimits, deadline: float) -> None:
    if time.monotonic() > deadline:
        raise ParseError(
            f"{name}: reading the document took longer than the limit of {limits.seconds:g} s;"
            " split it into smaller files"
        )


def _pdf_text(path: Path, name: str, limits: DocumentLimits, deadline: float) -> tuple[str, int]:
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
        if len(reader.pages) > limits.pages:
            raise ParseError(f"{name}: the PDF has {len(reader.pages)} pages; the limit is {limits.pages}")
        texts, size = [], 0
        operators = 0

        def watch(*_) -> None:  # one page of a few KB can draw a form thousands of times: the clock runs inside it
            nonlocal operators
            operators += 1
            if operators % 4096 == 0 and time.monotonic() > deadline:
                raise _OutOfTime  # pypdf skips a form whose drawing raises an Exception, and draws the next

        for page in reader.pages:
            _out_of_time(name, limits, deadline)
            texts.append(page.extract_text(visitor_operand_before=watch) or "")
            size += len(texts[-1])
            if size > limits.expanded_bytes:
                raise ParseError(
                    f"{name}: the PDF holds more than {limits.expanded_bytes} characters of text;"
                    " split it into smaller files"
                )
    except ParseError:
        raise
    except _OutOfTime:
        _out_of_time(name, limits, deadline)
    except Exception as exc:  # noqa: BLE001 - see above
        raise ParseError(f"{name}: unreadable PDF ({type(exc).__name__}: {exc})") from None
    return "\n\n".join(text.strip("\n") for text in texts), len(texts)


class _OutOfTime(BaseException):
    """Raised inside pypdf's drawing of a page, past the deadline: no `except Exception` there stops it."""


def _docx_text(path: Path, name: str, limits: DocumentLimits, deadline: float) -> str:
    directory = _zip_directory_bytes(path)
    if directory > limits.directory_bytes:
        raise ParseError(f"{name}: the DOCX's zip directory is {directory} bytes; the limit is {limits.directory_bytes}"
                         " (a document does not have that many parts)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseError(f"{name}: not a DOCX (corrupt zip archive: {exc})") from None
    if "word/document.xml" not in {member.filename for member in members}:
        raise ParseError(f"{name}: not a DOCX (the zip archive has no word/document.xml)")
    # zipfile never inflates a member past the size its directory entry declares, so these sums
    # bound what python-docx can be made to hold.
    expanded = sum(member.file_size for member in members)
    if expanded > limits.archive_bytes:
        raise ParseError(f"{name}: the DOCX expands to {expanded} bytes; the limit is {limits.archive_bytes}")
    # python-docx parses every part the relationships reach by its content type, not its name: a main document
    # named word/body.bin (with word/document.xml a decoy) escaped both the XML size and the element limit
    with zipfile.ZipFile(path) as archive:
        xml_members = [m for m in members if not m.is_dir() and _looks_like_xml(archive, m)]
    xml = sum(m.file_size for m in xml_members)
    if xml > limits.expanded_bytes:
        raise ParseError(
            f"{name}: the DOCX expands to {xml} bytes of XML; the limit is {limits.expanded_bytes}"
            " (split the document)"
        )
    elements = [0]  # one element budget over every XML part: styles.xml is parsed whole at open too
    with zipfile.ZipFile(path) as archive:
        for member in xml_members:
            _check_xml(archive, member.filename, name, limits, deadline, elements)

    import docx
    from docx.table import Table

    # As with PDF, a hostile DOCX can break python-docx in many ways; all mean "unreadable".
    try:
        document = docx.Document(str(path))
        blocks = []
        for count, block in enumerate(document.iter_inner_content()):
            if count % 256 == 0:
                _out_of_time(name, limits, deadline)
            if isinstance(block, Table):
                blocks.extend(_table_lines(block, name, limits, deadline))
            else:
                blocks.append(block.text)
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above
        raise ParseError(f"{name}: unreadable DOCX ({type(exc).__name__}: {exc})") from None
    return "\n".join(blocks)


_READABLE_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _looks_like_xml(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bool:
    """Whether a part starts as XML does (after an optional BOM and blanks), whatever its name; a part zipfile cannot
    read (another compression method, encrypted, damaged) is none, and the DOCX reader refuses it on its own."""
    if member.compress_type not in _READABLE_COMPRESSION or member.flag_bits & 0x1:  # bit 0: encrypted
        return False
    try:
        with archive.open(member) as part:
            head = part.read(64)
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def _zip_directory_bytes(path: Path) -> int:
    """The size of a zip's central directory as its end record declares it, which is what zipfile reads and turns
    into one object per member: a 46 MB DOCX of 500,000 empty members took 7 s and 285 MiB only to open.
    0 when there is no end record (zipfile then says what is wrong)."""
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        file.seek(max(0, size - (1 << 16) - 22))  # the end record, after at most a 64 KiB comment
        tail = file.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + 22:
        return 0
    directory = int.from_bytes(tail[end + 12:end + 16], "little")
    # zipfile believes a zip64 end record (56 bytes, then a 20-byte locator, just before the end record) over it
    zip64 = end - 20 - 56
    if zip64 >= 0 and tail[end - 20:end - 16] == b"PK\x06\x07" and tail[zip64:zip64 + 4] == b"PK\x06\x06":
        directory = max(directory, int.from_bytes(tail[zip64 + 40:zip64 + 48], "little"))
    return directory


def _table_lines(table, name: str, limits: DocumentLimits, deadline: float) -> list[str]:
    """One line per row, one text per w:tc: row.cells repeats a cell once per grid column its w:gridSpan claims
    (a 900-byte file claiming 10**7 columns a row took a second a row, past the clock), so the row's w:tc elements
    are read directly; a vertically merged continuation (vMerge="continue") holds no text of its own."""
    from docx.table import _Cell

    lines = []
    for count, tr in enumerate(table._tbl.tr_lst):
        if count % 64 == 0:
            _out_of_time(name, limits, deadline)
        lines.append("\t".join(_Cell(tc, table).text for tc in tr.tc_lst if tc.vMerge != "continue"))
    return lines


def _check_xml(archive: zipfile.ZipFile, member: str, name: str, limits: DocumentLimits, deadline: float,
               counted: list[int] | None = None) -> None:
    """Stream one XML part once: refuse a DOCTYPE (entity tricks), nesting past the depth limit, more elements than
    the element limit, slowness."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
    counted = [0] if counted is None else counted
    depth = 0

    def start(_tag, _attrs):
        nonlocal depth
        depth += 1
        counted[0] += 1
        if depth > limits.xml_depth:
            raise ParseError(f"{name}: {member} nests elements deeper than {limits.xml_depth} levels")
        if counted[0] > limits.xml_elements:
            raise ParseError(f"{name}: {member} holds more than {limits.xml_elements} XML elements (split the "
                             "document into smaller files)")

    def end(_tag):
        nonlocal depth
        depth -= 1

    def doctype(*_args):
        raise ParseError(f"{name}: {member} declares a DOCTYPE, which a DOCX never does")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = doctype
    try:
        with archive.open(member) as xml:
            while chunk := xml.read(_XML_CHUNK):
                _out_of_time(name, limits, deadline)
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise ParseError(f"{name}: {member} is not well-formed XML ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ParseError(f"{name}: not a DOCX (corrupt zip archive: {exc})") from None
