"""Values PostgreSQL refuses where SQLite stores or finds nothing (a NUL in text, an id past a 32-bit INTEGER)
are the caller's to fix: a 400 or 422 naming what was wrong, never a 500 that a gateway counts against the node."""

from __future__ import annotations

import pytest

from ledgerlm.api.limits import json_body_problem

BIG = 2**31  # one past PostgreSQL's INTEGER


@pytest.mark.parametrize("path, params, field", [
    ("/datanets/a%00b", {}, "name"),
    ("/receipts", {"model": "a\x00b"}, "model"),
    ("/receipts", {"before": "a\x00b"}, "before"),
    (f"/contributions/{BIG}", {}, "contribution_id"),
    (f"/validation/rounds/{BIG}", {}, "round_id"),
    ("/factory/jobs", {"before": BIG}, "before"),
    (f"/economy/epochs/{BIG}", {}, None),
])
def test_a_value_the_database_refuses_is_a_refusal_naming_it(http, database_url, path, params, field):
    response = http.get(path, params=params)
    assert response.status_code in (200, 400, 404, 422), response.text  # SQLite finds nothing; PostgreSQL refuses
    if response.status_code == 400 and field is not None:
        assert response.json()["error"]["field"] == field, response.text


def test_an_escaped_nul_in_a_json_body_is_refused_before_any_route(http, database_url):
    assert json_body_problem(b'{"reason": "ok\\u0000"}').startswith("a string in the JSON body holds a NUL")
    assert json_body_problem(b'{"reason": "a backslash and u0000: \\\\u0000"}') is None  # text, not a NUL
    response = http.post("/attribution", json={"model": "a\x00b", "prompt": "p", "answer": "a"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "body"


def test_serving_reads_a_published_model_without_its_reports(http, database_url):
    """A chat call's model look-up reads one row's serving columns and its adapter hash, not every model's reports
    (on both databases: the hash is read out of the card's JSON by the database)."""
    from sqlalchemy import insert

    from ledgerlm.store.schema import models

    node = http.app.state.node
    row = dict(developer="0x" + "11" * 20, base_model="tiny", datanet="d", version=1, version_root="0x" + "22" * 32,
               card={"adapter_sha256": "ab" * 32, "metrics": {"eval": {"samples": ["x" * 1000]}}},
               metrics={"eval": {"samples": ["x" * 1000]}}, path="/nowhere", job_id=None,
               fee_policy={"node_bps": 500, "developer_bps": 4000, "contributors_bps": 4500, "validators_bps": 1000},
               created_at=1, price_per_1k="7")
    with node.db.begin() as conn:
        conn.execute(insert(models), [{**row, "id": "served-one", "chain_tx": "0x01"},
                                      {**row, "id": "not-published", "chain_tx": None}])
    (found,) = node.factory.published(base="tiny", model_id="served-one")
    assert found.card == {"adapter_sha256": "ab" * 32} and found.metrics == {} and found.price_per_1k == "7"
    assert [m.id for m in node.factory.published()] == ["served-one"]
    assert node.factory.published_bases() == ["tiny"]
