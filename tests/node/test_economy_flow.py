"""The whole economy on a real node: validator rounds, a slashed outlier, receipts with attributed
contributors, an epoch close, and claims that pay everyone exactly what the policy says."""

from __future__ import annotations

import time

from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings
from ledgerlm.economy.verify import verify_epoch

from ..datanets.conftest import write_jsonl
from ..economy.helpers import fund_consumer, key, write_receipt
from .test_validation_rounds import CLEAN, UNIT, _round, setup  # noqa: F401 - the fixture

DEV = key("developer")


def test_fees_slashed_stake_and_the_data_pool_reach_the_right_people(client, alice, bob, carol, setup,  # noqa: F811
                                                                    tmp_path):
    validators, node, clock = setup
    honest, outlier = (lambda cid: 90), (lambda cid: 0)
    client.contribute("ferries", [write_jsonl(tmp_path / "c.jsonl", [CLEAN[3]])], carol)
    for r in range(3):  # the third round slashes the persistent outlier
        client.contribute("ferries", [write_jsonl(tmp_path / f"r{r}.jsonl", [CLEAN[r]])], bob)
        _round(client, alice, validators, clock, [honest, honest, outlier])
    c = node.contracts
    slashed = c.staking.slashes_held()
    assert slashed == 10 * UNIT and c.staking.reward_pool() == 0  # 10% of the outlier's 100 LGR, held for now
    node.chain.advance_time(c.staking.slash_dispute_seconds())  # nobody revoked it: the close settles it
    accepted = {x.contributor: x.id for x in client.contributions("ferries", state="accepted")}
    client.withdraw(accepted[carol.address], carol)  # carol's data earns nothing from now on
    time.sleep(1.1)  # receipts below are served strictly after the withdrawal

    consumer = key("consumer")
    fund_consumer(node, consumer, 100 * UNIT, 50 * UNIT)
    attribution = {"contributions": [
        {"contribution_id": accepted[bob.address], "contributor": bob.address, "bps": 5000},
        {"contribution_id": accepted[carol.address], "contributor": carol.address, "bps": 5000}]}
    fees = [10 * UNIT, 7 * UNIT + 3]
    for fee in fees:
        write_receipt(node, consumer.address, fee, DEV.address, datanet="ferries",
                      contributors={bob.address: 5000, carol.address: 5000}, evidence_bps=8000,
                      attribution=attribution)

    summary = node.economy.close()

    assert int(summary["total"]) == sum(fees) + slashed
    assert c.staking.reward_pool() == c.staking.slashes_held() == 0
    assert c.distributor.epoch(node.economy.chain_epoch(1)).total == sum(fees) + slashed
    owed = {a: int(e["epochs"][0]["amount"]) if e["epochs"] else 0
            for a, e in ((a, earnings(node.db, c.distributor, a))
                         for a in (node.account.address, DEV.address, bob.address, carol.address,
                                   *(v.address for v in validators)))}
    assert owed[carol.address] == 0  # withdrawn: no contributor share, no data pool
    assert owed[validators[2].address] == 0  # clipped in every round: no agreement, no reward
    assert owed[validators[0].address] > owed[validators[1].address] > 0  # stake 300 vs 200
    assert owed[DEV.address] == sum(f * 4000 // 10_000 for f in fees)
    validators_share = sum(f * 1000 // 10_000 for f in fees)
    assert owed[validators[0].address] + owed[validators[1].address] == validators_share + slashed
    assert sum(owed.values()) == sum(fees) + slashed  # everything else went to bob: his share and the pool
    before = {a: c.token.balance_of(a) for a in owed}
    for account, amount in owed.items():
        if amount:
            proof = earnings(node.db, c.distributor, account)["epochs"][0]["proof"]
            c.distributor.claim(node.account, node.economy.chain_epoch(1), account, amount, proof)
    assert all(c.token.balance_of(a) == before[a] + owed[a] for a in owed)
    assert c.distributor.epoch(node.economy.chain_epoch(1)).unclaimed == 0
    assert verify_epoch(*published_files(node.db, 1, c).values(), c.distributor.epoch(node.economy.chain_epoch(1))) == []


def test_a_private_datanet_scored_by_its_owner_s_own_key_takes_none_of_the_slashed_stake(
        client, alice, bob, setup, tmp_path):  # noqa: F811
    """Slashed stake is the validators' of rounds whose validators were drawn from everyone staked: a private
    Datanet's owner chooses who scores its rounds, and sixty trivial records scored by a key of the owner's took
    most of it."""
    from eth_account import Account

    from ledgerlm.datanets import DatanetSpec

    from ..datanets.conftest import QA_SCHEMA

    validators, node, clock = setup
    honest, outlier = (lambda cid: 90), (lambda cid: 0)
    for r in range(3):  # the third round slashes the persistent outlier
        client.contribute("ferries", [write_jsonl(tmp_path / f"r{r}.jsonl", [CLEAN[r]])], bob)
        _round(client, alice, validators, clock, [honest, honest, outlier])
    owner, own_key = Account.from_key(b"\x70" * 32), Account.from_key(b"\x71" * 32)
    client.chain.faucet(own_key.address, eth_wei=UNIT, tokens=100 * UNIT)
    client.chain.stake(own_key, "validator", 100 * UNIT)
    client.create_datanet(DatanetSpec(name="own-rounds", schema=QA_SCHEMA, visibility="private"), owner)
    client.add_member("own-rounds", own_key.address, owner)
    records = [{"question": f"What is {i} plus {i + 7}?", "answer": f"{i} plus {i + 7} is {2 * i + 7}."}
               for i in range(60)]
    client.contribute("own-rounds", [write_jsonl(tmp_path / "own.jsonl", records)], owner)
    opened = client.validation.open_round(owner, "own-rounds")
    assert set(opened["stakes"]) == {own_key.address}
    mine = {int(c): 100 for c in opened["assignments"]}
    _, salt = client.validation.commit(own_key, opened["id"], mine)
    clock.now = opened["commit_deadline"] + 1
    client.validation.reveal(own_key, opened["id"], mine, salt)
    clock.now = opened["reveal_deadline"] + 1
    client.validation.tally(owner, opened["id"])

    node.chain.advance_time(node.contracts.staking.slash_dispute_seconds())
    summary = node.economy.close()
    slashed = 10 * UNIT
    assert int(summary["total"]) == slashed
    owed = {a: int(e["epochs"][0]["amount"]) if e["epochs"] else 0
            for a, e in ((a, earnings(node.db, node.contracts.distributor, a))
                         for a in (own_key.address, *(v.address for v in validators)))}
    assert owed[own_key.address] == 0
    assert owed[validators[0].address] + owed[validators[1].address] == slashed


def test_stake_withdrawn_before_the_close_earns_nothing_from_the_rounds_it_opened_with(
        client, alice, bob, setup, tmp_path):  # noqa: F811
    """A round pays by stake × agreement, the stake the one it was opened with, but never more than what is still
    at risk at the close: stake withdrawn meanwhile (and perhaps staked again by another key) earns nothing."""
    validators, node, clock = setup
    honest = lambda cid: 90  # noqa: E731
    for r in range(2):
        client.contribute("ferries", [write_jsonl(tmp_path / f"r{r}.jsonl", [CLEAN[r]])], bob)
        _round(client, alice, validators, clock, [honest, honest, honest])
    leaving = validators[1]
    client.chain.request_unstake(leaving, "validator", 200 * UNIT)
    node.chain.advance_time(node.contracts.staking.cooldown_seconds() + 1)
    client.chain.withdraw_stake(leaving, "validator")
    consumer = key("consumer")
    fund_consumer(node, consumer, 100 * UNIT, 50 * UNIT)
    write_receipt(node, consumer.address, 10 * UNIT, DEV.address, datanet="ferries")
    node.economy.close()
    owed = {v.address: int(e["epochs"][0]["amount"]) if e["epochs"] else 0
            for v, e in ((v, earnings(node.db, node.contracts.distributor, v.address)) for v in validators)}
    assert owed[leaving.address] == 0
    assert owed[validators[0].address] > 0 and owed[validators[2].address] > 0
