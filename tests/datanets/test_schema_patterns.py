"""Record schemas whose patterns and formats would backtrack: checked in linear time, or refused by name."""

import pytest

from ledgerlm.datanets import DatanetSpec
from ledgerlm.datanets.record_schema import compile_record_schema
from ledgerlm.errors import LedgerError

from .test_bad_input import assert_error, stored, upload


def _schema(**field) -> dict:
    return {"type": "object", "properties": {"s": {"type": "string", **field}}, "required": ["s"]}


def test_a_nested_quantifier_pattern_is_matched_without_backtracking(http, client, home, alice, bob):
    # ^(a+)+$ against forty a's and a "!" takes Python's backtracking engine 2**40 steps
    client.create_datanet(DatanetSpec(name="pat", schema=_schema(pattern="^(a+)+$")), alice)
    before = stored(home)
    response, _ = upload(http, "pat", bob, [("evil.jsonl", b'{"s": "' + b"a" * 40 + b'!"}\n')])
    assert_error(response, 400, "evil.jsonl", "line 1", "pattern")
    assert stored(home) == before
    response, _ = upload(http, "pat", bob, [("fine.jsonl", b'{"s": "aaaa"}\n')])
    assert response.status_code == 201, response.text


def test_the_email_format_is_checked_within_an_address_length(http, client, alice, bob):
    # fastjsonschema's e-mail regex looks ahead over the whole value: 64 KB of ".a" took seconds
    client.create_datanet(DatanetSpec(name="mail", schema=_schema(format="email")), alice)
    hostile = b'{"s": "a@' + b".a" * 32_000 + b'@"}\n'
    response, _ = upload(http, "mail", bob, [("long.jsonl", hostile)])
    assert_error(response, 400, "long.jsonl", "email")
    response, _ = upload(http, "mail", bob, [("ok.jsonl", b'{"s": "ana@example.org"}\n')])
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("pattern", ["^a(?=b)", "^(a)\\1$", "(?<!x)y"])
def test_a_pattern_that_needs_backtracking_is_refused_when_the_datanet_is_made(http, client, alice, pattern):
    with pytest.raises(LedgerError) as refused:
        client.create_datanet(DatanetSpec(name="bad", schema=_schema(pattern=pattern)), alice)
    assert refused.value.status == 400 and refused.value.field == "schema"
    assert "linear time" in str(refused.value) and "b'" not in str(refused.value)
    assert http.get("/datanets/bad").status_code == 404


def test_patterns_keep_json_schema_meaning():
    validate = compile_record_schema({"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}\\d{2}$"}},
        "patternProperties": {"^x-": {"type": "integer"}}})
    validate({"code": "AB12", "x-n": 3})
    for bad in ({"code": "AB12\n"}, {"code": "ab12"}, {"x-n": "three"}, {"code": "\ud800"}):
        with pytest.raises(Exception, match="must"):
            validate(bad)


def test_a_write_that_waited_out_another_writer_is_answered_503_with_retry_after(http, qa, bob, monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from ledgerlm.datanets.ingest import Ingest

    def locked(*args, **kwargs):  # what SQLite raises after its busy timeout behind a long upload
        raise OperationalError("INSERT INTO uploads ...", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(Ingest, "_store_upload", locked)
    response, _ = upload(http, "qa", bob, [("one.jsonl", b'{"question": "q", "answer": "a"}\n')])
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json()["error"]["type"] == "DatabaseBusy" and "INSERT" not in response.text


def test_an_upload_is_parsed_before_it_takes_the_write_lock(http, client, qa, alice, bob, monkeypatch):
    """Other writes go on while an upload is parsed: on SQLite they had waited out the busy timeout behind it."""
    import threading

    from ledgerlm.datanets.ingest import Ingest

    from .conftest import QA_SCHEMA

    parsing, release = threading.Event(), threading.Event()
    parse = Ingest._iter_items

    def slow(self, row, staged):
        for i, item in enumerate(parse(self, row, staged)):
            if i == 1:  # half-way through the upload's records
                parsing.set()
                release.wait(60)
            yield item

    monkeypatch.setattr(Ingest, "_iter_items", slow)
    records = b'{"question": "q1", "answer": "a"}\n{"question": "q2", "answer": "b"}\n'
    result = {}
    uploading = threading.Thread(target=lambda: result.update(response=upload(http, "qa", bob, [("two.jsonl", records)])[0]))
    uploading.start()
    try:
        assert parsing.wait(30)
        # a write of its own: behind a parse in the write transaction it waited out the busy timeout (503)
        client.create_datanet(DatanetSpec(name="meanwhile", schema=QA_SCHEMA), alice)
    finally:
        release.set()
        uploading.join(60)
    assert result["response"].status_code == 201, result["response"].text


@pytest.mark.parametrize("schema,record", [
    (_schema(format="ipv6"), {"s": "2001:db8::8a2e:370:7334"}),  # its regex's {,4}: RE2 read it as text
    (_schema(pattern="^a{,2}$"), {"s": "aa"}),
    (_schema(pattern="^\\u00e9+$"), {"s": "\u00e9\u00e9"}),
    ({"$schema": "https://json-schema.org/draft/2019-09/schema", **_schema(format="duration")}, {"s": "P3D"}),
])
def test_patterns_written_for_ecma_or_python_keep_their_meaning_under_re2(schema, record):
    compile_record_schema(schema)(record)


def test_a_required_name_is_checked_against_pattern_properties_without_backtracking():
    # fastjsonschema checks each required name against patternProperties while it compiles: with
    # Python's re this took 4 s for 25 characters and doubled with each one more
    schema = {"type": "object", "additionalProperties": False, "patternProperties": {"^(a|a)+$": {}},
              "required": ["a" * 60 + "!"]}
    with pytest.raises(LedgerError, match="required but not allowed"):
        compile_record_schema(schema)


@pytest.mark.parametrize("ref", ["file:///etc/passwd", "http://127.0.0.1:9/schema.json", "other.json"])
def test_a_schema_may_not_refer_outside_itself(ref):
    with pytest.raises(LedgerError, match="only refer within itself") as refused:
        compile_record_schema({"type": "object", "properties": {"s": {"$ref": ref}}})
    assert refused.value.field == "schema"
