"""An idempotent repeat of a call answers with the first call's receipt as the caller may read it: the records of
a private Datanet's model are withheld from a consumer who is not one of its members."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import update

from ledgerlm.node import Node
from ledgerlm.store.schema import datanets

from .conftest import ask


def _visibility(world, value: str) -> None:
    node = Node.open(world.home)
    try:
        with node.db.begin() as conn:
            conn.execute(update(datanets).where(datanets.c.name == "colours").values(visibility=value))
    finally:
        node.close()


def test_a_repeated_call_withholds_a_private_datanets_records_from_a_consumer_who_is_no_member(server, world):
    _visibility(world, "private")
    try:
        first = ask(server, world.key, "facts-a", idempotency="replay-privacy-1")
        assert first.status_code == 200, first.text
        rid = first.json()["id"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{server}/receipts/{rid}").json()["receipt"]["state"] != "final":
            assert time.monotonic() < deadline, "the receipt was never attributed"
            time.sleep(0.2)
        again = ask(server, world.key, "facts-a", idempotency="replay-privacy-1")
        assert again.headers.get("Idempotent-Replayed") == "true"
        attribution = again.json()["x_ledgerlm_receipt"]["attribution"]
        assert attribution is not None and "examples" not in attribution and "contributions" not in attribution
        assert {"examples", "contributions"} <= set(attribution["withheld"])
        assert "evidence_bps" in attribution
    finally:
        _visibility(world, "public")
