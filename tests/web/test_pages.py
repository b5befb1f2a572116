"""The dashboard without a browser: pages render from a real node, errors read as sentences, and the
typed data a page gets to sign has the digest the CLI signs."""

from __future__ import annotations

import hashlib
import json

from eth_account.messages import _hash_eip191_message, encode_typed_data
from sqlalchemy import insert

from ledgerlm.datanets import DatanetSpec, FileEntry, manifest_hash
from ledgerlm.identity import sign_action, typed_data
from ledgerlm.store.schema import reputation_history
from ledgerlm.web.playground import matched_spans
from ledgerlm.web.validation import reputation_chart

from ..datanets.conftest import QA_SCHEMA, write_jsonl


def test_pages_render_and_errors_read_as_sentences(http, client, alice, tmp_path):
    client.create_datanet(DatanetSpec(name="qa", schema=QA_SCHEMA, description="questions"), alice)
    client.contribute("qa", [write_jsonl(tmp_path / "a.jsonl", [{"question": "Where?", "answer": "Here it is."}])],
                      alice)
    for path in ("/", "/web/datanets?q=quest", "/web/datanets/qa", "/web/contributions/1", "/web/validation",
                 "/web/models", "/web/economy", "/web/ledger"):
        page = http.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
    assert "qa" in http.get("/web/datanets?q=quest").text
    assert "qa" not in http.get("/web/datanets?q=images").text.split("<main")[1]

    page = http.get("/web/datanets/missing")
    assert page.status_code == 404 and "no Datanet named &#39;missing&#39;" in page.text
    assert '{"error"' not in page.text and "Traceback" not in page.text
    page = http.get("/web/validation?address=not-an-address")
    assert page.status_code == 400 and "is not an Ethereum address" in page.text
    for q in ("9" * 5000, "\u00b2"):  # digits int() cannot read were once a 500 from the ledger's search box
        page = http.get("/web/ledger", params={"q": q}, follow_redirects=True)
        assert page.status_code == 400 and "Traceback" not in page.text, page.text[:300]
    # The JSON API keeps answering JSON at the same time.
    assert http.get("/datanets/missing").json()["error"]["field"] == "datanet"


def test_typed_data_for_an_upload_is_what_the_cli_signs(http, client, alice):
    domain = client.domain
    files = [FileEntry(name="a.jsonl", sha256=hashlib.sha256(b"x").hexdigest(), size=1)]
    answer = http.post("/web/typed-data", json={
        "action": "Contribute", "signer": alice.address, "fields": {"datanet": "qa"},
        "manifest": [[f.name, f.sha256, f.size] for f in files]}).json()
    typed, message = json.loads(answer["typed"]), json.loads(answer["message"])
    cli = sign_action(alice, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(files)}, domain=domain,
                      nonce=message["nonce"], deadline=message["deadline"])
    assert message == cli.message
    page_digest = _hash_eip191_message(encode_typed_data(full_message=typed))
    assert page_digest == _hash_eip191_message(encode_typed_data(full_message=typed_data("Contribute", cli.message,
                                                                                           domain)))
    # The page's typed data carries the 63-bit nonce as a string a browser cannot round; the message keeps it whole.
    if message["nonce"] > 2**53:
        assert typed["message"]["nonce"] == str(message["nonce"])

    refused = http.post("/web/typed-data", json={"action": "CreateDatanet", "signer": alice.address,
                                                 "spec": {"name": "Bad Name", "schema": QA_SCHEMA}})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "name"
    refused = http.post("/web/typed-data", json={"action": "OpenRound", "signer": alice.address, "fields": {}})
    assert refused.json()["error"]["field"] == "datanet"


def test_matched_spans_mark_runs_shared_with_training_text():
    pieces = matched_spans("Sure: the reef is copper, as always.", {7: "What colour is the reef? The reef is copper."})
    marked = [p["text"] for p in pieces if p["source"] == 7]
    assert marked == ["the reef is copper,"]
    assert "".join(p["text"] for p in pieces) == "Sure: the reef is copper, as always."
    assert all(p["source"] is None for p in matched_spans("nothing in common here", {1: "the reef is copper"}))


def test_a_relayed_claim_is_refused_in_words_when_nothing_is_owed(http, client, alice):
    action = sign_action(alice, "ClaimPayout", {"epoch": 1}, domain=client.domain).model_dump()
    refused = http.post("/economy/claims", json={"action": action})
    assert refused.status_code == 404 and "has no payout in epoch 1" in refused.json()["error"]["message"]
    # The nonce is spent: the same signature cannot be replayed.
    again = http.post("/economy/claims", json={"action": action})
    assert again.status_code in (401, 409) and "nonce" in again.json()["error"]["message"].lower()
    forged = {**action, "message": {**action["message"], "epoch": 2}}
    assert http.post("/economy/claims", json={"action": forged}).status_code == 401


def test_a_private_datanet_shows_only_to_a_signed_reader(http, client, alice, bob):
    from ledgerlm.web.access import READ_COOKIE

    client.create_datanet(DatanetSpec(name="secret", schema=QA_SCHEMA, visibility="private"), alice)
    assert "secret" not in http.get("/web/datanets").text.split("<main")[1]
    page = http.get("/web/datanets/secret")
    assert page.status_code == 401 and "is private" in page.text
    http.cookies.set(READ_COOKIE, client.read_header(alice))
    try:
        assert "/web/datanets/secret" in http.get("/web/datanets").text
        assert http.get("/web/datanets/secret").status_code == 200
        http.cookies.set(READ_COOKIE, client.read_header(bob))  # a stranger's read proves nothing
        assert http.get("/web/datanets/secret").status_code == 403
    finally:
        http.cookies.clear()


def test_the_wallets_read_request_names_this_node_and_opens_its_private_pages(http, client, alice):
    """/web/read-request prepares what the page's wallet signs: a ReadRequest bound to this node's key."""
    from ledgerlm.web.access import READ_COOKIE

    client.create_datanet(DatanetSpec(name="secret", schema=QA_SCHEMA, visibility="private"), alice)
    prepared = http.post("/web/read-request", json={"signer": alice.address}).json()
    typed = json.loads(prepared["typed"])
    node = http.get("/node/info").json()["node_address"]
    assert typed["primaryType"] == "ReadRequest" and typed["message"]["node"] == node
    assert prepared["prefix"].split(":")[:3] == [alice.address, node, "*"]
    signature = alice.sign_message(encode_typed_data(full_message=typed)).signature.hex().removeprefix("0x")
    http.cookies.set(READ_COOKIE, f"{prepared['prefix']}:0x{signature}")  # as ledgerlm.js writes it
    try:
        assert http.get("/web/datanets/secret").status_code == 200
    finally:
        http.cookies.clear()

def test_reputation_chart_draws_each_role_from_neutral():
    chart = reputation_chart({"validator": [{"round_id": 1, "bps": 6000, "at": 1}, {"round_id": 2, "bps": 10000,
                                                                                   "at": 2}],
                              "contributor": []})
    (line,) = chart["lines"]
    assert line["role"] == "validator" and line["last"] == 10000 and line["changes"] == 2
    # x spreads the changes over the width; y is 0 at 10,000 bps and the full height at 0 bps.
    assert line["points"] == "0.0,80.0 300.0,64.0 600.0,0.0"
    assert reputation_chart({"validator": [], "contributor": []}) is None


def test_validation_page_shows_a_reputation_chart(http, alice):
    node = http.app.state.node
    with node.db.begin() as conn:
        conn.execute(insert(reputation_history).values(address=alice.address, role="validator", round_id=1,
                                                       bps=6200, at=1))
    page = http.get(f"/web/validation?address={alice.address}")
    assert page.status_code == 200 and 'id="reputation-chart"' in page.text and "<polyline" in page.text
    # the legend's colour swatches are drawn as SVG fills: a style attribute is what the pages' policy refuses
    assert 'class="swatch"' in page.text and "style=" not in page.text


def _receipt_with_completion(node, contributor: str, completion: str) -> str:
    """A final receipt for a call whose answer was `completion`, attributed to contribution 1 (as serving stores it)."""
    from ledgerlm.store.schema import receipts

    from ..economy.helpers import write_receipt

    rid = write_receipt(node, contributor, 10**6, contributor, attribution={"contributions": [
        {"contribution_id": 1, "contributor": contributor, "bps": 10_000, "score": 1.0}]})
    with node.db.begin() as conn:
        conn.execute(receipts.update().where(receipts.c.id == rid).values(
            request={"messages": [], "completion": completion,
                     "split": {"node": node.account.address, "developer": contributor, "datanet": None}}))
    return rid


def test_playground_marks_spans_of_the_receipts_own_sources_whatever_answer_is_posted(http, client, alice,
                                                                                        tmp_path):
    client.create_datanet(DatanetSpec(name="qa", schema=QA_SCHEMA), alice)
    client.contribute("qa", [write_jsonl(tmp_path / "a.jsonl", [{"question": "What colour is the reef?",
                                                                   "answer": "The reef is copper."}])], alice)
    answer = "Sure: the reef is copper, as always."
    rid = _receipt_with_completion(http.app.state.node, alice.address, answer)
    paid = http.post("/web/playground/attribution", data={"receipt_id": rid, "answer": answer})
    assert paid.status_code == 200, paid.text
    assert '<mark title="matches contribution 1"' in paid.text
    # Any text posted is matched against this receipt's own public sources alone (no word matcher over the node's
    # data): marking only the answer it paid for told anyone with the receipt id whether a guess was the consumer's
    # private answer.
    other = http.post("/web/playground/attribution", data={"receipt_id": rid, "answer": "the reef is copper <b>"})
    assert other.status_code == 200 and "<mark" in other.text and "&lt;b&gt;" in other.text
    unrelated = http.post("/web/playground/attribution", data={"receipt_id": rid, "answer": "gulls fly south <b>"})
    assert unrelated.status_code == 200 and "<mark" not in unrelated.text


def test_request_bodies_stop_at_the_limit_while_read(http, client, alice):
    from ledgerlm.api.limits import MAX_REQUEST_BYTES

    big = "x" * (MAX_REQUEST_BYTES + 1)
    refused = http.post("/web/playground/attribution", data={"receipt_id": "r", "answer": big})
    assert refused.status_code == 413
    refused = http.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": big}]})
    assert refused.status_code == 413 and refused.json()["error"]["field"] == "body"

    def chunks():  # no Content-Length: the count while reading stops it
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"x" * 65536

    refused = http.post("/economy/claims", content=chunks(), headers={"content-type": "application/json"})
    assert refused.status_code == 413 and "larger than" in refused.json()["error"]["message"]
    # A body under the limit is read as before.
    action = sign_action(alice, "ClaimPayout", {"epoch": 1}, domain=client.domain).model_dump()
    assert http.post("/economy/claims", json={"action": action}).status_code == 404


def test_an_id_past_what_the_node_stores_is_a_readable_400(http):
    huge = 10**30
    for path in (f"/web/contributions/{huge}", f"/web/jobs/{huge}", f"/web/validation/rounds/{huge}"):
        page = http.get(path)
        assert page.status_code == 400 and "larger than the node stores" in page.text, path
    for path in (f"/contributions/{huge}", f"/factory/jobs/{huge}", f"/validation/rounds/{huge}"):
        answer = http.get(path)
        assert answer.status_code == 400 and "larger than the node stores" in answer.json()["error"]["message"], path
        assert answer.json()["error"]["field"] in ("contribution_id", "job_id", "round_id"), answer.json()


def test_typed_data_refuses_what_the_node_would_refuse_once_signed(http, alice):
    def prepare(action, fields):
        return http.post("/web/typed-data", json={"action": action, "signer": alice.address, "fields": fields})

    refused = prepare("AddMember", {"datanet": ["qa"], "member": 5})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "datanet"
    root = "0x" + "11" * 32
    refused = prepare("IssueShares", {"kind": "datanet", "asset": "qa", "version": "1e9", "supply": 1, "ownerBps": 0,
                                      "allocationRoot": root})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "version"
    # A cap the escrow's packed debits cannot hold is refused before anyone signs it.
    refused = prepare("CreateApiKey", {"keyHash": "0x" + "00" * 32, "cap": str(2**200)})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "cap"
    # A uint256 past 64 bits is kept exact in the message the page posts back.
    answer = prepare("IssueShares", {"kind": "datanet", "asset": "qa", "version": 0, "supply": str(2**200), "ownerBps": 0,
                                     "allocationRoot": root})
    assert answer.status_code == 200 and json.loads(answer.json()["message"])["supply"] == 2**200
    # Digit text that int() refuses (past 4,300 digits, or a superscript) was once a 500, not a named field.
    for text in ("9" * 5000, "\u00b2", "\u0661\u0662"):
        refused = prepare("WithdrawContribution", {"contributionId": text})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "contributionId", refused.text


def test_a_read_signed_for_one_private_datanet_lists_only_that_one(http, client, alice):
    from ledgerlm.web.access import READ_COOKIE

    for name in ("vault-a", "vault-b"):
        client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA, visibility="private"), alice)
    http.cookies.set(READ_COOKIE, client.read_header(alice, datanet="vault-a"))
    try:
        listed = http.get("/web/datanets").text.split("<main")[1]
        assert "/web/datanets/vault-a" in listed and "vault-b" not in listed
    finally:
        http.cookies.clear()


def test_event_arguments_show_as_a_contract_reads_them():
    from ledgerlm.web.render import environment

    evm = environment.filters["evm"]
    assert evm(bytes.fromhex("19f702")) == "0x19f702"  # a bytes32 id, not Python's b'\x19\xf7\x02'
    assert evm([b"\x01", 5]) == "[0x01, 5]" and evm(7) == "7"


def test_a_datanets_page_checks_only_its_newest_versions_against_the_chain(http, client, alice, tmp_path,
                                                                          monkeypatch):
    """Each anonymous view asked the Registry once for every version ever published (30 an hour allowed): the page
    lists, and checks, the newest ones only."""
    from ledgerlm.chain.contracts import RegistryClient
    from ledgerlm.web import datanets as pages

    client.create_datanet(DatanetSpec(name="many", schema=QA_SCHEMA), alice)
    for i in range(3):
        client.contribute("many", [write_jsonl(tmp_path / f"{i}.jsonl", [{"question": f"q{i}?", "answer": "a."}])],
                          alice)
        for c in client.contributions("many", state="pending"):
            client.review(c.id, alice, accept=True)
        client.publish("many", alice)
    asked = []
    real = RegistryClient.get_version
    monkeypatch.setattr(RegistryClient, "get_version", lambda self, *a: asked.append(a) or real(self, *a))
    monkeypatch.setattr(pages, "VERSIONS_SHOWN", 2)
    page = http.get("/web/datanets/many").text
    assert len(asked) == 2 and "The newest 2 of 3 versions" in page
    assert page.index(">v3 <") < page.index(">v2 <") and ">v1 <" not in page


def test_pages_keep_no_copy_in_the_tabs_storage_for_back_to_show_after_sign_out(http):
    # htmx saves pages in sessionStorage for Back; a private listing stayed there after the read grant expired
    config = json.loads(http.get("/").text.split('name="htmx-config" content=\'')[1].split("'")[0])
    assert config["historyCacheSize"] == 0 and config["refreshOnHistoryMiss"] is True


def test_datanets_are_listed_a_page_at_a_time_and_the_home_page_names_the_newest(http, client, alice, monkeypatch):
    """Each view loaded every Datanet (three queries and its schema each): 1,440 a day from fresh keys made the
    list page 6 MB. The home page's "Newest Datanets" named the oldest five."""
    from ledgerlm.web import datanets as pages

    for name in ("first-one", "second-one", "third-one"):
        client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA, description=f"{name} facts"), alice)
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    listed = http.get("/web/datanets").text
    assert "first-one" in listed and "second-one" in listed and "third-one" not in listed
    assert "Datanets 1–2 of 3" in listed and "offset=2" in listed
    rest = http.get("/web/datanets", params={"offset": 2}).text
    assert "third-one" in rest and "first-one" not in rest.split("<main")[1]
    assert "third-one" in http.get("/web/datanets", params={"q": "third facts"}).text
    home = http.get("/").text.split("Newest Datanets")[1]
    assert home.index("third-one") < home.index("second-one") < home.index("first-one")
