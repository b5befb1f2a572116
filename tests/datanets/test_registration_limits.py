"""The node pays the gas of every Datanet it registers and every version root it anchors on chain, and a signer
needs no ETH to ask: so many of each an hour in all and per owner (`datanets_per_hour`,
`datanets_per_owner_per_hour`, `versions_per_hour`, `versions_per_owner_per_hour`), refused with a 429 that
stores nothing; and listings come in pages."""

from __future__ import annotations

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.config import ConfigError, NodeConfig
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node

from .conftest import QA_SCHEMA, publish_qa, write_jsonl


@pytest.fixture
def limited(home):
    config = home.load_config()
    config.datanets_per_hour, config.datanets_per_owner_per_hour = 3, 2
    home.save_config(config)
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test") as http:
        yield NodeClient(http, operator_token=home.operator_token_path.read_text().strip())


def create(client, name, account):
    return client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA), account)


def test_fresh_keys_cannot_make_the_node_register_datanets_without_end(limited):
    owners = [Account.create() for _ in range(3)]  # fresh keys, no ETH, no tokens
    create(limited, "a1", owners[0])
    create(limited, "a2", owners[0])
    with pytest.raises(LedgerError) as refused:
        create(limited, "a3", owners[0])
    assert refused.value.status == 429 and refused.value.field == "owner"
    create(limited, "b1", owners[1])  # another owner still may: the node's third of the hour
    with pytest.raises(LedgerError) as refused:
        create(limited, "c1", owners[2])
    assert refused.value.status == 429 and refused.value.field == "name"
    assert [d.name for d in limited.datanets()] == ["a1", "a2", "b1"]  # the refused ones are nowhere


def test_refused_creations_spend_nobody_s_hour(limited):
    """A name already taken, or a replayed signature, stores nothing and so costs no slot: otherwise throwaway keys
    asking for a taken name would spend the node's hour of registrations for everyone."""
    owner = Account.create()
    create(limited, "taken", owner)
    for _ in range(3):
        with pytest.raises(LedgerError) as refused:
            create(limited, "taken", Account.create())
        assert refused.value.status == 409 and refused.value.field == "name"
    create(limited, "mine", Account.create())
    create(limited, "also-mine", Account.create())  # the node's third of the hour is still there
    assert [d.name for d in limited.datanets()] == ["taken", "mine", "also-mine"]


def test_a_creation_the_database_refuses_spends_nobody_s_hour(limited, monkeypatch):
    """PostgreSQL refuses values SQLite stores (a NUL in text): such a creation stored nothing, but kept its slot,
    so 60 of them from throwaway keys shut Datanet creation for everyone for an hour."""
    from sqlalchemy.exc import DataError

    from ledgerlm.datanets import service

    def refused_insert(table):
        raise DataError("INSERT", {}, Exception("text fields cannot contain NUL (0x00) bytes"))

    with monkeypatch.context() as m:
        m.setattr(service, "insert", refused_insert)
        for i in range(4):
            with pytest.raises(LedgerError) as refused:
                create(limited, f"nul-{i}", Account.create())
            assert refused.value.status == 400 and refused.value.status != 429
    for name in ("after-1", "after-2", "after-3"):  # the node's hour is whole
        create(limited, name, Account.create())
    assert [d.name for d in limited.datanets()] == ["after-1", "after-2", "after-3"]


def test_fresh_keys_cannot_make_the_node_anchor_versions_without_end(home, tmp_path):
    config = home.load_config()
    config.versions_per_hour, config.versions_per_owner_per_hour = 3, 2
    home.save_config(config)
    owner, other = Account.create(), Account.create()  # fresh keys, no ETH
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test") as http:
        client = NodeClient(http)

        def one_more(name, account, i):  # one new accepted record, then a version of it
            client.contribute(name, [write_jsonl(tmp_path / f"{name}-{i}.jsonl",
                                                 [{"question": f"q{i}?", "answer": f"a{i}."}])], account)
            for c in client.contributions(name, state="pending"):
                client.review(c.id, account, accept=True)
            return client.publish(name, account)

        publish_qa(client, tmp_path, owner, [(owner, [{"question": "q?", "answer": "a."}])], name="mine")
        one_more("mine", owner, 1)
        with pytest.raises(LedgerError) as refused:
            one_more("mine", owner, 2)
        assert refused.value.status == 429 and refused.value.field == "owner"
        assert [v.number for v in client.datanet("mine").versions] == [1, 2]  # the refused one is nowhere
        publish_qa(client, tmp_path, other, [(other, [{"question": "q?", "answer": "a."}])], name="theirs")
        with pytest.raises(LedgerError) as refused:
            one_more("theirs", other, 1)  # the node's fourth of the hour
        assert refused.value.status == 429 and refused.value.field == "datanet"


def test_datanets_are_listed_in_pages_in_creation_order(client, alice, http):
    for name in ("p1", "p2", "p3"):
        create(client, name, alice)
    page = http.get("/datanets", params={"offset": 1, "limit": 1}).json()
    assert [d["name"] for d in page] == ["p2"]
    assert http.get("/datanets", params={"limit": 0}).status_code in (400, 422)
    assert http.get("/datanets", params={"limit": 1001}).status_code in (400, 422)


def test_a_listing_page_ends_at_its_byte_budget_and_the_client_reads_every_page(client, alice, http, monkeypatch):
    from ledgerlm.api import datanets as routes

    for i in range(5):
        client.create_datanet(DatanetSpec(name=f"d{i}", description="x" * 4000, schema=QA_SCHEMA), alice)
    monkeypatch.setattr(routes, "LISTING_BYTES", 9000)  # two long descriptions a page
    first = http.get("/datanets")
    assert [d["name"] for d in first.json()] == ["d0", "d1"]
    assert first.headers["x-ledgerlm-next-offset"] == "2"
    last = http.get("/datanets", params={"offset": 4})
    assert [d["name"] for d in last.json()] == ["d4"] and "x-ledgerlm-next-offset" not in last.headers
    assert [d.name for d in client.datanets()] == [f"d{i}" for i in range(5)]


@pytest.mark.parametrize(("field", "value", "says"), [
    ("description", "x" * 4097, "at most 4,096 characters"),
    ("licence", "L" * 129, "1-128 printable characters"),
    ("licence", "", "1-128 printable characters"),
    ("licence", "MIT\nrest", "1-128 printable characters"),
])
def test_a_spec_s_text_fields_are_bounded(http, alice, field, value, says):
    """Every listing carries the description and the licence goes on chain at the node's expense: a spec past
    either bound is refused, naming the field, before anything is stored."""
    spec = {"name": "bounded", "schema": QA_SCHEMA, field: value}
    answer = http.post("/datanets", json={"spec": spec, "action": {}})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == field and says in error["message"]
    assert http.get("/datanets/bounded").status_code == 404


def test_a_schema_is_bounded(http):
    schema = {**QA_SCHEMA, "description": "y" * (65 * 1024)}
    answer = http.post("/datanets", json={"spec": {"name": "big-schema", "schema": schema}, "action": {}})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "schema"


def test_the_registration_limits_are_positive_node_settings(home):
    assert NodeConfig().datanets_per_hour == 60 and NodeConfig().datanets_per_owner_per_hour == 10
    config = home.load_config()
    config.datanets_per_owner_per_hour = 0
    home.save_config(config)
    with pytest.raises(ConfigError) as refused:
        home.load_config()
    assert refused.value.field == "datanets_per_owner_per_hour"
