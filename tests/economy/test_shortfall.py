"""A consumer who lowers or revokes their cap after an epoch was planned: the close, resumed late, debits no more
than the cap in force, pays out only what it debited (each receipt re-split, every split exact), records the
shortfall, and completes instead of reverting until the consumer restores the cap."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from ledgerlm.chain import cap_nonce
from ledgerlm.economy import list_epochs, receipt_settlement, show_epoch
from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.errors import LedgerError
from ledgerlm.store.schema import contributions, epoch_debits, receipts
from tests.economy.helpers import fund_consumer, key, plan_and_crash, slow_chain, write_receipt

from ..datanets.conftest import publish_qa

UNIT = 10**18
DEV = key("developer")
GRACE = 15 * 60




def _planned_then_crashed(node):
    """Alice owes two calls and Bob one; the close is planned, then the node dies before settling."""
    alice, bob = key("alice"), key("bob")
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    fund_consumer(node, bob, 10 * UNIT, 5 * UNIT)
    for who, fee in ((alice, UNIT), (alice, UNIT // 3), (bob, 2 * UNIT + 7)):
        write_receipt(node, who.address, fee, DEV.address)
    plan_and_crash(node)
    return alice, bob


def _resume(node):
    summary = node.economy.finish()
    files = published_files(node.db, 1, node.contracts)
    funding = node.contracts.distributor.epoch(node.economy.chain_epoch(1))
    assert verify_epoch(files["payouts"], files["receipts"], funding) == []
    return summary, files, funding


def test_a_revocation_long_before_the_late_settlement_leaves_that_consumer_unpaid_and_the_close_completes(node):
    alice, bob = _planned_then_crashed(node)
    c = node.contracts
    c.escrow.set_spending_cap(alice, node.account.address, 0, cap_nonce())  # `apikey cap --as alice --cap 0`
    node.chain.advance_time(GRACE + 60)  # the close resumes after the revocation's grace

    summary, files, funding = _resume(node)

    owed_bob = 2 * UNIT + 7
    assert summary["state"] == "published"
    assert c.escrow.balance_of(alice.address) == 10 * UNIT  # never debited above her cap of 0
    assert c.escrow.balance_of(bob.address) == 10 * UNIT - owed_bob
    assert int(summary["charged"]) == int(summary["total"]) == funding.total == owed_bob
    assert int(summary["shortfall"]) == UNIT + UNIT // 3
    assert summary["short"][alice.address]["charged"] == "0"
    assert "revoked" in summary["short"][alice.address]["reason"]
    # the unpaid fees are not distributed: the developer and node earn from Bob's call alone
    assert int(earnings(node.db, c.distributor, DEV.address)["epochs"][0]["amount"]) == owed_bob * 4000 // 10_000
    alice_receipts = [r for r in files["receipts"]["receipts"] if r["consumer"] == alice.address]
    assert {r["charged"] for r in alice_receipts} == {"0"} and all(r["payouts"] == [] for r in alice_receipts)
    debit = next(d for d in files["payouts"]["debits"] if d["consumer"] == alice.address)
    assert (debit["state"], debit["amount"], debit["owed"]) == ("short", "0", str(UNIT + UNIT // 3))
    listed = next(e for e in list_epochs(node.db) if e["epoch"] == 1)  # what `epoch list --json` shows
    assert listed["shortfall"] == str(UNIT + UNIT // 3) and listed["short"][alice.address]["charged"] == "0"
    shown = {d["consumer"]: d for d in show_epoch(node.db, 1)["debits"]}  # what `epoch show 1 --json` shows
    assert (shown[alice.address]["state"], shown[alice.address]["owed"]) == ("short", str(UNIT + UNIT // 3))
    assert (shown[bob.address]["state"], shown[bob.address]["amount"]) == ("planned", str(owed_bob))


def test_a_lowered_cap_cuts_the_debit_and_re_splits_that_consumers_receipts_exactly(node):
    alice, bob = _planned_then_crashed(node)
    c = node.contracts
    cap = UNIT // 2 + 1
    c.escrow.set_spending_cap(alice, node.account.address, cap, cap_nonce())
    node.chain.advance_time(GRACE + 60)

    summary, files, funding = _resume(node)

    assert summary["state"] == "published"
    assert c.escrow.spending_cap(alice.address, node.account.address).spent == cap  # charged up to the cap, no more
    assert c.escrow.balance_of(alice.address) == 10 * UNIT - cap
    assert int(summary["shortfall"]) == UNIT + UNIT // 3 - cap
    assert funding.total == int(summary["total"]) == cap + 2 * UNIT + 7
    cut = {r["fee"]: r for r in files["receipts"]["receipts"] if r["consumer"] == alice.address}
    assert sum(int(r["charged"]) for r in cut.values()) == cap  # the debit, split over her receipts by fee
    assert abs(4 * int(cut[str(UNIT)]["charged"]) - 3 * cap) <= 4  # in proportion to the fees, 1 : 1/3
    for r in cut.values():
        assert sum(int(p["amount"]) for p in r["payouts"]) == int(r["charged"])
        assert sum(int(p["amount"]) for p in r["signed_payouts"]) == int(r["fee"])
    with node.db.connect() as conn:
        row = conn.execute(select(epoch_debits).where(epoch_debits.c.consumer == alice.address)).mappings().one()
        settled = conn.execute(select(receipts.c.settled_epoch).where(receipts.c.consumer == alice.address)).scalars()
        assert (row["state"], row["amount"]) == ("short", str(cap)) and set(settled) == {1}


def test_a_lowering_within_its_grace_still_debits_the_planned_amount(node):
    alice, _ = _planned_then_crashed(node)
    c = node.contracts
    c.escrow.set_spending_cap(alice, node.account.address, 0, cap_nonce())  # seconds before the chunk is sent

    summary, _, _ = _resume(node)

    assert summary["shortfall"] == "0" and summary["short"] == {}
    assert c.escrow.balance_of(alice.address) == 10 * UNIT - UNIT - UNIT // 3


def test_a_close_resumed_while_its_chunk_may_still_land_waits_instead_of_cutting_and_sending_it_again(node):
    """A settlement sent and not mined may still land: cut to a cap lowered since and sent again, both could
    land (the first for the whole plan), leaving the distributor funded above every root the node can post."""
    alice, bob = _planned_then_crashed(node)
    with slow_chain(node):
        with pytest.raises(LedgerError) as sent:
            node.economy.finish()
        assert sent.value.status == 504  # sent, not mined
        nonce = node.chain.w3.eth.get_transaction_count(node.account.address, "pending")
        with pytest.raises(EconomyError) as waits:
            node.economy.finish()
        assert (waits.value.status, waits.value.field) == (503, "epoch") and "not mined yet" in str(waits.value)
        assert node.chain.w3.eth.get_transaction_count(node.account.address, "pending") == nonce  # nothing sent

    summary, _, funding = _resume(node)  # it landed on leaving: the close records it and completes

    assert summary["state"] == "published" and summary["shortfall"] == "0"
    assert funding.total == int(summary["total"]) == UNIT + UNIT // 3 + 2 * UNIT + 7
    assert node.contracts.escrow.balance_of(alice.address) == 10 * UNIT - UNIT - UNIT // 3


def test_a_re_plan_splits_each_pool_by_the_weights_its_plan_used(client, tmp_path, alice, bob, carol):
    node = client.http.app.state.node
    facts = [{"question": f"What colour is the {t}?", "answer": f"The {t} is {c}."}
             for t, c in (("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"))]
    publish_qa(client, tmp_path, alice, [(bob, facts[:2]), (carol, facts[2:])])
    payer, other = key("payer"), key("other")
    fund_consumer(node, payer, 10 * UNIT, 5 * UNIT)
    fund_consumer(node, other, 10 * UNIT, 5 * UNIT)
    write_receipt(node, payer.address, 3 * UNIT + 1, DEV.address, datanet="colours")
    write_receipt(node, other.address, UNIT, DEV.address, datanet="colours")
    plan_and_crash(node)
    planned = {p["kind"]: p for p in published_files(node.db, 1, node.contracts)["payouts"]["pools"]}["data_pool"]
    with node.db.begin() as conn:  # bob's data leaves after the plan: the plan already counted it
        conn.execute(update(contributions).where(contributions.c.contributor == bob.address).values(state="withdrawn"))
    node.contracts.escrow.set_spending_cap(payer, node.account.address, UNIT, cap_nonce())
    node.chain.advance_time(GRACE + 60)

    summary, files, _ = _resume(node)

    pool = {p["kind"]: p for p in files["payouts"]["pools"]}["data_pool"]
    assert int(summary["shortfall"]) == 2 * UNIT + 1 and int(pool["amount"]) < int(planned["amount"])
    assert set(pool["split"]) == set(planned["split"]) and int(pool["split"][bob.address]) > 0
    assert sum(int(v) for v in pool["split"].values()) == int(pool["amount"])


def _earned(node, account: str) -> int:
    return sum(int(e["amount"]) for e in earnings(node.db, node.contracts.distributor, account)["epochs"])


def test_what_a_cut_left_unpaid_stays_owed_and_a_later_close_the_cap_allows_charges_it_to_the_same_payees(node):
    alice, bob = _planned_then_crashed(node)
    c = node.contracts
    owed = UNIT + UNIT // 3
    cap = UNIT // 2 + 1
    c.escrow.set_spending_cap(alice, node.account.address, cap, cap_nonce())
    node.chain.advance_time(GRACE + 60)
    first, _, _ = _resume(node)
    assert int(first["shortfall"]) == owed - cap and "stays owed" in first["short"][alice.address]["reason"]

    # Epoch 2, the same cap period: alice's cap is spent, so what she owes waits; bob's new call is charged.
    write_receipt(node, bob.address, UNIT, DEV.address)
    second = node.economy.close()
    assert second["epoch"] == 2 and int(second["charged"]) == UNIT
    debits = {d["consumer"]: d for d in show_epoch(node.db, 2)["debits"]}
    assert debits[alice.address]["state"] == "unpaid" and debits[alice.address]["owed"] == str(owed - cap)
    assert c.escrow.balance_of(alice.address) == 10 * UNIT - cap

    # Alice raises her cap again: epoch 3 charges the rest, paid line by line to the payees of her receipts.
    c.escrow.set_spending_cap(alice, node.account.address, 5 * UNIT, cap_nonce())
    third = node.economy.close()
    assert third["epoch"] == 3 and int(third["charged"]) == owed - cap == int(third["total"])
    assert c.escrow.balance_of(alice.address) == 10 * UNIT - owed  # exactly her fees, over two closes
    files = published_files(node.db, 3, node.contracts)
    funding = c.distributor.epoch(node.economy.chain_epoch(3))
    assert verify_epoch(files["payouts"], files["receipts"], funding) == []
    assert {r["arrears_from"] for r in files["receipts"]["receipts"]} == {1}
    shown = show_epoch(node.db, 1)
    alice_debit = next(d for d in shown["debits"] if d["consumer"] == alice.address)
    assert alice_debit["carried"] == str(owed - cap) and alice_debit["charged_in"] == [3]
    assert show_epoch(node.db, 3)["arrears"] == str(owed - cap)
    cut_receipt = next(r for r in files["receipts"]["receipts"] if r["arrears_from"] == 1)["id"]
    settled = receipt_settlement(node.db, cut_receipt)  # what `receipts show ID` reports under "settlement"
    assert settled["epoch"] == 1 and [(a["from_epoch"], a["charged_in"]) for a in settled["arrears"]] == [(1, 3)]
    # Tokens in = tokens out: each payee earned, over the three epochs, exactly what the signed splits name.
    signed = {}
    with node.db.connect() as conn:
        for lines in conn.execute(select(receipts.c.payouts)).scalars():
            for p in lines:
                signed[p["account"]] = signed.get(p["account"], 0) + int(p["amount"])
    for account, amount in signed.items():
        if account:  # the pools' lines name no account; they are split by weight
            assert _earned(node, account) == amount, account
    assert node.economy.close()["state"] == "empty"  # nothing is owed twice
