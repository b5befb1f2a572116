"""A call answered in an epoch settles in that epoch's close, under that epoch's distributor id, even when the node
was restarted (or its config changed) after the answer and before the call's attribution finished."""

from __future__ import annotations

from sqlalchemy import select

from ledgerlm.economy import list_epochs
from ledgerlm.economy.close import published_files
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.node import Node
from ledgerlm.serving.catalog import ServedModel
from ledgerlm.serving.receipts import Completed, ReceiptLog
from ledgerlm.store.schema import receipts
from tests.economy.helpers import SHARES, fund_consumer, key, write_receipt

UNIT = 10**18
DEV = key("developer")


def _answered_before_attribution(node, consumer: str) -> str:
    """A call answered and its receipt written durably, its attribution not run yet (as when the node dies right
    after the response)."""
    model = ServedModel(id="colours-tiny", base_model="tiny", adapter=None, adapter_sha256=None,
                        developer=DEV.address, price_per_1k=10**18, fee_shares=SHARES, datanet=None,
                        datanet_roots=(), created_at=0)
    call = Completed(id="chatcmpl-restart", consumer=consumer, model=model, prompt_tokens=600, completion_tokens=400,
                     request={"messages": [{"role": "user", "content": "What colour is the reef?"}],
                              "completion": "The reef is copper.", "finish_reason": "stop"})
    return ReceiptLog(node.db, node.account, domain=node.domain).write(call, attributing=True).id  # as serving does


def test_a_receipt_left_attributing_by_a_restart_settles_in_its_own_epoch(home):
    alice = key("alice")
    node = Node.open(home)
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    write_receipt(node, alice.address, UNIT // 4, DEV.address)
    pending = _answered_before_attribution(node, alice.address)
    node.close()  # the node stops before attributing; it comes back with a changed config
    config = home.load_config()
    config.serving_attribution = False
    home.save_config(config)
    node = Node.open(home)
    try:
        summary = node.economy.close()

        assert summary["epoch"] == 1 and summary["state"] == "published"
        assert int(summary["charged"]) == UNIT // 4 + UNIT  # both calls of epoch 1: 1,000 tokens at 1 LGR per 1k
        with node.db.connect() as conn:
            rows = dict(conn.execute(select(receipts.c.id, receipts.c.settled_epoch)).all())
            state = conn.execute(select(receipts.c.state).where(receipts.c.id == pending)).scalar()
        assert set(rows.values()) == {1} and state == "final"
        funding = node.contracts.distributor.epoch(node.economy.chain_epoch(1))
        assert funding.total == int(summary["total"])
        files = published_files(node.db, 1, node.contracts)
        assert verify_epoch(files["payouts"], files["receipts"], funding) == []
        assert node.economy.close()["state"] == "empty"  # nothing of epoch 1 was left for epoch 2
        assert [e["epoch"] for e in list_epochs(node.db) if e["root"]] == [1]
    finally:
        node.close()


def test_a_call_answered_while_the_close_is_planned_settles_in_the_epoch_it_was_signed_for(node):
    """The plan reads the epoch's receipts, then writes it in a transaction of its own: a call answered between the
    two was signed for the epoch being closed and would be settled by the next one, under another distributor id.
    The close plans again with it."""
    alice = key("alice")
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    write_receipt(node, alice.address, UNIT // 4, DEV.address)
    reads = []
    cannot_charge = node.economy._cannot_charge

    def answered_meanwhile(consumer, amount, now):
        reads.append(amount)
        if len(reads) == 1:  # the first plan has read the receipts: a call lands in the open epoch
            write_receipt(node, alice.address, UNIT // 8, DEV.address)
        return cannot_charge(consumer, amount, now)

    node.economy._cannot_charge = answered_meanwhile
    summary = node.economy.close()

    assert summary["epoch"] == 1 and reads == [UNIT // 4, UNIT // 4 + UNIT // 8]
    assert int(summary["charged"]) == UNIT // 4 + UNIT // 8
    with node.db.connect() as conn:
        assert set(conn.execute(select(receipts.c.epoch, receipts.c.settled_epoch)).all()) == {(1, 1)}
    files = published_files(node.db, 1, node.contracts)
    assert verify_epoch(files["payouts"], files["receipts"],
                        node.contracts.distributor.epoch(node.economy.chain_epoch(1))) == []


def test_a_close_under_calls_that_never_stop_ends_and_the_next_close_settles_the_late_ones(node):
    """Each plan met a call that landed while it was made; the close still ends, on the last plan, and the calls
    of that plan's window go to the next close (verified there)."""
    alice = key("alice")
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    write_receipt(node, alice.address, UNIT // 4, DEV.address)
    cannot_charge = node.economy._cannot_charge

    def always_a_call_meanwhile(consumer, amount, now):
        write_receipt(node, alice.address, UNIT // 100, DEV.address)
        return cannot_charge(consumer, amount, now)

    node.economy._cannot_charge = always_a_call_meanwhile
    first = node.economy.close()
    node.economy._cannot_charge = cannot_charge
    assert first["epoch"] == 1 and first["state"] == "published"
    second = node.economy.close()
    assert second["epoch"] == 2 and second["state"] == "published"
    with node.db.connect() as conn:
        assert conn.execute(select(receipts.c.id).where(receipts.c.settled_epoch.is_(None))).first() is None
    earlier = {1: published_files(node.db, 1, node.contracts)["receipts"]}
    files = published_files(node.db, 2, node.contracts)
    assert verify_epoch(files["payouts"], files["receipts"],
                        node.contracts.distributor.epoch(node.economy.chain_epoch(2)), earlier=earlier) == []
