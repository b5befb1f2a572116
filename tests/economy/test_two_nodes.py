"""Two node homes settling to one EpochDistributor on one chain: each numbers its own epochs from 1, and their
epoch ids carry their node, so both close epoch 1, neither collides with the other, and neither can touch the
other's epoch."""

from __future__ import annotations

import os

import pytest

from ledgerlm.chain import ChainError, Debit
from ledgerlm.config import Home
from ledgerlm.economy import show_epoch
from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.identity.node_keys import ADMIN_PASSPHRASE_ENV, unlock_keystore
from ledgerlm.node import Node
from tests.economy.helpers import fund_consumer, give_cap, key, write_receipt

UNIT = 10**18
DEV = key("developer")


@pytest.fixture
def two_nodes(home, tmp_path):
    """Node `a` deploys the contracts on its embedded chain; node `b`, another home with its own database and hot
    key, settles to the same contracts on that same chain with the operating roles the admin granted it."""
    a = Node.open(home)
    other = Home(tmp_path / "other-home")
    Node.init(other).close()
    other.deployment_path.write_text(home.deployment_path.read_text())
    b = Node.open(other)
    b.__dict__["chain"] = a.chain  # one in-process chain: the embedded chain is locked to the process that opened it
    admin = unlock_keystore(home.admin_key_path, os.environ[ADMIN_PASSPHRASE_ENV], "admin")
    c = a.contracts
    for contract, role in ((c.escrow, "SETTLER_ROLE"), (c.distributor, "POSTER_ROLE"), (c.staking, "REWARDS_ROLE")):
        contract.grant_role(admin, role, b.account.address)
    a.chain.send_eth(a.faucet_account, b.account.address, 10**18)
    yield a, b
    b.close()
    a.close()


def test_two_nodes_close_their_epoch_1_on_one_distributor_without_colliding(two_nodes):
    a, b = two_nodes
    c = a.contracts
    alice = key("alice")
    fund_consumer(a, alice, 10 * UNIT, 5 * UNIT)
    give_cap(b, alice, 5 * UNIT)
    write_receipt(a, alice.address, UNIT, DEV.address)
    write_receipt(b, alice.address, 2 * UNIT + 1, DEV.address)

    first, second = a.economy.close(), b.economy.close()

    assert (first["epoch"], first["state"]) == (second["epoch"], second["state"]) == (1, "published")
    assert first["chain_epoch"] != second["chain_epoch"]
    for node, summary, charged in ((a, first, UNIT), (b, second, 2 * UNIT + 1)):
        funding = c.distributor.epoch(int(summary["chain_epoch"]))
        assert funding.total == charged and funding.root == summary["root"]
        assert verify_epoch(*published_files(node.db, 1, c).values(), funding) == []
    assert c.escrow.balance_of(alice.address) == 10 * UNIT - UNIT - (2 * UNIT + 1)
    # the developer claims epoch 1 of each node, each paid from its own funds
    for node in (a, b):
        owed = earnings(node.db, c.distributor, DEV.address)["epochs"][0]
        c.distributor.claim(a.faucet_account, int(owed["chain_epoch"]), DEV.address, int(owed["amount"]),
                            owed["proof"])
    assert c.token.balance_of(DEV.address) == UNIT * 4000 // 10_000 + (2 * UNIT + 1) * 4000 // 10_000
    # neither node may settle into, or post, the other's epoch
    with pytest.raises(ChainError) as settled:
        c.escrow.settle(b.account, int(first["chain_epoch"]), 9, [Debit(alice.address, 1)])
    with pytest.raises(ChainError) as posted:
        c.distributor.post_root(a.account, int(second["chain_epoch"]), first["root"], UNIT)
    assert settled.value.error_name == posted.value.error_name == "ForeignEpoch"


class Crash(Exception):
    pass


def _crash_after_plan(number: int, step: str) -> None:
    if step == "plan":
        raise Crash


def _tallied_round(node, name: str, validator) -> None:
    """A validation round of this epoch on `node`, tallied, that `validator` earned reward weight in."""
    import time

    from sqlalchemy import insert

    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.identity import sign_action
    from ledgerlm.store.schema import validation_rounds

    owner = key("owner")
    spec = DatanetSpec(name=name, schema={"type": "object"})
    datanet = node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": name, "specHash": spec.spec_hash()},
                                                     domain=node.domain))
    with node.db.begin() as conn:
        conn.execute(insert(validation_rounds).values(
            datanet_id=datanet.id, seed="0x" + "00" * 32, commit_deadline=0, reveal_deadline=0, rules={}, stakes={},
            state="tallied", created_at=int(time.time()),
            tally={"validators": {validator.address: {"reward_weight": 1}}}))


def test_a_close_finished_after_another_node_released_the_shared_reward_pool_pays_what_is_left(two_nodes, home):
    from ledgerlm.chain import StakeRole

    a, b = two_nodes
    c = a.contracts
    admin = unlock_keystore(home.admin_key_path, os.environ[ADMIN_PASSPHRASE_ENV], "admin")
    c.staking.grant_role(admin, "SLASHER_ROLE", b.account.address)
    c.registry.grant_role(admin, "REGISTRAR_ROLE", b.account.address)
    val_a, val_b, bad, alice = key("val-a"), key("val-b"), key("bad"), key("alice")
    _tallied_round(a, "dn-a", val_a)
    _tallied_round(b, "dn-b", val_b)
    a.chain.send_eth(a.faucet_account, bad.address, 10**18)  # 10 LGR of slashed stake in the shared pool
    c.token.transfer(a.faucet_account, bad.address, 100 * UNIT)
    c.staking.stake(bad, StakeRole.VALIDATOR, 100 * UNIT)
    a._slash(1, "0x" + "11" * 32, bad.address, int(StakeRole.VALIDATOR), 10 * UNIT)
    a.chain.advance_time(c.staking.slash_dispute_seconds() + 1)
    fund_consumer(a, alice, 10 * UNIT, 10 * UNIT)
    write_receipt(a, alice.address, 3 * UNIT, DEV.address)

    a.economy.after_step = _crash_after_plan  # a plans the whole pool for its validators, then dies
    with pytest.raises(Crash):
        a.economy.close()
    a.economy.after_step = None
    assert int(a.economy.summary(1)["rewards"]) == 10 * UNIT
    assert b.economy.close()["state"] == "published"  # b's close releases the whole pool meanwhile
    assert c.staking.reward_pool() == 0

    summary = a.economy.finish()
    assert summary["state"] == "published"  # not stuck on InsufficientRewardPool
    shown = show_epoch(a.db, 1)
    assert shown["rewards"] == "0" and shown["rewards_planned"] == str(10 * UNIT)
    funding = c.distributor.epoch(int(summary["chain_epoch"]))
    assert funding.total == 3 * UNIT and verify_epoch(*published_files(a.db, 1, c).values(), funding) == []
    assert val_a.address not in {p["account"] for p in published_files(a.db, 1, c)["payouts"]["payouts"]}


def test_an_epoch_that_paid_validators_only_ends_unpaid_when_another_node_released_the_pool_first(two_nodes, home):
    from ledgerlm.chain import StakeRole

    a, b = two_nodes
    c = a.contracts
    admin = unlock_keystore(home.admin_key_path, os.environ[ADMIN_PASSPHRASE_ENV], "admin")
    c.registry.grant_role(admin, "REGISTRAR_ROLE", b.account.address)
    _tallied_round(a, "dn-a", key("val-a"))
    _tallied_round(b, "dn-b", key("val-b"))
    bad = key("bad")
    a.chain.send_eth(a.faucet_account, bad.address, 10**18)
    c.token.transfer(a.faucet_account, bad.address, 100 * UNIT)
    c.staking.stake(bad, StakeRole.VALIDATOR, 100 * UNIT)
    a._slash(1, "0x" + "11" * 32, bad.address, int(StakeRole.VALIDATOR), 10 * UNIT)
    a.chain.advance_time(c.staking.slash_dispute_seconds() + 1)

    a.economy.after_step = _crash_after_plan  # no fees: a's epoch pays its validators the pool, and dies
    with pytest.raises(Crash):
        a.economy.close()
    a.economy.after_step = None
    assert b.economy.close()["state"] == "published"
    summary = a.economy.finish()
    assert summary["state"] == "unpaid" and summary["root"] is None  # nothing left to pay: no root posted
