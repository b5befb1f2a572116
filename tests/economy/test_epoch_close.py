"""Closing an epoch pays every paid receipt exactly once, survives kill -9 at every step, and anyone can
verify it from the published files and the chain."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import select

from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings
from ledgerlm.economy.payouts import payout_tree
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node
from ledgerlm.store.schema import receipts
from tests.economy.helpers import fund_consumer, key, write_receipt

UNIT = 10**18
DEV = key("developer")


def _world(node):
    """Two paying consumers and one without a cap; three receipts each for the payers."""
    alice, bob, carol = key("alice"), key("bob"), key("carol")
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    fund_consumer(node, bob, 10 * UNIT, 5 * UNIT)
    node.chain.send_eth(node.faucet_account, carol.address, 10**18)
    for who, fee in ((alice, UNIT), (alice, UNIT // 3), (bob, 2 * UNIT + 7), (carol, UNIT)):
        write_receipt(node, who.address, fee, DEV.address)
    return alice, bob, carol


def _supply_holders(node, accounts) -> int:
    c = node.contracts
    held = sum(c.token.balance_of(a) for a in accounts)
    return held + sum(c.token.balance_of(x) for x in (c.escrow.address, c.distributor.address, c.staking.address))


def test_close_settles_paid_receipts_once_and_everyone_claims_exactly_what_they_are_owed(node):
    alice, bob, carol = _world(node)
    c = node.contracts

    summary = node.economy.close()
    again = node.economy.close()  # a second close with nothing new leaves the next epoch open

    assert summary["state"] == "published" and summary["epoch"] == 1
    assert again["state"] == "empty"
    charged = UNIT + UNIT // 3 + 2 * UNIT + 7
    assert int(summary["charged"]) == charged == int(summary["total"])
    assert c.escrow.balance_of(alice.address) == 10 * UNIT - UNIT - UNIT // 3
    assert c.escrow.balance_of(carol.address) == 0  # carol never deposited nor signed: nothing charged
    assert c.distributor.epoch(node.economy.chain_epoch(1)).total == charged
    for account in (node.account.address, DEV.address):
        owed = earnings(node.db, c.distributor, account)["epochs"][0]
        c.distributor.claim(node.account, node.economy.chain_epoch(1), account, int(owed["amount"]), owed["proof"])
    assert c.token.balance_of(DEV.address) == sum(charged_part * 4000 // 10_000 for charged_part in
                                                  (UNIT, UNIT // 3, 2 * UNIT + 7))
    assert c.distributor.epoch(node.economy.chain_epoch(1)).unclaimed == 0
    with node.db.connect() as conn:
        states = dict(conn.execute(select(receipts.c.consumer, receipts.c.settled_epoch)).all())
    assert states[carol.address] is None  # carol's receipt waits for a later epoch, not lost
    # Conservation: what the treasury gave out is all still somewhere.
    everyone = [node.faucet_account.address, alice.address, bob.address, carol.address, node.account.address,
                DEV.address]
    assert _supply_holders(node, everyone) == c.token.total_supply()


def test_verify_catches_a_tampered_receipt_payout_file_or_root(node):
    _world(node)
    node.economy.close()
    files = published_files(node.db, 1, node.contracts)
    funding = node.contracts.distributor.epoch(node.economy.chain_epoch(1))
    assert verify_epoch(files["payouts"], files["receipts"], funding) == []

    receipt_tampered = copy.deepcopy(files["receipts"])
    receipt_tampered["receipts"][0]["payouts"][0]["amount"] = str(int(
        receipt_tampered["receipts"][0]["payouts"][0]["amount"]) + 1)
    receipt_tampered["receipts"][0]["fee"] = str(int(receipt_tampered["receipts"][0]["fee"]) + 1)
    assert verify_epoch(files["payouts"], receipt_tampered, funding)

    payouts_tampered = copy.deepcopy(files["payouts"])
    payouts_tampered["payouts"][0]["amount"] = str(int(payouts_tampered["payouts"][0]["amount"]) - 1)
    payouts_tampered["payouts"][1]["amount"] = str(int(payouts_tampered["payouts"][1]["amount"]) + 1)
    assert verify_epoch(payouts_tampered, files["receipts"], funding)

    wrong_root = type(funding)(1, "0x" + "ab" * 32, funding.total, funding.claimed, funding.funded_at,
                               funding.posted_at, funding.swept)
    assert any("chain's root" in p for p in verify_epoch(files["payouts"], files["receipts"], wrong_root))


def test_the_payout_tree_refuses_two_leaves_for_one_account():
    with pytest.raises(LedgerError, match="two payout leaves"):
        payout_tree([(DEV.address, 1), (DEV.address.lower(), 2)])


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from ledgerlm.config import Home
    from ledgerlm.node import Node
    node = Node.open(Home(sys.argv[1]))
    target = sys.argv[2]
    def hook(number, step):
        if step == target:
            os.kill(os.getpid(), signal.SIGKILL)
    node.economy.after_step = hook
    node.economy.close()
""")


def _killed_after(home, tmp_path, step: str):
    """The world's epoch closed by another process that is killed (-9) right after `step`; returns the payers."""
    node = Node.open(home)
    try:
        alice, bob, _ = _world(node)
    finally:
        node.close()
    script = tmp_path / "crash.py"
    script.write_text(CRASHER)
    done = subprocess.run([sys.executable, str(script), str(home.root), step], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return alice, bob


@pytest.mark.parametrize("step", ["plan", "settle", "rewards", "post", "publish"])
def test_kill_9_after_any_step_then_a_rerun_finishes_without_paying_twice(home, tmp_path, step):
    alice, bob = _killed_after(home, tmp_path, step)

    node = Node.open(home)
    try:
        rerun = node.economy.close()  # after the last step the epoch was already done: nothing new to close
        assert rerun["state"] == ("empty" if step == "publish" else "published")
        summary = node.economy.summary(1)
        c = node.contracts
        charged = UNIT + UNIT // 3 + 2 * UNIT + 7
        assert summary["state"] == "published" and summary["epoch"] == 1
        assert c.distributor.epoch(node.economy.chain_epoch(1)).total == charged and c.distributor.epoch(node.economy.chain_epoch(1)).root == summary["root"]
        assert c.escrow.balance_of(alice.address) + c.escrow.balance_of(bob.address) == 20 * UNIT - charged
        assert verify_epoch(*published_files(node.db, 1, c).values(), c.distributor.epoch(node.economy.chain_epoch(1))) == []
        assert (home.epochs / "1" / "payouts.json").exists()
    finally:
        node.close()


def test_serve_closes_epochs_on_its_cadence(node):
    import time

    from ledgerlm.api.economy import start_epoch_cadence

    _world(node)
    node.config.epoch_seconds = 1
    stop = start_epoch_cadence(node)
    try:
        deadline = time.monotonic() + 120
        while node.contracts.distributor.epoch(node.economy.chain_epoch(1)) is None or node.contracts.distributor.epoch(node.economy.chain_epoch(1)).root is None:
            assert time.monotonic() < deadline, "the cadence never closed the epoch"
            time.sleep(0.5)
    finally:
        stop()
    assert node.economy.summary(1)["state"] == "published"


def test_a_cap_the_escrow_cannot_hold_is_refused_and_a_revoked_one_never_stops_a_close(node):
    """A cap past the escrow's 96 bits is refused when signed; a consumer who revokes on chain after calling is
    left unpaid (their receipts wait) while the others settle."""
    from ledgerlm.chain import cap_nonce
    from ledgerlm.economy import record_spending_cap
    from ledgerlm.store.schema import epoch_debits

    alice, bob, carol = _world(node)
    c = node.contracts
    deadline = node.chain.head().timestamp + 3600
    huge = 2**200
    signed = c.escrow.sign_spending_cap(alice, node.account.address, huge, cap_nonce(), deadline)
    with pytest.raises(LedgerError, match="cap must be an amount below") as refused:
        record_spending_cap(node.db, c.escrow, node.account, consumer=alice.address, settler=node.account.address,
                            cap=huge, nonce=signed.nonce, deadline=deadline, signature="0x" + signed.signature.hex())
    assert refused.value.field == "cap"
    c.escrow.set_spending_cap(alice, node.account.address, 0, cap_nonce())
    summary = node.economy.close()
    assert summary["state"] == "published"
    with node.db.connect() as conn:
        states = dict(conn.execute(select(epoch_debits.c.consumer, epoch_debits.c.state)).all())
    assert states[alice.address] == "unpaid" and states[bob.address] != "unpaid"


def test_a_close_killed_midway_is_finished_by_the_next_start(home, tmp_path):
    _killed_after(home, tmp_path, "settle")
    node = Node.start(home)  # what `ledgerlm serve` opens: nobody reruns `epoch close` by hand
    try:
        assert node.started["epoch_close"] == 1 and "errors" not in node.started
        assert node.economy.summary(1)["state"] == "published"
        assert node.contracts.distributor.epoch(node.economy.chain_epoch(1)).root == node.economy.summary(1)["root"]
        assert node.reconcile()["epoch_close"] == 0 and node.economy.summary(2)["state"] == "open"
    finally:
        node.close()


def test_a_close_on_a_fresh_node_is_not_refused_by_a_write_committed_during_its_plan(node):
    """No epoch is open yet, and another writer commits each time the close reads the epochs: the plan's
    read must not be the one that opens the epoch (SQLite refuses such a read's late write at once)."""
    from sqlalchemy import event

    def other_writer(conn, cursor, statement, *_):
        if "FROM epochs" in statement and not conn.get_execution_options().get("write"):
            with node.db.begin() as other:
                other.exec_driver_sql("CREATE TABLE IF NOT EXISTS other_writer (n INTEGER)")
                other.exec_driver_sql("INSERT INTO other_writer VALUES (1)")

    if node.db.postgres:
        pytest.skip("the refused upgrade of a read is SQLite's")
    event.listen(node.db.engine, "after_cursor_execute", other_writer)
    try:
        summary = node.economy.close()
    finally:
        event.remove(node.db.engine, "after_cursor_execute", other_writer)
    assert summary["state"] == "empty"
    with node.db.connect() as conn:
        assert conn.exec_driver_sql("SELECT number, state FROM epochs").all() == [(1, "open")]


def test_a_chunk_that_landed_before_a_crash_keeps_its_transaction_in_the_record(home):
    """The settle landed on chain, then the node stopped before writing it down: the rerun finds the chunk settled
    and records the transaction that settled it (from the escrow's log) rather than none."""
    from ledgerlm.store.schema import epoch_chunks

    node = Node.open(home)
    try:
        _world(node)
        escrow = node.contracts.escrow
        real_settle, landed = escrow.settle, []

        def settle_then_stop(*args, **kwargs):
            landed.append(real_settle(*args, **kwargs).tx_hash)
            raise RuntimeError("the node stopped here")

        escrow.settle = settle_then_stop
        with pytest.raises(RuntimeError, match="stopped here"):
            node.economy.close()
        escrow.settle = real_settle
        assert node.economy.close()["state"] == "published"
        with node.db.connect() as conn:
            recorded = conn.execute(select(epoch_chunks.c.tx).where(epoch_chunks.c.epoch == 1)).scalars().all()
        assert recorded == landed and landed[0]
    finally:
        node.close()
