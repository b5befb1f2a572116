"""Listing a Datanet's contributions a bounded page at a time: a page too large is refused naming `limit`, a
page of payloads stops at its byte budget, and a client reads everything page by page."""

from .conftest import write_jsonl
from .test_bad_input import assert_error


def test_a_page_past_the_maximum_is_refused_naming_limit(client, http, qa, bob, tmp_path):
    client.contribute("qa", [write_jsonl(tmp_path / "q.jsonl", [{"question": "q?", "answer": "a"}])], bob)
    # 100 rows with their data, 1,000 without, a page
    for query, most in (("limit=10000&payload=true", "100"), ("limit=101&payload=true", "100"),
                        ("limit=1001", "1000"), ("limit=0", "1000")):
        error = assert_error(http.get(f"/datanets/qa/contributions?{query}"), 400, "limit", most, "offset")
        assert error["field"] == "limit", query
    assert len(http.get("/datanets/qa/contributions?limit=100&payload=true").json()) == 1
    assert len(http.get("/datanets/qa/contributions?limit=1000").json()) == 1


def test_payload_pages_stop_at_their_byte_budget_and_the_rest_reads_from_the_next_offset(client, http, qa, bob,
                                                                                         tmp_path):
    from ledgerlm.datanets import NEXT_OFFSET_HEADER, PAGE_PAYLOAD_BYTES

    # Each record is over a third of the budget: two fit a page, a third would not.
    big = PAGE_PAYLOAD_BYTES // 3 + 1024
    records = [{"question": f"q{i}?", "answer": chr(ord("a") + i) * big} for i in range(3)]
    client.contribute("qa", [write_jsonl(tmp_path / "big.jsonl", records)], bob)

    first = http.get("/datanets/qa/contributions?payload=true&limit=100")
    assert [c["payload"]["question"] for c in first.json()] == ["q0?", "q1?"]
    assert first.headers[NEXT_OFFSET_HEADER] == "2"
    rest = http.get("/datanets/qa/contributions?payload=true&limit=100&offset=2")
    assert [c["payload"]["question"] for c in rest.json()] == ["q2?"] and NEXT_OFFSET_HEADER not in rest.headers
    # without payloads the budget does not apply; a full page says where the next one starts
    ids = http.get("/datanets/qa/contributions?limit=2")
    assert len(ids.json()) == 2 and ids.headers[NEXT_OFFSET_HEADER] == "2"
    # the client follows the pages: every record, whole
    assert [c.payload["answer"] for c in client.contributions("qa", payload=True)] == [r["answer"] for r in records]


def test_the_client_reads_more_than_one_page_when_asked(client, qa, bob, tmp_path):
    from ledgerlm.datanets import MAX_CONTRIBUTIONS_PAGE

    count = MAX_CONTRIBUTIONS_PAGE + 5
    records = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(count)]
    client.contribute("qa", [write_jsonl(tmp_path / "many.jsonl", records)], bob)
    listed = client.contributions("qa", limit=10 * MAX_CONTRIBUTIONS_PAGE)
    assert len(listed) == count and len({c.id for c in listed}) == count
    assert len(client.contributions("qa", limit=count - 1, offset=1)) == count - 1
