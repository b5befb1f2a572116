"""An access payment whose row committed (pending) and whose escrow debit was never sent, the node having died
between: the restarted node resolves it at start, so the payer may pay again at once."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.datanets import DatanetSpec
from ledgerlm.identity import sign_action
from ledgerlm.node import Node

from ..datanets.conftest import QA_SCHEMA, write_jsonl

UNIT = 10**18
PRICE = 3 * UNIT
ROWS = [{"question": f"What is {i}?", "answer": f"It is {i}."} for i in range(4)]


class Died(BaseException):
    pass


def _pay(node, who):
    return sign_action(who, "PayAccess", {"datanet": "vault", "version": 1, "amount": PRICE, "modelId": "",
                                          "purpose": "export"}, domain=node.domain)


def test_a_payment_a_crash_left_pending_is_resolved_at_start_and_may_be_made_again(home, alice, bob, carol, tmp_path, monkeypatch):
    node = Node.open(home)
    with TestClient(create_app(lambda: node), base_url="http://localhost", client=("127.0.0.1", 5)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        client.create_datanet(DatanetSpec(name="vault", schema=QA_SCHEMA, visibility="private"), alice)
        client.add_member("vault", bob.address, alice)
        client.add_member("vault", carol.address, alice)
        client.contribute("vault", [write_jsonl(tmp_path / "b.jsonl", ROWS)], bob)
        client.review_many("vault", [c.id for c in NodeClient(http, reader=alice).contributions("vault")], alice,
                           accept=True)
        client.publish("vault", alice)
        client.set_access_price("vault", PRICE, alice, version=1)
        c = node.contracts
        client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
        client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
        client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
        client.ensure_spending_cap(carol, 10 * UNIT)

        def died(*_a, **_k):
            raise Died()  # the node dies after the pending row committed, before the debit is sent

        monkeypatch.setattr(c.escrow, "settle", died)
        with pytest.raises(Died):
            node.export_licence("vault", 1, carol.address, _pay(node, carol))
        monkeypatch.undo()
    node.close()

    node = Node.start(home)  # as `ledgerlm serve` does: reconcile first
    try:
        assert node.started["payments"] == 1 and "errors" not in node.started
        assert [p["state"] for p in node.access.payments(carol.address)] == ["failed"]
        licence = node.export_licence("vault", 1, carol.address, _pay(node, carol))  # no epoch close needed
        assert licence["tx"]
        assert node.pending_work()["payments"] == 0
    finally:
        node.close()
