"""A read request is good at the one node it names, and the client signs one only for a node URL its home trusts."""

import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from ledgerlm.client import NodeClient
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import AuthError
from ledgerlm.identity import READ_HEADER
from ledgerlm.identity.known_nodes import KnownNodes
from tests.datanets.conftest import QA_SCHEMA, write_jsonl

RECORDS = [{"question": "What is the vault code?", "answer": "4417-ALPHA"}]
VAULT = "/datanets/vault/contributions?payload=true"


@pytest.fixture
def victim(client, alice, tmp_path):
    """Node A, holding alice's private Datanet `vault`, read without the operator's credential from here on."""
    client.create_datanet(DatanetSpec(name="vault", schema=QA_SCHEMA, visibility="private"), alice)
    client.reader = alice
    client.contribute("vault", [write_jsonl(tmp_path / "s.jsonl", RECORDS)], alice)
    client.reader = None
    del client.http.headers["Authorization"]
    return client.http


def hostile_node(info: dict, harvested: list) -> TestClient:
    """Node B: answers /node/info with `info` and keeps every read request sent to its model list."""
    hostile = FastAPI()

    @hostile.get("/node/info")
    def node_info():
        return info

    @hostile.get("/models")
    def models(request: Request):
        harvested.append(request.headers.get(READ_HEADER))
        return []

    return TestClient(hostile, base_url="http://hostile")


def test_a_grant_harvested_by_another_node_is_refused_by_the_node_it_claims_to_be(victim, alice):
    """Node B reports A's signing domain; a member lists models on B. The grant names B's key, so A refuses it."""
    a = victim.get("/node/info").json()
    b_key = "0x" + "b0" * 20
    harvested = []
    with hostile_node({"signing_domain": a["signing_domain"], "node_address": b_key}, harvested) as hostile:
        NodeClient(hostile, reader=alice)._request("GET", "/models")
    grant = harvested[0]
    assert grant.split(":")[1].lower() == b_key

    replayed = victim.get(VAULT, headers={READ_HEADER: grant})
    assert replayed.status_code == 401 and "4417-ALPHA" not in replayed.text
    error = replayed.json()["error"]
    assert error["field"] == "x-ledgerlm-read"
    assert b_key in error["message"].lower() and a["node_address"] in error["message"]
    # the member's own read of A, signed for A, still works
    assert "4417-ALPHA" in NodeClient(victim, reader=alice)._response("GET", VAULT).text


def test_the_client_refuses_to_sign_for_a_known_nodes_key_reported_by_another_url(victim, alice, tmp_path):
    """With known nodes (as the CLI keeps them), B claiming A's key as well gets no grant at all."""
    pins = KnownNodes(tmp_path / "known_nodes.json")
    assert "4417-ALPHA" in NodeClient(victim, reader=alice, known_nodes=pins)._response("GET", VAULT).text
    a = victim.get("/node/info").json()
    assert [(n.url, n.node_address) for n in pins.nodes()] == [("http://localhost:80", a["node_address"])]

    harvested = []
    with hostile_node(a, harvested) as hostile:
        with pytest.raises(AuthError) as refused:
            NodeClient(hostile, reader=alice, known_nodes=pins)._request("GET", "/models")
    assert harvested == [], "nothing was sent to the node claiming A's key"
    message = refused.value.message
    assert "http://hostile:80" in message and "http://localhost:80" in message and "ledgerlm node trust" in message
    assert [n.url for n in pins.nodes()] == ["http://localhost:80"]  # the claim was not pinned either

    # the user says B really is A (another name for it): then it is signed for
    pins.trust("http://hostile", a["node_address"], a["signing_domain"])
    with hostile_node(a, harvested) as hostile:
        NodeClient(hostile, reader=alice, known_nodes=pins)._request("GET", "/models")
    assert len(harvested) == 1


def test_a_known_url_that_reports_another_key_or_domain_is_refused_until_forgotten(victim, alice, tmp_path):
    pins = KnownNodes(tmp_path / "known_nodes.json")
    a = victim.get("/node/info").json()
    harvested = []
    with hostile_node(a, harvested) as node:
        NodeClient(node, reader=alice, known_nodes=pins)._request("GET", "/models")
    for changed in ({**a, "node_address": "0x" + "b0" * 20},
                    {**a, "signing_domain": {**a["signing_domain"], "chainId": 999}}):
        with hostile_node(changed, harvested) as node:
            with pytest.raises(AuthError, match="now reports key") as refused:
                NodeClient(node, reader=alice, known_nodes=pins)._request("GET", "/models")
        assert "ledgerlm node forget http://hostile:80" in refused.value.message
    assert len(harvested) == 1
    assert json.loads(pins.path.read_text())["http://hostile:80"]["node_address"] == a["node_address"]

    assert pins.forget("http://hostile/").node_address == a["node_address"]
    with hostile_node(changed, harvested) as node:
        NodeClient(node, reader=alice, known_nodes=pins)._request("GET", "/models")
    assert len(harvested) == 2


def test_a_node_this_home_serves_may_change_its_key(victim, alice, tmp_path):
    """`ledgerlm init` again makes the home's own node a new key: its pin follows, no other URL may claim it."""
    pins = KnownNodes(tmp_path / "known_nodes.json", own_urls=["http://127.0.0.1:80"])
    a = victim.get("/node/info").json()
    harvested = []
    for key in ("0x" + "c0" * 20, a["node_address"]):
        with hostile_node({**a, "node_address": key}, harvested) as node:
            node.base_url = "http://localhost"
            NodeClient(node, reader=alice, known_nodes=pins)._request("GET", "/models")
    assert [n.node_address for n in pins.nodes()] == [a["node_address"]]
    with hostile_node(a, harvested) as hostile, pytest.raises(AuthError, match="http://localhost:80"):
        NodeClient(hostile, reader=alice, known_nodes=pins)._request("GET", "/models")
