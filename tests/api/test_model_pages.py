"""`GET /models` comes a page at a time, oldest first, and a page never shows or names (in its next-page header)
a model the reader may not see; the client follows the pages."""

from __future__ import annotations

from sqlalchemy import insert, update

from ledgerlm.datanets import DatanetSpec
from ledgerlm.factory.jobs import NEXT_AFTER_HEADER
from ledgerlm.store.schema import datanets, models
from tests.datanets.conftest import QA_SCHEMA


def _model(node, model_id: str, datanet: str, created_at: int, published: bool = False) -> None:
    with node.db.begin() as conn:
        conn.execute(insert(models).values(
            id=model_id, developer="0x" + "22" * 20, base_model="tiny", datanet=datanet, version=1,
            version_root="0x" + "11" * 32, card={}, metrics={}, path="/nonexistent", created_at=created_at,
            chain_tx="0x01" if published else None))


def test_models_are_listed_a_page_at_a_time_without_naming_hidden_ones(client, alice):
    node = client.http.app.state.node
    for name in ("open", "secret"):
        client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA), alice)
    with node.db.begin() as conn:
        conn.execute(update(datanets).where(datanets.c.name == "secret").values(visibility="private"))
    # ties in created_at are ordered by id; hidden models sit between and at the ends of pages
    for model_id, datanet, at, published in (("a-open", "open", 1, False), ("b-hidden", "secret", 2, False),
                                             ("c-open", "open", 2, False), ("d-hidden", "secret", 2, False),
                                             ("e-published", "secret", 3, True), ("f-open", "open", 4, False),
                                             ("g-hidden", "secret", 5, False)):
        _model(node, model_id, datanet, at, published)

    pages, after = [], None
    while True:
        response = client.http.get("/models", params={"limit": 2} | ({"after": after} if after else {}))
        assert response.status_code == 200
        pages.append([m["id"] for m in response.json()])
        after = response.headers.get(NEXT_AFTER_HEADER)
        assert after is None or "hidden" not in after
        if after is None:
            break
    assert pages == [["a-open", "c-open"], ["e-published", "f-open"]]
    assert [m["id"] for m in client.factory.models()] == ["a-open", "c-open", "e-published", "f-open"]
    assert [m["id"] for m in client.factory.models(limit=3)] == ["a-open", "c-open", "e-published"]

    # a hidden model is as unknown as one that does not exist
    for missing in ("b-hidden", "nope"):
        refused = client.http.get("/models", params={"after": missing})
        assert refused.status_code == 404 and refused.json()["error"]["field"] == "after"
        assert refused.json()["error"]["message"] == f"no model {missing!r} to list after"
    assert client.http.get("/models", params={"limit": 501}).status_code == 422
