"""Bad input, as a new user or a hostile one would send it: clear errors, nothing stored."""

import io
import time

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ledgerlm.api import create_app
from ledgerlm.config import Home
from ledgerlm.datanets import FileEntry, manifest_hash
from ledgerlm.identity import SigningDomain, sign_action
from ledgerlm.node import Node
from ledgerlm.store.schema import contributions, signed_actions, uploads

from .conftest import write_jsonl


def node_domain(http) -> SigningDomain:
    return SigningDomain.from_dict(http.get("/node/info").json()["signing_domain"])


def upload(http, name, account, files, *, domain=None, tamper=None, signed=None):
    """POST raw (name, bytes) files with a Contribute signature over them (for this node's domain)."""
    import hashlib

    entries = [FileEntry(name=n, sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in files]
    if signed is None:
        signed = sign_action(account, "Contribute", {"datanet": name, "manifestHash": manifest_hash(entries)},
                             domain=domain or node_domain(http))
    action = signed.model_dump()
    if tamper:
        tamper(action)
    return http.post(
        f"/datanets/{name}/contributions",
        data={"action": orjson.dumps(action).decode()},
        files=[("files", (n, io.BytesIO(b))) for n, b in files],
    ), signed


def stored(home):
    node = Node.open(home)
    try:
        with node.db.connect() as conn:
            counts = tuple(conn.execute(select(func.count()).select_from(t)).scalar()
                           for t in (contributions, uploads))
        blobs = sorted(p.name for p in node.blobs.root.glob("??/??/*"))
    finally:
        node.close()
    return counts, blobs


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
    return response.json()["error"]


GOOD = b'{"question": "q", "answer": "a"}\n'


@pytest.mark.parametrize(
    "name,body,words",
    [
        ("bad.jsonl", GOOD + b'{"question": "q2", "answer": \n', ["bad.jsonl", "line 2"]),
        ("schema.jsonl", GOOD + b'{"question": "q2", "answer": 7}\n', ["schema.jsonl", "line 2", "answer"]),
        ("missing.jsonl", b'{"question": "q2"}\n', ["missing.jsonl", "line 1", "answer"]),
        ("utf8.jsonl", GOOD + b'{"question": "\xff\xfe", "answer": "a"}\n', ["utf8.jsonl", "UTF-8"]),
        ("blank.jsonl", b"\n\n", ["blank.jsonl"]),
        ("array.jsonl", b"[1, 2]\n", ["array.jsonl", "line 1"]),
        ("table.csv", b"question,answer\nq,a,extra\n", ["table.csv"]),
        ("image.png", b"\x89PNG\r\n\x1a\n0000", ["image.png"]),
        # what an export writes beside every record may not come with it
        ("reserved.jsonl", GOOD + b'{"question": "q2", "answer": "a", "_contributor": "0xdead"}\n',
         ["reserved.jsonl", "line 2", "_contributor", "reserved"]),
    ],
)
def test_bad_files_are_refused_whole(http, home, qa, bob, name, body, words):
    before = stored(home)
    response, _ = upload(http, "qa", bob, [("ok.jsonl", b'{"question": "fine", "answer": "yes"}\n'), (name, body)])
    error = assert_error(response, 400, *words)
    assert error["field"]
    assert stored(home) == before  # the good file in the same batch was not kept either


def test_zero_byte_file(http, home, qa, bob):
    before = stored(home)
    response, _ = upload(http, "qa", bob, [("empty.jsonl", b"")])
    assert_error(response, 400, "empty.jsonl", "empty")
    assert stored(home) == before


@pytest.mark.parametrize("bad_name", ["../../etc/passwd", "/abs/path.jsonl", "a\\..\\b.jsonl", "", "nul\x00.jsonl"])
def test_path_traversal_names(http, home, qa, bob, bad_name):
    before = stored(home)
    response, _ = upload(http, "qa", bob, [(bad_name, GOOD)])
    assert response.status_code in (400, 401, 422), response.text  # NUL may not survive multipart
    assert stored(home) == before
    assert not (home.root.parent / "etc").exists()


def test_oversized_upload(home, qa, bob):
    config = home.load_config()
    config.max_upload_bytes = 100
    home.save_config(config)
    with TestClient(create_app(lambda: Node.open(home))) as http:
        before = stored(home)
        response, _ = upload(http, "qa", bob, [("big.jsonl", GOOD * 10)])
        assert_error(response, 413, "big.jsonl", "100 bytes")
        assert stored(home) == before


def test_unknown_datanet(http, bob):
    response, _ = upload(http, "nope", bob, [("a.jsonl", GOOD)])
    assert_error(response, 404, "no Datanet named 'nope'")


def test_forged_signature(http, home, qa, alice, bob):
    def claim_to_be_alice(action):
        action["message"]["contributor"] = alice.address

    before = stored(home)
    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], tamper=claim_to_be_alice)
    assert_error(response, 401, "signature does not match")
    assert stored(home) == before


def test_signature_must_cover_the_files(http, qa, bob):
    def other_files(action):
        action["message"]["manifestHash"] = "0x" + "00" * 32

    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], tamper=other_files)
    assert_error(response, 401)  # the changed hash breaks the signature first
    import hashlib

    entries = [FileEntry(name="a.jsonl", sha256=hashlib.sha256(b"other").hexdigest(), size=5)]
    signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                         domain=node_domain(http))
    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], signed=signed)
    assert_error(response, 401, "does not cover these files")


def test_replayed_signature(http, home, qa, bob):
    first, signed = upload(http, "qa", bob, [("a.jsonl", GOOD)])
    assert first.status_code == 201
    before = stored(home)
    again, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], signed=signed)
    assert_error(again, 401, "already used", "replayed")
    assert stored(home) == before


def test_wrong_chain_id(http, qa, bob):
    right = node_domain(http)
    wrong = SigningDomain(1, right.verifying_contract)
    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], domain=wrong)
    assert_error(response, 401, "chain id 1337")


def test_signature_for_another_deployment_is_refused(http, home, qa, bob, tmp_path):
    """Two embedded nodes share chain id 1337; their Registries differ, so signatures do not travel."""
    other_home = Home(tmp_path / "other")
    Node.init(other_home).close()
    with TestClient(create_app(lambda: Node.open(other_home))) as other:
        other_domain = node_domain(other)
    here = node_domain(http)
    assert other_domain.chain_id == here.chain_id and other_domain.verifying_contract != here.verifying_contract
    before = stored(home)
    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], domain=other_domain)
    assert_error(response, 401, "signature does not match", here.verifying_contract)
    assert stored(home) == before


def test_deadline_beyond_the_cap_is_refused(http, qa, bob):
    import hashlib

    entries = [FileEntry(name="a.jsonl", sha256=hashlib.sha256(GOOD).hexdigest(), size=len(GOOD))]
    century = int(time.time()) + 100 * 365 * 24 * 3600
    signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                         domain=node_domain(http), deadline=century)
    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], signed=signed)
    assert_error(response, 401, "deadline", "at most 86400")
    ok, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)])
    assert ok.status_code == 201, ok.text


def test_expired_deadline(http, qa, bob):
    import hashlib

    entries = [FileEntry(name="a.jsonl", sha256=hashlib.sha256(GOOD).hexdigest(), size=len(GOOD))]
    signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                         domain=node_domain(http), deadline=int(time.time()) - 5)
    response, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], signed=signed)
    assert_error(response, 401, "expired")


def test_duplicate_upload(client, home, qa, bob, carol, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "q", "answer": "a"}])
    client.contribute("qa", [path], bob)
    before = stored(home)
    with pytest.raises(Exception, match="already in Datanet 'qa' as contribution 1"):
        client.contribute("qa", [path], carol)
    assert stored(home) == before


def test_duplicate_inside_one_upload(client, qa, bob, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": "q", "answer": "a"}, {"answer": "a", "question": "q"}])
    with pytest.raises(Exception, match="a.jsonl line 2 duplicates a.jsonl line 1"):
        client.contribute("qa", [path], bob)


def test_duplicates_far_apart_in_one_upload(client, home, qa, bob, carol, tmp_path, monkeypatch):
    """Records are stored in chunks: a duplicate in a later chunk than its first copy is caught all the same."""
    from ledgerlm.datanets import ingest

    monkeypatch.setattr(ingest, "CHUNK", 2)
    records = [{"question": f"q{i}", "answer": "a"} for i in range(5)]
    client.contribute("qa", [write_jsonl(tmp_path / "live.jsonl", records[4:])], bob)
    before = stored(home)
    upload = [*records[:4], records[1], records[4]]  # line 5 repeats line 2; line 6 is already live
    with pytest.raises(Exception, match="a.jsonl line 5 duplicates a.jsonl line 2 in the same upload"):
        client.contribute("qa", [write_jsonl(tmp_path / "a.jsonl", upload)], carol)
    assert stored(home) == before
    with pytest.raises(Exception, match="b.jsonl line 5 is already in Datanet 'qa' as contribution 1"):
        client.contribute("qa", [write_jsonl(tmp_path / "b.jsonl", [*records[:4], records[4]])], carol)
    receipt = client.contribute("qa", [write_jsonl(tmp_path / "c.jsonl", upload)], carol, skip_duplicates=True)
    assert (receipt.contribution_count, receipt.skipped_duplicates) == (4, 2)
    assert receipt.first_contribution_id == 2
    assert [(c.id, c.source) for c in client.contributions("qa")] == [
        (1, "live.jsonl line 1"), *((1 + n, f"c.jsonl line {n}") for n in (1, 2, 3, 4))]


def test_malformed_action_field(http, qa):
    response = http.post("/datanets/qa/contributions", data={"action": "{not json"},
                         files=[("files", ("a.jsonl", io.BytesIO(GOOD)))])
    assert_error(response, 401, "signed action")


@pytest.mark.parametrize(
    "schema,words",
    [
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, ["schema", "properties/a/type"]),
        ({"type": "array"}, ['"type": "object"']),
        ({"type": "object", "x-label-field": "topic", "properties": {"text": {"type": "string"}}},
         ['"x-label-field" must name one of the schema\'s properties', "'topic'"]),
    ],
)
def test_bad_schema(client, alice, schema, words):
    from ledgerlm.datanets import DatanetSpec

    with pytest.raises(Exception) as info:
        client.create_datanet(DatanetSpec(name="bad", schema=schema), alice)
    for word in words:
        assert word in str(info.value)
    assert all(d.name != "bad" for d in client.datanets())


def test_bad_datanet_name_over_http(http, alice):
    response = http.post("/datanets", json={"spec": {"name": "Bad Name!"}, "action": {"action": "CreateDatanet", "message": {}, "signature": "0x"}})
    error = assert_error(response, 422, "name")
    assert error["field"] == "name"


def test_replay_rejected_after_restart(home, qa, bob):
    """Nonces are in the database, so a restart does not reopen a replay window."""
    with TestClient(create_app(lambda: Node.open(home))) as http:
        first, signed = upload(http, "qa", bob, [("a.jsonl", GOOD)])
        assert first.status_code == 201
    with TestClient(create_app(lambda: Node.open(home))) as http:
        again, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], signed=signed)
        assert again.status_code == 401
    node = Node.open(home)
    with node.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(signed_actions)).scalar() == 2  # create + 1 upload
    node.close()


def test_a_refusal_quotes_at_most_the_start_of_what_it_refused():
    from ledgerlm.datanets.parsers.formats import ParseError
    from ledgerlm.datanets.parsers.schema_errors import MAX_REASON_CHARS, validate_record
    from ledgerlm.datanets.record_schema import compile_record_schema

    validator = compile_record_schema({"type": "object", "properties": {"q": {"type": "string"}},
                                       "additionalProperties": False})
    with pytest.raises(ParseError) as refused:
        validate_record(validator, {"q": "x", "k" * 8_000_000: 1}, "big.jsonl line 1")
    assert len(str(refused.value)) < MAX_REASON_CHARS + 200 and "more characters" in str(refused.value)
