"""A swept epoch on the node: the admin's sweep of an epoch the node never posted does not stop the closes after
it, and a payout whose claim window has passed is no longer offered as claimable."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from ledgerlm.economy.earnings import earnings, relay_claim
from ledgerlm.economy.errors import EconomyError
from ledgerlm.identity.node_keys import ADMIN_PASSPHRASE_ENV, unlock_keystore
from ledgerlm.node import Node
from ledgerlm.store.schema import receipts
from tests.economy.helpers import fund_consumer, key, write_receipt

UNIT = 10**18
DEV = key("developer")


class Outage(Exception):
    pass


def _admin(node, home):
    admin = unlock_keystore(home.admin_key_path, os.environ[ADMIN_PASSPHRASE_ENV], "admin")
    node.chain.send_eth(node.faucet_account, admin.address, 10**18)
    return admin


def _a_paid_call(node):
    """alice funded, and one call of hers to pay for: the key that pays."""
    alice = key("alice")
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    write_receipt(node, alice.address, UNIT, DEV.address)
    return alice


def test_an_epoch_swept_before_it_was_posted_is_given_up_and_the_next_close_settles(home):
    node = Node.open(home)
    try:
        alice = _a_paid_call(node)

        def crash(number, step):
            if step == "settle":
                raise Outage("the node went down after settling, before posting")

        node.economy.after_step = crash
        with pytest.raises(Outage):
            node.economy.close()
        node.economy.after_step = None
        c = node.contracts
        node.chain.advance_time(c.distributor.claim_window_seconds() + 1)  # down past the claim window
        c.distributor.sweep(_admin(node, home), node.economy.chain_epoch(1))

        later = write_receipt(node, alice.address, UNIT // 2, DEV.address)
        given_up = node.economy.close()
        assert given_up["epoch"] == 1 and given_up["state"] == "swept"
        assert "swept to the treasury" in given_up["message"]
        assert not [e for e in earnings(node.db, c.distributor, DEV.address)["epochs"] if e["claimable"]]

        closed = node.economy.close()  # the close after it goes on as ever
        assert closed["epoch"] == 2 and closed["state"] == "published"
        with node.db.connect() as conn:
            assert conn.execute(select(receipts.c.settled_epoch).where(receipts.c.id == later)).scalar() == 2
        claim = relay_claim(node.db, c.distributor, node.account, DEV.address, 2)
        assert int(claim["amount"]) > 0
    finally:
        node.close()


def test_a_payout_swept_after_its_claim_window_is_not_offered_as_claimable(home):
    node = Node.open(home)
    try:
        _a_paid_call(node)
        assert node.economy.close()["state"] == "published"
        c = node.contracts
        node.chain.advance_time(c.distributor.claim_window_seconds() + 1)
        c.distributor.sweep(_admin(node, home), node.economy.chain_epoch(1))

        owed = earnings(node.db, c.distributor, DEV.address)
        entry = owed["epochs"][0]
        assert (entry["state"], entry["claimable"], entry["claimed"]) == ("swept", False, False)
        assert owed["unclaimed"] == "0" and int(owed["total"]) > 0
        with pytest.raises(EconomyError, match="swept to the treasury") as refused:
            relay_claim(node.db, c.distributor, node.account, DEV.address, 1)
        assert refused.value.field == "epoch"
    finally:
        node.close()


def test_an_open_epoch_that_payments_funded_and_the_admin_swept_is_given_up_at_the_next_close(home):
    """Paid access funds the open epoch at once, so a node that never closes makes it sweepable a claim window
    later; the next close gives it up, opens the next, and charges the calls the swept epoch held there."""
    from ledgerlm.economy.epochs import open_epoch

    node = Node.open(home)
    try:
        alice = key("alice")
        fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
        held = write_receipt(node, alice.address, UNIT, DEV.address)
        with node.db.begin() as conn:
            number = open_epoch(conn)
        c, admin = node.contracts, _admin(node, home)
        # what an access payment does through the escrow: funds the open epoch at once
        c.distributor.grant_role(admin, "FUNDER_ROLE", node.faucet_account.address)
        c.distributor.fund(node.faucet_account, node.economy.chain_epoch(number), UNIT)
        node.chain.advance_time(c.distributor.claim_window_seconds() + 1)
        c.distributor.sweep(admin, node.economy.chain_epoch(number))

        closed = node.economy.close()
        assert closed["epoch"] == number + 1 and closed["state"] == "published"
        assert node.economy.summary(number)["state"] == "swept"
        with node.db.connect() as conn:
            assert conn.execute(select(receipts.c.settled_epoch).where(receipts.c.id == held)).scalar() == number + 1
    finally:
        node.close()


def test_a_claim_that_lands_second_of_two_sent_at_once_is_told_it_was_claimed(home, monkeypatch):
    """Both read the payout as unclaimed; the chain refuses the second, which was answered with the raw contract
    revert (400) instead of the 409 any later claim gets."""
    import ledgerlm.economy.earnings as earnings_module

    node = Node.open(home)
    try:
        _a_paid_call(node)
        assert node.economy.close()["state"] == "published"
        c = node.contracts
        unclaimed = earnings(node.db, c.distributor, DEV.address)
        assert int(relay_claim(node.db, c.distributor, node.account, DEV.address, 1)["amount"]) > 0
        monkeypatch.setattr(earnings_module, "earnings", lambda *_args: unclaimed)  # read before the first landed
        with pytest.raises(EconomyError, match="has already claimed epoch 1") as refused:
            relay_claim(node.db, c.distributor, node.account, DEV.address, 1)
        assert (refused.value.status, refused.value.field) == (409, "epoch")
    finally:
        node.close()
