"""Each policy rule refuses before anything is spent; the escrow cap holds even when the node is bypassed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from ledgerlm.agents import AgentPolicy, AgentWallet, PolicyRefusal
from ledgerlm.chain import ChainError, Debit
from ledgerlm.errors import AuthError
from ledgerlm.store.schema import spending_caps

from .conftest import BUDGET


def _receipts(world, address: str) -> list[dict]:
    return [r for r in world.client.serving.receipts(account=address, limit=1000) if r["consumer"] == address]


def test_each_policy_rule_refuses_before_any_spend(world):
    record = world.create("buyer", allow_models=["tiny"])
    wallet = AgentWallet(world.client, world.registry, "buyer", world.account("buyer"))
    escrow_before = world.node.contracts.escrow.balance_of(record.address)

    paid = wallet.call_model("tiny", "What colour is the reef?", max_tokens=4)
    assert int(paid["fee"]) > 0

    refusals = {}
    with pytest.raises(PolicyRefusal) as refusals["budget"]:
        wallet.call_model("tiny", "What colour is the reef?", max_tokens=5000)  # worst case above the budget
    world.set_policy("buyer", allow_models=["someone-elses-model"])
    with pytest.raises(PolicyRefusal) as refusals["allow_models"]:
        wallet.call_model("tiny", "hi", max_tokens=4)
    world.set_policy("buyer", allow_models=[], max_price_per_1k=10**14)
    with pytest.raises(PolicyRefusal) as refusals["max_price"]:
        wallet.call_model("tiny", "hi", max_tokens=4)
    world.set_policy("buyer", max_price_per_1k=None)
    world.pause("buyer")
    with pytest.raises(PolicyRefusal) as refusals["paused"]:
        wallet.call_model("tiny", "hi", max_tokens=4)

    assert {name: r.value.field for name, r in refusals.items()} == {n: n for n in refusals}
    assert len(_receipts(world, record.address)) == 1  # the refused calls reached no model and cost nothing
    world.pause("buyer", False)
    assert wallet.call_model("tiny", "hi", max_tokens=4)["receipt_id"]
    assert wallet.spent(world.registry.get("buyer").policy) <= BUDGET
    assert world.node.contracts.escrow.balance_of(record.address) == escrow_before  # charged at settlement only


def test_an_agent_cannot_act_with_another_agents_key(world):
    mallory = world.create("mallory")
    world.create("victim")
    with pytest.raises(Exception, match="not agent 'victim'"):
        AgentWallet(world.client, world.registry, "victim", world.account("mallory"))
    # Mallory's key signing an action in the victim's name is refused by the node itself.
    action = world.client._sign(world.account("mallory"), "RevokeApiKey", {"keyId": 1})
    action["message"]["consumer"] = world.registry.get("victim").address
    with pytest.raises(AuthError):
        world.client._request("POST", "/apikeys/1/revoke", json={"action": action})
    assert world.registry.get("mallory").address == mallory.address


def test_the_escrow_cap_holds_even_when_the_node_tries_to_overcharge(world):
    record = world.create("capped")
    node = world.node
    with node.db.connect() as conn:
        cap = conn.execute(select(spending_caps).where(spending_caps.c.consumer == record.address)).mappings().one()
    assert int(cap["cap"]) == BUDGET  # the agent signed a cap of exactly its budget
    with pytest.raises(ChainError) as refused:
        node.contracts.escrow.settle(node.account, node.economy.chain_epoch(10**6), 99, [Debit(record.address, BUDGET + 1)])
    assert refused.value.error_name == "CapExceeded"
    assert node.contracts.escrow.balance_of(record.address) == BUDGET


def test_the_audit_trail_matches_receipts_and_chain(world):
    record = world.create("audited")
    wallet = AgentWallet(world.client, world.registry, "audited", world.account("audited"))
    wallet.call_model("tiny", "What colour is the reef?", max_tokens=4)
    with pytest.raises(PolicyRefusal):
        wallet.call_model("tiny", "What colour is the reef?", max_tokens=5000)
    entries = wallet.audit.entries()
    calls = [e for e in entries if e.tool == "call_model"]
    assert [e.ok for e in calls] == [True, False]
    receipts = {r["id"]: r for r in _receipts(world, record.address)}
    assert {e.receipt_id: e.cost for e in calls if e.ok} == {rid: int(r["fee"]) for rid, r in receipts.items()}
    funded = [e for e in entries if e.tx_hashes]
    assert "register_policy" in [e.tool for e in entries]
    assert [e.tool for e in funded] == ["fund_gas", "fund_tokens", "escrow_deposit"]
    for entry in funded:
        for tx in entry.tx_hashes:
            mined = world.node.chain.w3.eth.get_transaction_receipt(tx)
            assert mined["status"] == 1
    deposit = world.node.chain.w3.eth.get_transaction_receipt(funded[-1].tx_hashes[-1])
    assert deposit["from"] == record.address  # the agent's own key made the deposit, not its owner


def test_a_per_epoch_budget_renews_with_a_new_cap_the_agent_signs_each_epoch(world):
    from ledgerlm.agents import FundingPlan, create_agent

    from .conftest import GAS, PASSPHRASE

    policy = AgentPolicy(budget=BUDGET, per_epoch=True)
    create_agent(world.client, world.registry, world.keyring, name="monthly", owner=world.owner, policy=policy,
                 plan=FundingPlan(budget=2 * BUDGET, gas_wei=GAS), passphrase=PASSPHRASE)
    wallet = AgentWallet(world.client, world.registry, "monthly", world.account("monthly"))
    first = world.registry.get("monthly").key_epoch
    wallet.call_model("tiny", "hi", max_tokens=4)
    while world.client.serving.receipts(state="attributing", limit=1):
        time.sleep(0.2)
    world.client._request("POST", "/economy/epochs/close")
    wallet.call_model("tiny", "hi", max_tokens=4)
    renewed = world.registry.get("monthly")
    assert renewed.key_epoch == first + 1
    with world.node.db.connect() as conn:
        caps = conn.execute(select(spending_caps.c.cap, spending_caps.c.nonce).where(
            spending_caps.c.consumer == renewed.address)).all()
    held = world.node.contracts.escrow.spending_cap(renewed.address, world.node.account.address)
    assert 0 < held.spent <= BUDGET  # the first epoch settled within the cap
    # re-signed for the new epoch: one budget on top of what the period already settled, never 2x
    assert [int(c) for c, _ in caps] == [held.cap] and held.cap - held.spent == BUDGET
    assert held.nonce == caps[0].nonce
    paid_first = next(e for e in wallet.audit.entries() if e.tool == "call_model" and e.ok)
    settled = world.client.serving.receipt(paid_first.receipt_id)["settlement"]
    assert settled["epoch"] == first  # the audit trail leads from the call to the settlement that charged it
    mined = world.node.chain.w3.eth.get_transaction_receipt(settled["tx"])
    assert mined["status"] == 1 and mined["to"] == world.node.contracts.escrow.address
