"""What a key may still spend counts every fee no escrow debit has taken yet, a planned close's among them, and
leaves out the part of the escrow a withdrawal is taking: a consumer cannot spend the same balance twice."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ledgerlm.serving import Budget
from ledgerlm.serving.errors import PaymentRequiredError

from .helpers import fund_consumer, key, write_receipt

UNIT = 10**18
DEV = key("developer")


class Crash(Exception):
    pass


def _crash_after_plan(number: int, step: str) -> None:
    if step == "plan":
        raise Crash


def test_a_planned_close_counts_against_the_budget_until_its_debit_lands(node):
    alice = key("alice")
    fund_consumer(node, alice, 10 * UNIT, 100 * UNIT)
    budget, account = Budget(node.db, node.account.address, node.contracts.escrow), SimpleNamespace(consumer=alice.address)
    write_receipt(node, alice.address, 10 * UNIT, DEV.address)  # her whole escrow
    assert budget.remaining(account)["remaining"] == "0"

    node.economy.after_step = _crash_after_plan  # planned (its receipts marked settled), nothing on chain yet
    with pytest.raises(Crash):
        node.economy.close()
    node.economy.after_step = None
    standing = budget.remaining(account)
    assert standing["unsettled"] == str(10 * UNIT) and standing["remaining"] == "0"
    with pytest.raises(PaymentRequiredError):
        budget.reserve(account, UNIT, "a call")

    assert node.economy.finish()["state"] == "published"  # the debit lands: the escrow itself is empty now
    standing = budget.remaining(account)
    assert standing["unsettled"] == "0" and standing["escrow_balance"] == "0" and standing["remaining"] == "0"


def test_a_withdrawal_asked_for_is_not_spendable(node):
    alice = key("alice")
    fund_consumer(node, alice, 10 * UNIT, 100 * UNIT)
    budget, account = Budget(node.db, node.account.address, node.contracts.escrow), SimpleNamespace(consumer=alice.address)
    node.contracts.escrow.request_withdrawal(alice, 6 * UNIT)
    standing = budget.remaining(account)
    assert standing["withdrawing"] == str(6 * UNIT) and standing["remaining"] == str(4 * UNIT)
    with pytest.raises(PaymentRequiredError, match="being withdrawn"):
        budget.reserve(account, 5 * UNIT, "a call")
    budget.release(budget.reserve(account, 4 * UNIT, "a call"))


def test_a_compute_jobs_payment_on_its_way_to_the_chain_is_not_spendable(node):
    from sqlalchemy import insert

    from ledgerlm.store.schema import compute_jobs, compute_offers, signed_actions

    alice = key("alice")
    fund_consumer(node, alice, 10 * UNIT, 100 * UNIT)
    budget, account = Budget(node.db, node.account.address, node.contracts.escrow), SimpleNamespace(consumer=alice.address)
    with node.db.begin() as conn:  # a job accepted and paid for, its escrow debit not landed yet
        action = conn.execute(insert(signed_actions).values(
            action="AcceptOffer", signer=alice.address, nonce="1", deadline=0, chain_id=1337, message={},
            signature="0x", created_at=0)).inserted_primary_key[0]
        offer = conn.execute(insert(compute_offers).values(
            provider=DEV.address, kind="serve", hardware="cpu", price=str(6 * UNIT), base_model="tiny", state="open",
            action_id=action, created_at=0)).inserted_primary_key[0]
        conn.execute(insert(compute_jobs).values(
            offer_id=offer, provider=DEV.address, requester=alice.address, kind="serve", spec={}, spec_hash="0x",
            amount=str(6 * UNIT), epoch=1, payment_state="pending", state="accepted", action_id=action,
            created_at=0))
    standing = budget.remaining(account)
    assert standing["access"] == str(6 * UNIT) and standing["remaining"] == str(4 * UNIT)
