"""`epoch verify` holds every published receipt to what the node signed: a cut receipt's payouts and owed lines to
the split of its charge over its signed lines, an uncut receipt to the node's signature, an arrear to what its
cutting epoch left owed; files published before receipts carried signatures still verify, saying what went
unchecked."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from eth_account.messages import encode_typed_data

from ledgerlm.chain import cap_nonce
from ledgerlm.economy.close import published_files
from ledgerlm.economy.payouts import payout_tree
from ledgerlm.economy.verify import EpochAudit, audit_epoch, verify_epoch
from ledgerlm.identity import SigningDomain, typed_data
from ledgerlm.serving.receipts import json_hash
from tests.economy.helpers import fund_consumer, key, plan_and_crash, write_receipt

UNIT = 10**18
DEV = key("developer")
GRACE = 15 * 60


@pytest.fixture
def cut_epochs(node):
    """Epoch 1: alice's two calls are cut to the cap she lowered after the plan, bob's call is paid in full.
    Epoch 2: alice restores her cap and the arrears of epoch 1 are charged. Returns the published files."""
    alice, bob = key("alice"), key("bob")
    fund_consumer(node, alice, 10 * UNIT, 5 * UNIT)
    fund_consumer(node, bob, 10 * UNIT, 5 * UNIT)
    for who, fee in ((alice, UNIT), (alice, UNIT // 3), (bob, 2 * UNIT + 7)):
        write_receipt(node, who.address, fee, DEV.address)
    plan_and_crash(node)  # cut below: alice lowers her cap after the plan
    c = node.contracts
    c.escrow.set_spending_cap(alice, node.account.address, UNIT // 2 + 1, cap_nonce())
    node.chain.advance_time(GRACE + 60)
    assert int(node.economy.finish()["shortfall"]) > 0
    c.escrow.set_spending_cap(alice, node.account.address, 5 * UNIT, cap_nonce())
    assert node.economy.close()["epoch"] == 2
    epochs = {}
    for number in (1, 2):
        files = published_files(node.db, number, c)
        epochs[number] = (files["payouts"], files["receipts"], c.distributor.epoch(node.economy.chain_epoch(number)))
    return alice, bob, epochs


def _line(receipt: dict, lines: str, account: str) -> dict:
    return next(p for p in receipt[lines] if p["account"] == account)


def _move(receipt: dict, lines: str, source: str, target: str) -> int:
    """Move what `lines` give `source` onto `target`'s line; returns the amount moved."""
    taken = _line(receipt, lines, source)
    amount = int(taken["amount"])
    receipt[lines].remove(taken)
    _line(receipt, lines, target)["amount"] = str(int(_line(receipt, lines, target)["amount"]) + amount)
    return amount


def _leaves_moved(payout_file: dict, funding, source: str, target: str, amount: int):
    """The payout file and the chain's record as a node would make them to pay `amount` of `source`'s leaf to
    `target`: the leaves, total and root all agree, so only the receipts' own evidence can tell."""
    forged = copy.deepcopy(payout_file)
    leaves = {p["account"]: p for p in forged["payouts"]}
    leaves[source]["amount"] = str(int(leaves[source]["amount"]) - amount)
    leaves[target]["amount"] = str(int(leaves[target]["amount"]) + amount)
    forged["root"] = payout_tree([(p["account"], int(p["amount"])) for p in forged["payouts"]]).root
    return forged, dataclasses.replace(funding, root=forged["root"])


def test_an_honest_epoch_with_cut_receipts_and_arrears_verifies_clean_with_every_receipt_checked(node, cut_epochs):
    alice, _, epochs = cut_epochs
    payouts, receipts, funding = epochs[1]
    cut = [r for r in receipts["receipts"] if "charged" in r]
    assert {r["consumer"] for r in cut} == {alice.address} and all(r["signature"] for r in receipts["receipts"])

    first = audit_epoch(payouts, receipts, funding)
    assert (first.problems, first.unchecked) == ([], [])
    second = audit_epoch(*epochs[2], earlier={1: receipts})
    assert (second.problems, second.unchecked) == ([], [])
    assert {r.get("arrears_from") for r in epochs[2][1]["receipts"]} == {1}
    # without the cutting epoch's file the arrears are named as unchecked, not failed
    alone = audit_epoch(*epochs[2])
    assert alone.problems == [] and alone.unchecked == ["2 arrear(s) of epoch 1 not checked against what that "
                                                        "epoch left owed: its receipts file was not given"]


def test_a_cut_receipts_payouts_paid_to_the_node_instead_of_the_developer_are_reported(node, cut_epochs):
    _, _, epochs = cut_epochs
    payouts, receipts, funding = epochs[1]
    forged = copy.deepcopy(receipts)
    receipt = next(r for r in forged["receipts"] if "charged" in r)
    moved = _move(receipt, "payouts", DEV.address, node.account.address)
    forged_payouts, forged_funding = _leaves_moved(payouts, funding, DEV.address, node.account.address, moved)

    node_paid = int(_line(receipt, "payouts", node.account.address)["amount"])

    problems = verify_epoch(forged_payouts, forged, forged_funding)

    # the payouts still sum to the charge and the leaves, root and chain agree: only the signed split refutes it
    split = f"but its charged {receipt['charged']} split over its signed_payouts gives"
    assert problems == [f"receipt {receipt['id']}: pays developer {DEV.address} 0, {split} {moved}",
                        f"receipt {receipt['id']}: pays node {node.account.address} {node_paid}, {split} "
                        f"{node_paid - moved}"]


def test_forged_owed_payouts_and_an_arrear_that_does_not_charge_them_are_reported(node, cut_epochs):
    _, _, epochs = cut_epochs
    payouts, receipts, funding = epochs[1]
    forged = copy.deepcopy(receipts)
    receipt = next(r for r in forged["receipts"] if "charged" in r)
    _move(receipt, "owed_payouts", DEV.address, node.account.address)

    problems = verify_epoch(payouts, forged, funding)

    assert len(problems) == 2 and all(p.startswith(f"receipt {receipt['id']}: owes ") for p in problems)
    assert any(DEV.address in p for p in problems) and any(node.account.address in p for p in problems)

    # the next epoch charges an arrear to the node that epoch 1 left owed to the developer
    payouts2, receipts2, funding2 = epochs[2]
    forged2 = copy.deepcopy(receipts2)
    arrear = next(r for r in forged2["receipts"] if r["id"] == receipt["id"])
    moved = _move(arrear, "payouts", DEV.address, node.account.address)
    forged_payouts2, forged_funding2 = _leaves_moved(payouts2, funding2, DEV.address, node.account.address, moved)
    assert verify_epoch(payouts2, receipts2, funding2, earlier={1: receipts}) == []

    arrear_problems = verify_epoch(forged_payouts2, forged2, forged_funding2, earlier={1: receipts})

    assert len(arrear_problems) == 2 and all(f"receipt {receipt['id']}: charges " in p and "as arrears of epoch 1"
                                             in p for p in arrear_problems)


def test_a_tampered_uncut_receipt_is_reported_by_the_nodes_signature(node, cut_epochs):
    _, bob, epochs = cut_epochs
    payouts, receipts, funding = epochs[1]
    forged = copy.deepcopy(receipts)
    receipt = next(r for r in forged["receipts"] if r["consumer"] == bob.address)
    assert "charged" not in receipt
    moved = _move(receipt, "payouts", DEV.address, node.account.address)
    forged_payouts, forged_funding = _leaves_moved(payouts, funding, DEV.address, node.account.address, moved)

    assert verify_epoch(forged_payouts, forged, forged_funding) == [
        f"receipt {receipt['id']}: its payouts are not the payout lines the node signed"]

    # re-signing the forged lines with another key does not pass for the node's signature
    other = key("mallory")
    receipt["body"]["payoutsHash"] = json_hash(receipt["payouts"])
    named = forged["signing_domain"]
    domain = SigningDomain(named["chain_id"], named["verifying_contract"])
    receipt["signature"] = "0x" + other.sign_message(encode_typed_data(full_message=typed_data(
        "InferenceReceipt", receipt["body"], domain))).signature.hex().removeprefix("0x")

    assert verify_epoch(forged_payouts, forged, forged_funding) == [
        f"receipt {receipt['id']}: its signature is {other.address}'s, not the node's ({node.account.address})"]


def test_files_published_before_receipts_carried_signatures_verify_and_say_what_went_unchecked(node, cut_epochs):
    _, _, epochs = cut_epochs
    payouts, receipts, funding = epochs[1]
    old = copy.deepcopy(receipts)
    del old["signing_domain"]
    for r in old["receipts"]:
        del r["body"], r["signature"]

    audit = audit_epoch(payouts, old, funding)

    assert audit.problems == []
    assert len(audit.unchecked) == 1 and audit.unchecked[0].startswith("3 receipt(s) unsigned, not checked")
    # an old file's cut receipts are still held to their signed split
    receipt = next(r for r in old["receipts"] if "charged" in r)
    _move(receipt, "payouts", DEV.address, node.account.address)
    assert any(f"receipt {receipt['id']}: pays developer" in p for p in verify_epoch(payouts, old, funding))


def test_a_receipt_listed_twice_and_debits_moved_between_consumers_are_reported(node, cut_epochs):
    """Each receipt passes its own checks, so only the file as a whole can show one settled twice, or a consumer
    debited for another's calls."""
    alice, bob, epochs = cut_epochs
    payouts, receipts, funding = epochs[1]
    twice = copy.deepcopy(receipts)
    receipt = next(r for r in twice["receipts"] if r["consumer"] == bob.address)
    twice["receipts"].append(copy.deepcopy(receipt))

    assert f"receipt {receipt['id']}: listed more than once" in verify_epoch(payouts, twice, funding)

    swapped = copy.deepcopy(payouts)
    debits = {d["consumer"]: d for d in swapped["debits"]}
    debits[alice.address]["amount"], debits[bob.address]["amount"] = (debits[bob.address]["amount"],
                                                                        debits[alice.address]["amount"])
    problems = verify_epoch(swapped, receipts, funding)

    assert len(problems) == 2 and all(", but the receipts charge " in p for p in problems)
    assert {p.split(":")[0] for p in problems} == {alice.address.lower(), bob.address.lower()}


def test_a_receipt_an_earlier_epoch_settled_and_the_next_settles_again_is_reported_from_both_files(node):
    """A node that settles a receipt in two epochs publishes two files that each verify on their own (the second
    epoch's debits, payouts, root and funding all agree with it): only the earlier epoch's file shows the receipt
    was settled already, so `epoch verify` reads it, and without it names the receipt unchecked."""
    from sqlalchemy import update

    from ledgerlm.economy.receipt_audit import earlier_epochs
    from ledgerlm.store.schema import receipts as receipt_rows

    bob = key("bob")
    fund_consumer(node, bob, 10 * UNIT, 5 * UNIT)
    twice = write_receipt(node, bob.address, UNIT, DEV.address)
    assert node.economy.close()["epoch"] == 1
    c = node.contracts
    first = published_files(node.db, 1, c)  # as a verifier kept it when epoch 1 was published
    with node.db.begin() as conn:  # the dishonest node settles the same call again
        conn.execute(update(receipt_rows).where(receipt_rows.c.id == twice).values(settled_epoch=None))
    write_receipt(node, bob.address, UNIT // 4, DEV.address)
    assert node.economy.close()["epoch"] == 2
    second = published_files(node.db, 2, c)
    payouts2, receipts2 = second["payouts"], second["receipts"]
    funding2 = c.distributor.epoch(node.economy.chain_epoch(2))
    assert twice in {r["id"] for r in receipts2["receipts"]}
    assert earlier_epochs(receipts2) == [1]

    alone = audit_epoch(payouts2, receipts2, funding2)
    assert alone.problems == []
    assert alone.unchecked == [f"1 receipt(s) not checked against every earlier epoch that may have settled them "
                               f"already (epochs 1: their receipts files were not given): {twice}"]

    problems = verify_epoch(payouts2, receipts2, funding2, earlier={1: first["receipts"]})
    assert problems == [f"receipt {twice}: it was already settled by epoch 1"]
    assert audit_epoch(first["payouts"], first["receipts"],
                       c.distributor.epoch(node.economy.chain_epoch(1))) == EpochAudit([], [])
