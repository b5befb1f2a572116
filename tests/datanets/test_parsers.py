"""Uploads of every supported format parse; every bad upload says which file, where and why."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import tracemalloc
import zipfile
from decimal import Decimal

import fastjsonschema
import jsonschema
import orjson
import pytest

from ledgerlm.datanets.parsers import (
    ParsedRecord,
    ParseError,
    detect_format,
    extract_document,
    iter_records,
    safe_file_name,
)

from .fixtures import make_csv, make_docx, make_jsonl, make_parquet, make_pdf

QA_SCHEMA = {
    "type": "object",
    "required": ["question", "answer"],
    "properties": {
        "question": {"type": "string", "minLength": 1},
        "answer": {"type": "string"},
        "score": {"type": "integer"},
        "weight": {"type": ["number", "null"]},
        "verified": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
fast_validator = fastjsonschema.compile(QA_SCHEMA)
jsonschema_validator = jsonschema.Draft202012Validator(QA_SCHEMA).validate


def records(path, fmt=None, validator=None):
    return list(
        iter_records(
            path, path.name, fmt or detect_format(path.name, path.read_bytes()), validator=validator
        )
    )


def parse_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ParseError) as caught:
        fn(*args, **kwargs)
    assert caught.value.field == "files"
    return caught.value.message


def records_error(path, fmt=None, validator=None) -> str:
    return parse_error(records, path, fmt, validator)


# ---------------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("name", "head", "fmt"),
    [
        ("data.jsonl", b'{"a": 1}', "jsonl"),
        ("DATA.NDJSON", b'{"a": 1}', "jsonl"),
        ("data.json", b"[]", "json"),
        ("table.csv", b"a,b\n", "csv"),
        ("table.parquet", b"PAR1\x15\x04", "parquet"),
        ("notes.txt", b"hello", "text"),
        ("README.md", b"# hi", "markdown"),
        ("paper.pdf", b"%PDF-1.7\n", "pdf"),
        ("letter.docx", b"PK\x03\x04\x14\x00", "docx"),
    ],
)
def test_format_comes_from_the_extension(name, head, fmt):
    assert detect_format(name, head) == fmt


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("paper.pdf", b"just text", "paper.pdf: not a PDF"),
        ("letter.docx", b"%PDF-1.4", "letter.docx: not a DOCX (not a zip archive; password"),
        ("table.parquet", b"a,b\n1,2\n", "table.parquet: not a Parquet file"),
        ("table.csv", b"%PDF-1.4\n", "table.csv: content is a PDF, not CSV"),
        ("data.jsonl", b"\xff\xfe{\x00", "data.jsonl: content is UTF-16 text (save it as UTF-8)"),
        ("notes.txt", b"abc\x00def", "notes.txt: content is binary"),
        ("notes.txt", b"", "notes.txt: file is empty"),
    ],
)
def test_content_that_contradicts_the_extension_is_refused(name, head, expected):
    assert parse_error(detect_format, name, head).startswith(expected)


def test_unknown_extension_lists_supported_formats():
    message = parse_error(detect_format, "sheet.xlsx", b"PK\x03\x04")
    assert message.startswith(
        "sheet.xlsx: file type '.xlsx' is not supported (save the sheet as CSV)"
    )
    for extension in (".jsonl", ".json", ".csv", ".parquet", ".txt", ".md", ".pdf", ".docx"):
        assert extension in message
    assert "without extension" in parse_error(detect_format, "Makefile", b"all:")


# ---------------------------------------------------------------------------------- records


def test_jsonl_records_are_hashed_over_sorted_canonical_bytes(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b'{"question": "2+2?", "answer": "4"}\n\n   \n{"b": [1, {"y": 2, "x": 1}], "a": null}\n'
    )
    first, second = records(path)
    assert first.record == {"question": "2+2?", "answer": "4"}
    assert first.canonical == b'{"answer":"4","question":"2+2?"}'
    assert first.content_hash == hashlib.sha256(first.canonical).hexdigest()
    assert first.location == "data.jsonl line 1"
    assert second.canonical == b'{"a":null,"b":[1,{"x":1,"y":2}]}'
    assert second.location == "data.jsonl line 4"  # blank lines skipped, not renumbered


def test_jsonl_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"a": 2}\r\n')
    assert [r.record for r in records(path)] == [{"a": 1}, {"a": 2}]


def test_same_record_hashes_the_same_in_every_format(tmp_path):
    row = {"question": "Capital of France?", "answer": "Paris", "score": 3, "verified": True}
    (tmp_path / "a.jsonl").write_text(
        '{"verified": true, "score": 3, "answer": "Paris", "question": "Capital of France?"}\n'
    )
    (tmp_path / "b.json").write_bytes(orjson.dumps([row], option=orjson.OPT_INDENT_2))
    make_csv(tmp_path / "c.csv", list(row), [["Capital of France?", "Paris", "3", "true"]])
    make_parquet(tmp_path / "d.parquet", [row])
    hashes = set()
    for name in ("a.jsonl", "b.json", "c.csv", "d.parquet"):
        (parsed,) = records(tmp_path / name, validator=fast_validator)
        assert parsed.record == row, name
        hashes.add(parsed.content_hash)
    assert len(hashes) == 1


def test_json_array_and_single_object(tmp_path):
    array = tmp_path / "many.json"
    array.write_text('[{"a": 1},\n {"a": 2}]')
    assert [(r.record, r.location) for r in records(array)] == [
        ({"a": 1}, "many.json item 1"),
        ({"a": 2}, "many.json item 2"),
    ]
    single = tmp_path / "one.json"
    single.write_text('{\n  "a": 1\n}\n')
    assert [r.record for r in records(single)] == [{"a": 1}]


def test_json_lines_saved_as_json_are_read_line_by_line(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    assert [r.location for r in records(path)] == ["export.json line 1", "export.json line 2"]
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3\n')
    assert records_error(path).startswith("export.json line 3: malformed JSON")


def test_csv_cells_stay_strings_without_a_schema(tmp_path):
    path = make_csv(
        tmp_path / "table.csv",
        ["question", "answer", "score"],
        [["What is\n1+1?", "2", "7"], ["", "", ""], ["3+3?", "6", ""]],
    )
    parsed = records(path)
    assert [r.record for r in parsed] == [
        {"question": "What is\n1+1?", "answer": "2", "score": "7"},
        {"question": "3+3?", "answer": "6", "score": ""},
    ]
    assert [r.location for r in parsed] == ["table.csv row 1", "table.csv row 2"]


@pytest.mark.parametrize(
    "validator", [fast_validator, jsonschema_validator], ids=["fast", "jsonschema"]
)
def test_csv_cells_take_the_types_the_schema_asks_for(tmp_path, validator):
    path = make_csv(
        tmp_path / "table.csv",
        [" question ", "answer", "score", "weight", "verified"],
        [
            ["1+1?", "2", "7", "0.5", "TRUE"],
            ["2+2?", "4", "-3", "", "false"],
            ["3+3?", "6", "", "2", "true"],
        ],
    )
    assert [r.record for r in records(path, validator=validator)] == [
        {"question": "1+1?", "answer": "2", "score": 7, "weight": 0.5, "verified": True},
        {"question": "2+2?", "answer": "4", "score": -3, "weight": None, "verified": False},
        # an empty cell the schema rejects is an absent field
        {"question": "3+3?", "answer": "6", "weight": 2, "verified": True},
    ]


@pytest.mark.parametrize(
    "validator", [fast_validator, jsonschema_validator], ids=["fast", "jsonschema"]
)
def test_csv_cell_that_cannot_take_the_schema_type_is_reported(tmp_path, validator):
    path = make_csv(
        tmp_path / "table.csv",
        ["question", "answer", "score"],
        [["1+1?", "2", "7"], ["2+2?", "4", "seven"]],
    )
    message = records_error(path, validator=validator)
    assert message.startswith("table.csv row 2 (line 3): field 'score': ")
    assert "integer" in message and "seven" in message


@pytest.mark.parametrize(
    "validator", [fast_validator, jsonschema_validator], ids=["fast", "jsonschema"]
)
@pytest.mark.parametrize("digits", [21, 5000])  # 5000: past what int() converts, once a ValueError and a 500
def test_csv_integer_cell_past_64_bits_is_named(tmp_path, validator, digits):
    path = make_csv(tmp_path / "table.csv", ["question", "answer", "score"],
                    [["1+1?", "2", "7"], ["2+2?", "4", "9" * digits]])
    assert records_error(path, validator=validator) == (
        f"table.csv row 2 (line 3): field 'score': integer of {digits} digits is outside the 64-bit range;"
        " write it as a string")


def test_parquet_values_become_json(tmp_path):
    rows = [
        {
            "question": "When?",
            "answer": "then",
            "at": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
            "day": dt.date(2024, 5, 1),
            "price": Decimal("12.50"),
            "tags": ["a", "b"],
            "weight": float("nan"),
            "note": None,
        }
    ]
    (parsed,) = records(make_parquet(tmp_path / "t.parquet", rows))
    assert parsed.record == {
        "question": "When?",
        "answer": "then",
        "at": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "price": 12.5,
        "tags": ["a", "b"],
    }
    assert orjson.loads(parsed.canonical) == parsed.record


def test_parquet_rows_are_numbered_across_batches(tmp_path):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(9000)]
    rows[8500]["answer"] = None
    path = make_parquet(tmp_path / "big.parquet", rows, row_group_size=1000)
    message = records_error(path, validator=fast_validator)
    assert message == "big.parquet row 8501: field 'answer': is required but missing"


# ------------------------------------------------------------------------- schema violations


@pytest.mark.parametrize(
    "validator", [fast_validator, jsonschema_validator], ids=["fast", "jsonschema"]
)
@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('{"question": "q", "answer": 42}', "answer", "string"),
        ('{"question": "q"}', "answer", "required"),
        ('{"question": "q", "answer": "a", "tags": ["x", 3]}', "tags[1]", "string"),
    ],
)
def test_schema_violation_names_file_line_and_field(tmp_path, validator, line, field, words):
    path = tmp_path / "data.jsonl"
    path.write_text('{"question": "fine", "answer": "ok"}\n\n' + line + "\n")
    message = records_error(path, validator=validator)
    assert message.startswith(f"data.jsonl line 3: field '{field}': ")
    assert words in message


def test_validator_errors_of_other_kinds_are_wrapped_with_location(tmp_path):
    def no_spam(record):
        if "spam" in record.get("answer", ""):
            raise ValueError("answer looks like spam")

    path = make_jsonl(tmp_path / "data.jsonl", [{"answer": "fine"}, {"answer": "buy spam"}])
    assert records_error(path, validator=no_spam) == "data.jsonl line 2: answer looks like spam"


def test_schema_defaults_filled_by_the_validator_are_part_of_the_hash(tmp_path):
    validator = fastjsonschema.compile(
        {"type": "object", "properties": {"lang": {"type": "string", "default": "en"}}}
    )
    path = make_jsonl(tmp_path / "data.jsonl", [{"text": "hi"}, {"text": "hi", "lang": "en"}])
    first, second = records(path, validator=validator)
    assert first.record == {"text": "hi", "lang": "en"}
    assert first.content_hash == second.content_hash


# ---------------------------------------------------------------------------- bad record files


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.jsonl", b"", "data.jsonl: file is empty"),
        ("data.jsonl", b"\n \n\n", "data.jsonl: no records (only blank lines)"),
        (
            "data.jsonl",
            b'{"a": 1}\n\n{"a": 2,}\n',
            "data.jsonl line 3: malformed JSON: trailing comma",
        ),
        (
            "data.jsonl",
            b'{"a": 1}\n[1, 2]\n',
            "data.jsonl line 2: expected a JSON object, got an array",
        ),
        (
            "data.jsonl",
            b'{"a": 1}\n"text"\n',
            "data.jsonl line 2: expected a JSON object, got a string",
        ),
        (
            "data.jsonl",
            b'{"a": 1}\n{"b": "caf\xe9"}\n',
            "data.jsonl line 2: invalid UTF-8 at byte offset 19 (byte 0xe9)",
        ),
        (
            "data.jsonl",
            b'{"n": 123456789012345678901234567890}\n',
            "data.jsonl line 1: field 'n': integer 1234567890123456789012345678",
        ),
        (
            "data.jsonl",
            b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}\n",
            "data.jsonl line 1: the record is nested more than 254 levels deep",
        ),
        (
            "data.jsonl",
            b'\xef\xbb\xbf{"a": "\xff"}\n',
            "data.jsonl line 1: invalid UTF-8 at byte offset 10",
        ),
        (
            "data.json",
            b'[{"a": 1}, {"b": [1, 99999999999999999999999]}]',
            "data.json item 2: field 'b[1]': integer 99999999999999999999999 is outside",
        ),
        ("data.json", b"", "data.json: file is empty"),
        ("data.json", b"[]", "data.json: no records (the array is empty)"),
        ("data.json", b'[{"a": 1},\n 5]', "data.json item 2: expected a JSON object, got a number"),
        ("data.json", b'[{"a": 1},\n {"a": }]', "data.json item 2 (line 2 column 8): malformed JSON"),
        (
            "data.json",
            b'"just a string"',
            "data.json: expected an array of JSON objects, got a string",
        ),
        ("data.json", b'[{"a": "\xff"}]', "data.json item 1 (line 1): invalid UTF-8 at byte offset 8"),
        ("table.csv", b"", "table.csv: file is empty (a CSV needs a header row)"),
        ("table.csv", b"a,b\n", "table.csv: no records (only a header row)"),
        (
            "table.csv",
            b"a,b\n1,2\n\n3,4,5\n",
            "table.csv row 2 (line 4): has 3 cells but the header has 2",
        ),
        ("table.csv", b"a,b\n1\n", "table.csv row 1 (line 2): has 1 cell but the header has 2"),
        ("table.csv", b"a,,c\n1,2,3\n", "table.csv line 1: header column 2 has no name"),
        (
            "table.csv",
            b"a,b,a\n1,2,3\n",
            "table.csv line 1: column 'a' appears twice in the header",
        ),
        ("table.csv", b"a,b\n1,2\n3,\xff\n", "table.csv line 3: invalid UTF-8 at byte offset 10"),
        ("table.csv", b'a,b\n1,"2\n', "table.csv line 2: malformed CSV"),
    ],
)
def test_bad_record_file_names_file_and_place(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    fmt = name.rsplit(".", 1)[1]  # no detect_format: empty files must reach the parser
    assert records_error(path, fmt).startswith(expected)


def test_csv_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfquestion,answer\r\n1+1?,2\r\n")
    assert records(path)[0].record == {"question": "1+1?", "answer": "2"}


def test_corrupt_and_empty_parquet(tmp_path):
    good = make_parquet(tmp_path / "good.parquet", [{"a": i} for i in range(100)])
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert records_error(truncated, "parquet").startswith(
        "cut.parquet: not a readable Parquet file"
    )

    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), empty)
    assert records_error(empty, "parquet") == "empty.parquet: no records (the table has no rows)"


def test_parquet_binary_column_is_refused(tmp_path):
    path = make_parquet(tmp_path / "blob.parquet", [{"a": 1, "raw": b"\x00\x01"}])
    assert records_error(path).startswith("blob.parquet row 1: field 'raw': binary values cannot")


def test_documents_are_not_records(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert (
        records_error(path, "text") == "notes.txt: a plain text file holds a document, not records"
    )


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_records_stream_in_flat_memory(tmp_path, monkeypatch, fmt):
    from ledgerlm.datanets.parsers import json_stream

    # reads of 1 MiB and runs of elements parsed at once are a good part of a file this small
    monkeypatch.setattr(json_stream, "CHUNK_BYTES", 1 << 15)
    monkeypatch.setattr(json_stream, "RUN_BYTES", 1 << 12)
    rows = [{"question": f"q{i}", "answer": "a" * 50} for i in range(30_000)]
    path = make_jsonl(tmp_path / "big.jsonl", rows)
    if fmt == "json":
        path = tmp_path / "big.json"
        path.write_bytes(orjson.dumps(rows))
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_records(path, path.name, fmt, validator=fast_validator))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 30_000
    assert peak < path.stat().st_size / 10


# ---------------------------------------------------------------------------------- documents


def test_text_and_markdown_keep_their_text_with_normalised_newlines(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"\xef\xbb\xbfline one\r\nline two\rline three\n")
    doc = extract_document(tmp_path / "notes.txt", "notes.txt", "text")
    assert doc.text == "line one\nline two\nline three\n"
    assert (doc.media_type, doc.pages) == ("text/plain", None)

    markdown = "# Title\n\n* item with **bold**\n\n```\ncode\n```\n"
    (tmp_path / "README.md").write_text(markdown)
    doc = extract_document(tmp_path / "README.md", "README.md", "markdown")
    assert (doc.text, doc.media_type) == (markdown, "text/markdown")


def test_text_is_read_in_chunks_within_the_text_limit(tmp_path, monkeypatch):
    from ledgerlm.datanets.parsers import documents

    text = "caf\u00e9 \u20ac \U0001d11e\nsecond line\n"
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    for chunk in (1, 2, 3, 5):  # reads that cut characters of two, three and four bytes
        monkeypatch.setattr(documents, "_TEXT_CHUNK", chunk)
        assert extract_document(path, "notes.txt", "text").text == text
        bad = tmp_path / "bad.txt"
        bad.write_bytes(b"one\ntwo \xe2\x82\n")
        assert parse_error(extract_document, bad, "bad.txt", "text").startswith(
            "bad.txt line 2: invalid UTF-8 at byte offset 8 (byte 0xe2)")

    monkeypatch.setattr(documents, "_TEXT_CHUNK", 4096)
    limits = documents.DocumentLimits(expanded_bytes=100_000)
    big = tmp_path / "big.md"
    big.write_bytes(b"#" * 100_000)
    assert len(extract_document(big, "big.md", "markdown", limits).text) == 100_000
    big.write_bytes(b"#" * 5_000_000)
    tracemalloc.start()
    try:
        message = parse_error(extract_document, big, "big.md", "markdown", limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message == "big.md: the file holds more than 100000 bytes of text; split it into smaller files"
    assert peak < 1_000_000  # refused while read, not after


def test_pdf_text_and_page_count(tmp_path):
    path = make_pdf(tmp_path / "paper.pdf", ["Attribution (matters)\nsecond line", "Page two"])
    assert detect_format("paper.pdf", path.read_bytes()[:4096]) == "pdf"
    doc = extract_document(path, "paper.pdf", "pdf")
    assert doc.text == "Attribution (matters)\nsecond line\n\nPage two"
    assert (doc.media_type, doc.pages) == ("application/pdf", 2)


def test_hand_built_pdf_is_strictly_valid(tmp_path):
    from pypdf import PdfReader

    reader = PdfReader(make_pdf(tmp_path / "strict.pdf", "Strict"), strict=True)
    assert reader.pages[0].extract_text() == "Strict"


def test_docx_paragraphs_and_tables_in_document_order(tmp_path):
    path = make_docx(
        tmp_path / "letter.docx",
        ["Dear reader,", "Results follow."],
        table=[["model", "score"], ["base", "0.41"]],
    )
    assert detect_format("letter.docx", path.read_bytes()[:4096]) == "docx"
    doc = extract_document(path, "letter.docx", "docx")
    assert doc.text == "Dear reader,\nResults follow.\nmodel\tscore\nbase\t0.41"
    assert doc.media_type.endswith("wordprocessingml.document")


def test_bad_documents_name_the_file_and_the_reason(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes(b"first\nsecond caf\xe9\n")
    (tmp_path / "nul.txt").write_bytes(b"one\ntwo\x00\n")
    make_pdf(tmp_path / "scan.pdf", "")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n" + b"garbage " * 50)
    make_docx(tmp_path / "blank.docx", ["", ""])
    with zipfile.ZipFile(tmp_path / "other.docx", "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    (tmp_path / "cut.docx").write_bytes(make_docx(tmp_path / "x.docx", ["text"]).read_bytes()[:300])

    expected = {
        ("empty.txt", "text"): "empty.txt: file is empty",
        ("blank.md", "markdown"): "blank.md: no extractable text",
        ("latin1.txt", "text"): "latin1.txt line 2: invalid UTF-8 at byte offset 16 (byte 0xe9)",
        ("nul.txt", "text"): "nul.txt line 2: contains a NUL byte",
        ("scan.pdf", "pdf"): "scan.pdf: no extractable text (a scanned PDF needs OCR first)",
        ("broken.pdf", "pdf"): "broken.pdf: unreadable PDF",
        ("blank.docx", "docx"): "blank.docx: no extractable text",
        ("other.docx", "docx"): "other.docx: not a DOCX (the zip archive has no word/document.xml)",
        ("cut.docx", "docx"): "cut.docx: not a DOCX (corrupt zip archive",
        ("x.docx", "csv"): "x.docx: a CSV file holds records, not a document",
    }
    for (name, fmt), start in expected.items():
        assert parse_error(extract_document, tmp_path / name, name, fmt).startswith(start), name


def test_a_docx_of_countless_empty_parts_is_refused_from_its_end_record(tmp_path):
    """zipfile builds one object per member as it opens an archive: 500,000 empty parts took 7 s and 285 MiB."""
    source = make_docx(tmp_path / "plain.docx", ["hello"])
    many = tmp_path / "many.docx"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(many, "w") as padded:
        for item in original.infolist():
            padded.writestr(item.filename, original.read(item))
        for i in range(25_000):  # 1.3 MB of directory
            padded.writestr(f"x/{i}", b"")
    message = parse_error(extract_document, many, "many.docx", "docx")  # read whole before, however many parts
    assert message.startswith("many.docx: the DOCX's zip directory is ") and "the limit is 1048576" in message
    assert extract_document(source, "plain.docx", "docx").text == "hello"


_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_OFFICE = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _package(path, main: str, parts: dict[str, bytes | str], styles: bool = False):
    """A DOCX whose relationships name `main` as its document part, holding `parts` as they are."""
    overrides = f'<Override PartName="/{main}" ContentType="application/vnd.openxmlformats-officedocument.' \
                'wordprocessingml.document.main+xml"/>'
    if styles:
        overrides += ('<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-'
                      'officedocument.wordprocessingml.styles+xml"/>')
    types = ('<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" '
             'ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
             f'ContentType="application/xml"/>{overrides}</Types>')
    rels = f'<Relationships xmlns="{_RELS_NS}"><Relationship Id="rId1" Type="{_OFFICE}/officeDocument" ' \
           f'Target="{main}"/></Relationships>'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", types)
        archive.writestr("_rels/.rels", rels)
        if styles:
            archive.writestr("word/_rels/document.xml.rels", f'<Relationships xmlns="{_RELS_NS}"><Relationship '
                             f'Id="rId1" Type="{_OFFICE}/styles" Target="styles.xml"/></Relationships>')
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def test_a_docx_is_held_to_its_limits_in_every_xml_part_whatever_it_is_named(tmp_path):
    """The limits read only word/document.xml, but python-docx parses the part the relationships name, and the
    styles too: a main part named word/body.bin (word/document.xml a decoy) or a styles part of millions of
    elements passed, a 150 KB file of the first taking 2.2 GiB."""
    from ledgerlm.datanets.parsers import documents

    limits = documents.DocumentLimits(xml_elements=20_000)
    body = f"<w:document {_W}><w:body>" + "<w:p/>" * 30_000 + "</w:body></w:document>"
    decoy = f"<w:document {_W}><w:body><w:p><w:r><w:t>decoy</w:t></w:r></w:p></w:body></w:document>"
    renamed = _package(tmp_path / "renamed.docx", "word/body.bin",
                       {"word/document.xml": decoy, "word/body.bin": body})
    assert parse_error(extract_document, renamed, "renamed.docx", "docx", limits) == (
        "renamed.docx: word/body.bin holds more than 20000 XML elements (split the document into smaller files)")
    hello = f"<w:document {_W}><w:body><w:p><w:r><w:t>hello</w:t></w:r></w:p></w:body></w:document>"
    styled = _package(tmp_path / "styled.docx", "word/document.xml",
                      {"word/document.xml": hello,
                       "word/styles.xml": f"<w:styles {_W}>" + "<a/>" * 30_000 + "</w:styles>"}, styles=True)
    assert parse_error(extract_document, styled, "styled.docx", "docx", limits).startswith(
        "styled.docx: word/styles.xml holds more than 20000 XML elements")
    small = documents.DocumentLimits(expanded_bytes=100_000)
    assert "bytes of XML; the limit is 100000" in parse_error(extract_document, renamed, "renamed.docx", "docx", small)


def test_a_docx_table_cell_claiming_countless_columns_is_read_once(tmp_path):
    """python-docx lists a cell once per grid column its gridSpan claims: a 900-byte file claiming 10**7 columns
    a row took a CPU second a row, past the clock."""
    row = ('<w:tr><w:tc><w:tcPr><w:gridSpan w:val="100000000"/></w:tcPr><w:p><w:r><w:t>cell</w:t></w:r></w:p>'
           '</w:tc><w:tc><w:p><w:r><w:t>next</w:t></w:r></w:p></w:tc></w:tr>')
    body = f"<w:document {_W}><w:body><w:tbl><w:tblGrid><w:gridCol/></w:tblGrid>{row * 50}</w:tbl></w:body></w:document>"
    wide = _package(tmp_path / "wide.docx", "word/document.xml", {"word/document.xml": body})
    started = time.process_time()
    assert extract_document(wide, "wide.docx", "docx").text == "\n".join(["cell\tnext"] * 50)
    assert time.process_time() - started < 5  # it took 50 CPU seconds


def test_password_protected_pdf_is_refused_but_owner_only_lock_is_read(tmp_path):
    from pypdf import PdfWriter

    source = make_pdf(tmp_path / "open.pdf", "Secret plans")
    locked = PdfWriter(clone_from=str(source))
    locked.encrypt("hunter2", algorithm="RC4-128")
    locked.write(str(tmp_path / "locked.pdf"))
    message = parse_error(extract_document, tmp_path / "locked.pdf", "locked.pdf", "pdf")
    assert message == "locked.pdf: the PDF is encrypted with a password; upload an unlocked copy"

    owner_only = PdfWriter(clone_from=str(source))
    owner_only.encrypt("", owner_password="owner", algorithm="RC4-128")
    owner_only.write(str(tmp_path / "restricted.pdf"))
    assert (
        extract_document(tmp_path / "restricted.pdf", "restricted.pdf", "pdf").text
        == "Secret plans"
    )


# --------------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    "name", ["data.jsonl", "données 2024.csv", "a..b.txt", ".hidden.md", "x" * 251 + ".pdf"]
)
def test_plain_file_names_pass_unchanged(name):
    assert safe_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "is empty"),
        ("/etc/passwd", "is an absolute path"),
        ("\\\\server\\share.csv", "is an absolute path"),
        ("C:\\data.csv", "is an absolute path"),
        ("../../etc/passwd", "contains a path separator"),
        ("sub/data.jsonl", "contains a path separator"),
        ("sub\\data.jsonl", "contains a path separator"),
        ("..", "is a directory reference"),
        (".", "is a directory reference"),
        ("data\x00.jsonl", "contains control characters"),
        ("line\nbreak.txt", "contains control characters"),
        ("invoice\u202etxt.exe", "contains control characters"),
        ("x" * 256, "is 256 bytes long; the limit is 255"),
        ("é" * 128 + ".txt", "is 260 bytes long; the limit is 255"),
        ("bad\udcff.txt", "is not valid Unicode"),
    ],
)
def test_unsafe_file_names_are_refused(name, reason):
    message = parse_error(safe_file_name, name)
    assert message.startswith("file name") and reason in message


def test_parsed_record_is_immutable(tmp_path):
    (parsed,) = records(make_jsonl(tmp_path / "d.jsonl", [{"a": 1}]))
    assert isinstance(parsed, ParsedRecord)
    with pytest.raises(AttributeError):
        parsed.content_hash = "0" * 64


def test_a_parquet_bomb_is_refused_before_its_records_are_built(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ledgerlm.datanets.parsers import records

    table = pa.table({"question": ["a" * (1 << 20)] * 8, "answer": ["x"] * 8})  # eight MiB of text
    plain, encoded = tmp_path / "plain.parquet", tmp_path / "encoded.parquet"
    pq.write_table(table, plain, compression="zstd", use_dictionary=False)
    pq.write_table(table, encoded, compression="zstd")  # one dictionary entry: the footer declares one MiB
    assert plain.stat().st_size < 8 * 1024 and encoded.stat().st_size < 8 * 1024
    monkeypatch.setattr(records, "PARQUET_EXPANDED_BYTES", 4 << 20)
    with pytest.raises(ParseError, match=r"^plain.parquet: the Parquet file expands to \d+ bytes; the limit is 4194304"):
        list(iter_records(plain, "plain.parquet", "parquet"))  # from the footer, before any page is inflated
    with pytest.raises(ParseError, match=r"^encoded.parquet row 1: the Parquet file expands past the limit"):
        list(iter_records(encoded, "encoded.parquet", "parquet"))  # from the first batch, before its records
    monkeypatch.setattr(records, "PARQUET_EXPANDED_BYTES", 16 << 20)
    assert len(list(iter_records(encoded, "encoded.parquet", "parquet"))) == 8  # within the limit it reads whole


def test_a_column_read_back_as_a_dictionary_counts_every_row_it_repeats(tmp_path, monkeypatch):
    """Arrow measures a dictionary column by its dictionary; the records repeat the value in every row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ledgerlm.datanets.parsers import records

    rows = 64
    column = pa.array(["a" * (256 << 10)] * rows).dictionary_encode()  # 16 MiB of records, one 256 KiB value
    nested = pa.ListArray.from_arrays(pa.array(range(rows + 1), pa.int32()), column)
    for name, table in [("flat.parquet", pa.table({"question": column})),
                        ("nested.parquet", pa.table({"question": pa.array(["q"] * rows), "tags": nested}))]:
        pq.write_table(table, tmp_path / name, compression="zstd")
        assert (tmp_path / name).stat().st_size < 16 * 1024
        monkeypatch.setattr(records, "PARQUET_EXPANDED_BYTES", 8 << 20)
        with pytest.raises(ParseError, match=rf"^{name} row 1: the Parquet file expands past the limit of 8388608"):
            list(iter_records(tmp_path / name, name, "parquet"))  # before the first record is built
        monkeypatch.setattr(records, "PARQUET_EXPANDED_BYTES", 64 << 20)
        assert len(list(iter_records(tmp_path / name, name, "parquet"))) == rows


def test_a_batch_of_large_rows_becomes_records_a_slice_at_a_time(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "large.parquet"
    pq.write_table(pa.table({"question": [f"{i}" + "a" * (1 << 20) for i in range(64)]}), path, compression="zstd")
    batch_rows = []
    iter_batches = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches",
                        lambda self, batch_size, **kw: (batch_rows.append(batch_size), iter_batches(self, batch_size,
                                                                                                  **kw))[1])
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_records(path, path.name, "parquet"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 64
    assert batch_rows == [15]  # Arrow inflates 16 MiB at a time, as the footer declares 1 MiB a row, not 4,096 rows
    assert peak < 64 << 20  # 48 MiB in slices; the whole batch at once peaked at 96 MiB


def _form_bomb(path, draws: int, operators: int):
    """A PDF of a few KB whose one page draws a form of `operators` text operators `draws` times."""
    import zlib

    form = zlib.compress(b"BT /F1 12 Tf 10 10 Td (a) Tj ET\n" * operators, 9)
    content = zlib.compress(b"/X1 Do\n" * draws, 9)
    font = b"/Font << /F1 5 0 R >>"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << " + font
               + b" /XObject << /X1 6 0 R >> >> /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << " + font
               + b" >> /Length %d /Filter /FlateDecode >>\nstream\n" % len(form) + form + b"\nendstream"]
    path.write_bytes(_pdf_of(objects))
    return path


def _pdf_of(objects: list[bytes]) -> bytes:
    """A PDF file of `objects` (numbered from 1, the first the catalog) with its cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_page_that_draws_a_form_over_and_over_is_stopped_at_the_time_limit(tmp_path):
    import time

    from ledgerlm.datanets.parsers import documents

    path = _form_bomb(tmp_path / "bomb.pdf", draws=40, operators=20_000)
    assert path.stat().st_size < 4000
    limits = documents.DocumentLimits(seconds=1.0)
    started = time.monotonic()
    message = parse_error(extract_document, path, "bomb.pdf", "pdf", limits)
    assert "took longer than the limit of 1 s" in message and time.monotonic() - started < 4


def test_a_nul_byte_past_the_head_of_a_csv_is_refused_with_its_row(tmp_path):
    path = tmp_path / "late.csv"
    rows = "".join(f"question number {i}?,answer {i}\n" for i in range(400))
    path.write_bytes(("question,answer\n" + rows).encode() + b"nul\x00here?,x\n")
    assert parse_error(records, path, "csv") == "late.csv row 401 (line 402): contains a NUL byte, so it is not text"


def test_a_csv_cell_past_the_cell_limit_is_named_as_such(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_bytes(b"question,answer\nq," + b"a" * 200_000 + b"\n")
    assert parse_error(records, path, "csv") == (
        "wide.csv line 2: a cell holds more than the CSV cell limit of 131072 characters; send such records as"
        " JSON Lines")


@pytest.mark.parametrize("row", [b",,,", b"a,,,", b'"x\n",,,'])
def test_a_csv_row_past_the_record_limit_is_refused_before_it_becomes_cells(tmp_path, row):
    # 9 MB of commas was 9 million cells (8 bytes each) before the row's width was checked, and a row
    # of nothing but commas was skipped as empty after it had taken that memory
    path = tmp_path / "commas.csv"
    path.write_bytes(b"question,answer\nq,a\n" + row * 3_000_000 + b"\n")
    tracemalloc.start()
    try:
        message = parse_error(lambda: list(iter_records(path, path.name, "csv", max_record_bytes=1_000_000)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert message == ("commas.csv row 2 (line 3): the record is larger than the limit of 1000000 bytes for one record"
                       " (split it into smaller records)")
    assert peak < 16_000_000  # what a row within the limit of 1 MB can take as cells, not what the file holds


def test_blank_json_lines_are_skipped_without_parsing_them(tmp_path, monkeypatch):
    # each blank line raised and caught a parse error: 20 MB of newlines held the node for 44 s
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n\r\n" * 1000 + b'{"question": "q", "answer": "a"}\n' + b"\n" * 1000)
    calls = []
    real = orjson.loads
    monkeypatch.setattr(orjson, "loads", lambda data: calls.append(data) or real(data))
    assert [r.location for r in records(path)] == ["blank.jsonl line 2001"]
    assert len(calls) == 1


def _pdf_mapping_a_to(unicode_hex: str, text: bytes = b"AAAA") -> bytes:
    """A one-page PDF whose font maps the character code of "A" to the UTF-16 `unicode_hex` (its ToUnicode map)."""
    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /X def "
            b"1 begincodespacerange <00> <FF> endcodespacerange 1 beginbfchar <41> <" + unicode_hex.encode()
            + b"> endbfchar endcmap CMapName currentdict /CMap defineresource pop end end")
    content = b"BT /F1 24 Tf 72 700 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
    ]
    return _pdf_of(objects)


@pytest.mark.parametrize(("mapped", "says"), [("D800", "surrogate pair (U+D800)"), ("0000", "NUL character")])
def test_a_pdf_whose_text_no_text_store_holds_is_refused_naming_the_file(tmp_path, mapped, says):
    """A font's character map may decode to half a surrogate pair (no UTF-8 holds it: the upload answered 500) or
    to NUL (PostgreSQL's text refuses it)."""
    path = tmp_path / "paper.pdf"
    path.write_bytes(_pdf_mapping_a_to(mapped))
    with pytest.raises(ParseError, match=f"paper.pdf: its text holds .*{says.split('(')[0].strip()}") as refused:
        extract_document(path, "paper.pdf", "pdf")
    assert says.split(" (")[-1].rstrip(")") in str(refused.value)
    path.write_bytes(_pdf_mapping_a_to("0042"))  # a PDF whose text is plain letters still reads
    assert extract_document(path, "paper.pdf", "pdf").text.strip() == "BBBB"


def test_a_record_with_more_fields_than_an_export_has_columns_is_refused(tmp_path):
    from ledgerlm.datanets.parsers.records import MAX_RECORD_FIELDS

    path = tmp_path / "wide.jsonl"
    wide = {f"field_{i}": i for i in range(MAX_RECORD_FIELDS + 1)}
    nested = {"outer": {f"f{i}": [{"x": 1}] for i in range(MAX_RECORD_FIELDS // 2 + 1)}}
    path.write_bytes(orjson.dumps({"a": 1}) + b"\n" + orjson.dumps(wide) + b"\n" + orjson.dumps(nested) + b"\n")
    found = iter_records(path, "wide.jsonl", "jsonl")
    assert next(found).record == {"a": 1}
    with pytest.raises(ParseError, match="wide.jsonl line 2: the record has more than 4,096 fields"):
        next(found)
    path.write_bytes(orjson.dumps(nested) + b"\n")
    with pytest.raises(ParseError, match="line 1: the record has more than 4,096 fields"):
        list(iter_records(path, "wide.jsonl", "jsonl"))
