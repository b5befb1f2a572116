"""JSON-array uploads read an element at a time: memory bounded, limits applied while reading, failures store nothing."""

import hashlib
import tracemalloc

import orjson
import pytest

from ledgerlm.datanets import FileEntry, IncomingFile, manifest_hash
from ledgerlm.datanets.parsers import ParseError, iter_records, json_stream, records
from ledgerlm.identity import sign_action
from ledgerlm.node import Node

from .test_bad_input import assert_error, stored, upload


def _qa(i: int, answer: str = "a") -> dict:
    return {"question": f"question {i}", "answer": f"{answer} {i}"}


def _array(rows, *, indent: bool = True) -> bytes:
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2 if indent else 0)


def test_a_large_array_is_stored_in_memory_far_below_its_size(home, qa, bob, tmp_path, monkeypatch):
    """Read whole, a 62 MB array took 1.3 GiB before any limit applied; a 20 MB one now stays within a few MB
    (the reads of the staged file and of the parser, a MiB each, and the rows awaiting their insert)."""
    from ledgerlm.datanets import ingest

    monkeypatch.setattr(ingest, "CHUNK", 200)  # rows waiting for their insert are not what is measured here
    rows = [_qa(i, "a" * 2000) for i in range(10_000)]
    path = tmp_path / "big.json"
    path.write_bytes(_array(rows, indent=False))  # one line, as most tools write it
    size = path.stat().st_size
    assert size > 20_000_000
    entries = [FileEntry(name="big.json", sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=size)]
    node = Node.open(home)
    try:
        signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                             domain=node.domain)
        with open(path, "rb") as body:
            tracemalloc.start()
            try:
                receipt = node.datanets.contribute("qa", signed, [IncomingFile("big.json", body)])
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    finally:
        node.close()
    assert receipt.contribution_count == len(rows)
    assert peak < size / 3, f"peak {peak} bytes for a {size}-byte array"


def test_an_element_over_the_record_limit_is_refused_by_its_index(http, home, qa, bob, monkeypatch):
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 1000)
    before = stored(home)
    rows = [_qa(1), _qa(2), _qa(3), _qa(4, "a" * 5000), _qa(5)]
    response, _ = upload(http, "qa", bob, [("big.json", _array(rows))])
    assert_error(response, 400, "big.json item 4 (line 14 column 3)", "larger than the limit of 1000 bytes")
    # the same limit, the same shape, for a JSON Lines line and for a single top-level object
    response, _ = upload(http, "qa", bob, [("big.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rows))])
    assert_error(response, 400, "big.jsonl line 4", "larger than the limit of 1000 bytes")
    response, _ = upload(http, "qa", bob, [("one.json", orjson.dumps(_qa(1, "a" * 5000)))])
    assert_error(response, 400, "one.json line 1 column 1", "larger than the limit of 1000 bytes")
    assert stored(home) == before
    response, _ = upload(http, "qa", bob, [("fine.json", _array(rows[:3] + rows[4:]))])
    assert response.status_code == 201, response.text


def test_an_oversize_element_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(json_stream, "CHUNK_BYTES", 4096)
    path = tmp_path / "huge.json"
    path.write_bytes(_array([_qa(1), {"question": "q", "answer": "a" * 5_000_000}]))
    tracemalloc.start()
    try:
        with pytest.raises(ParseError) as refused:
            list(iter_records(path, path.name, "json", max_record_bytes=10_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.message.startswith("huge.json item 2 (line 6 column 3): the record is larger than the limit")
    assert peak < 100_000


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        (b'  {"question": "q", "answer": },\n', ["bad.json item 4001 (line 16002 column 31)", "malformed JSON"]),
        (b'  {"question": "q", "answer": "a"}\n', ["bad.json line 16003 column 3", "expected ',' or ']' after item 4001"]),
        (b'  {"question": "q", "answer": "\xff"},\n', ["bad.json item 4001 (line 16002)", "invalid UTF-8 at byte offset"]),
    ],
)
def test_malformed_json_in_the_middle_is_refused_with_its_place_and_stores_nothing(
        http, home, qa, bob, monkeypatch, broken, words):
    """Two batches of 2,000 rows are inserted before the error is read; the upload still stores nothing."""
    monkeypatch.setattr(json_stream, "CHUNK_BYTES", 4096)  # elements cut across many reads
    good = _array([_qa(i) for i in range(4000)])
    body = good[:-2] + b",\n" + broken + b"  " + orjson.dumps(_qa(9999)) + b"\n]"
    before = stored(home)
    response, _ = upload(http, "qa", bob, [("bad.json", body)])
    assert_error(response, 400, *words)
    assert stored(home) == before
    fixed = good[:-2] + b",\n  " + orjson.dumps(_qa(9999)) + b"\n]"
    response, _ = upload(http, "qa", bob, [("bad.json", fixed)])
    assert response.status_code == 201, response.text
    assert response.json()["contribution_count"] == 4001


def test_elements_cut_across_reads_are_the_records_read_whole(tmp_path, monkeypatch):
    rows = [
        {"question": 'brackets "]}{[" and \\ escapes', "answer": "caf\u00e9 \u20ac \U0001d11e", "n": [1, {"x": []}]},
        {"question": "", "answer": "x" * 300, "tags": {"a": [True, None, 1.5e-3]}},
        {"question": "\\", "answer": '"'},
    ]
    path = tmp_path / "cuts.json"
    path.write_bytes(b"\xef\xbb\xbf" + _array(rows * 20))
    for chunk in (1, 2, 3, 5, 64, 1 << 20):
        for run in (8, 200, 1 << 16):  # runs parsed in one call, cut in every place
            monkeypatch.setattr(json_stream, "CHUNK_BYTES", chunk)
            monkeypatch.setattr(json_stream, "RUN_BYTES", run)
            assert [r.record for r in iter_records(path, path.name, "json")] == rows * 20, (chunk, run)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"a": 1} {"a": 2}]', "data.json line 1 column 11: malformed JSON: expected ',' or ']' after item 1"),
        (b'[{"a": 1},\n]', "data.json line 2 column 1: malformed JSON: trailing comma after item 1"),
        (b'[{"a": 1},\n {"a": 2}', "data.json line 2 column 10: malformed JSON: the file ends inside the array"),
        (b'[{"a": 1}] []', "data.json line 1 column 12: malformed JSON: content after the array's closing ']'"),
        (b'[{"a": 1}, , {"a": 2}]', "data.json line 1 column 12: malformed JSON: expected a JSON value for item 2"),
        (b'[{"a": 1}, {"a": "unclosed}]', "data.json item 2 (line 1 column 29): malformed JSON"),
        (b'[{"a": 1,\n  "b": 2, "a": 3}]', "data.json item 1 (line 2): key 'a' appears twice"),
    ],
)
def test_a_broken_array_names_the_place(tmp_path, body, expected):
    path = tmp_path / "data.json"
    path.write_bytes(body)
    with pytest.raises(ParseError) as refused:
        list(iter_records(path, path.name, "json"))
    assert refused.value.message.startswith(expected), refused.value.message


def test_a_top_level_object_is_one_record_and_json_lines_stay_lines(http, home, qa, bob):
    response, _ = upload(http, "qa", bob, [("one.json", orjson.dumps(_qa(1), option=orjson.OPT_INDENT_2))])
    assert response.status_code == 201 and response.json()["contribution_count"] == 1
    lines = b"".join(orjson.dumps(_qa(i)) + b"\n" for i in range(2, 5))
    response, _ = upload(http, "qa", bob, [("lines.json", lines)])
    assert response.status_code == 201 and response.json()["contribution_count"] == 3
    assert_error(upload(http, "qa", bob, [("empty.json", b"[ ]")])[0], 400, "empty.json: no records (the array is empty)")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b'{"question": "x", "answer": "a", "answer": "b"}', "many.json item 151 (line 1): key 'answer' appears twice"),
        (b'{"question": 123456789012345678901234, "answer": "a"}',
         "many.json item 151: field 'question': integer 123456789012345678901234 is outside the 64-bit range"),
        (b'{"question": "x", "answer": NaN}', "many.json item 151 (line 1 column "),
        (b'["question", "answer"]', "many.json item 151: expected a JSON object, got an array"),
    ],
)
def test_elements_parsed_as_a_run_are_checked_as_each_alone(tmp_path, bad, expected):
    """Runs of elements are parsed in one call; one bad element among them is still found and named."""
    rows = [_qa(i) for i in range(300)]
    path = tmp_path / "many.json"
    path.write_bytes(_array(rows[:150], indent=False)[:-1] + b"," + bad + b"," + _array(rows[150:], indent=False)[1:])
    with pytest.raises(ParseError) as refused:
        list(iter_records(path, path.name, "json"))
    assert refused.value.message.startswith(expected), refused.value.message
    path.write_bytes(_array(rows, indent=False))
    assert [r.location for r in iter_records(path, path.name, "json")] == [f"many.json item {i}" for i in range(1, 301)]
