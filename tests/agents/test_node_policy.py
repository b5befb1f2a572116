"""The node enforces each agent's owner-signed policy itself: with the agent's wallet bypassed, every rule still
refuses at the node and names the rule; a pause takes effect on the next action; no key acts for another agent."""

from __future__ import annotations

import json

import pytest

from ledgerlm.agents import policy_message
from ledgerlm.agents.policy import RULES
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import AuthError, LedgerError

from ..datanets.conftest import QA_SCHEMA
from .conftest import BUDGET, PRICE

UNIT = 10**18


def _refused(call) -> LedgerError:
    with pytest.raises(LedgerError) as refused:
        call()
    return refused.value


def _records(tmp_path, name: str, n: int = 1):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"question": f"{name} q{i}?", "answer": f"{name} answer {i}."}) + "\n"
                            for i in range(n)))
    return [path]


def test_every_rule_refuses_at_the_node_with_the_wallet_bypassed(world, tmp_path):
    client, owner = world.client, world.owner
    record = world.create("direct", stake=UNIT, per_epoch=True, allow_models=["tiny"], allow_datanets=["node-ok"])
    agent = world.account("direct")
    key = world.registry.api_key("direct", agent)
    assert key.startswith("sk-lgr-") and key not in world.registry.api_key_path("direct").read_text()
    for name in ("node-ok", "node-other"):
        client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA), owner)
    client.contribute("node-other", _records(tmp_path, "pending"), owner)
    # every staked validator scores it, the agent included: a vote is judged by the policy only once the round's
    # own rules (assignment first) let it through, as the policy's refusal names the Datanet
    settings = world.node.validation.settings
    world.node.validation.settings = settings.model_copy(update={"validators_per_contribution": 50})
    try:
        opened = client.validation.open_round(owner, "node-other")
    finally:
        world.node.validation.settings = settings
    assert agent.address in str(opened["assignments"])

    def chat(max_tokens: int = 4) -> dict:  # straight to the node with the agent's own key: no wallet check
        return client._request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={
            "model": "tiny", "messages": [{"role": "user", "content": "What colour is the reef?"}],
            "max_tokens": max_tokens, "temperature": 0})

    def contribute(datanet: str):
        return client.contribute(datanet, _records(tmp_path, f"by-agent-{datanet}"), agent)

    def vote():
        return client.validation.commit(agent, opened["id"], {1: 50})

    first = chat()
    spent = int(first["x_ledgerlm_receipt"]["fee"])
    assert spent > 0 and contribute("node-ok").contribution_count == 1  # within the policy: served, stored

    rules = {}
    world.set_policy("direct", budget=spent + 1)  # the owner lowers this epoch's budget below one more call
    left_by_cap = int(client.serving.budget(key)["remaining"])
    rules["budget"] = _refused(chat)
    assert left_by_cap > spent  # the escrow cap alone would have paid for it: the policy is what refused
    world.set_policy("direct", budget=10**15, allow_models=["another-model"])
    rules["allow_models"] = _refused(chat)
    world.set_policy("direct", allow_models=["tiny"], max_price_per_1k=PRICE - 1)
    rules["max_price"] = _refused(chat)
    world.set_policy("direct", max_price_per_1k=None)
    rules["allow_datanets"] = _refused(lambda: contribute("node-other"))
    vote_refused = _refused(vote)
    world.set_policy("direct", actions=["call_model", "contribute", "balance"])
    rules["actions"] = _refused(vote)
    world.set_policy("direct", allow_datanets=[], actions=["call_model", "contribute", "validate"])
    world.pause("direct")
    rules["paused"] = _refused(chat)
    paused_upload = _refused(lambda: contribute("node-ok"))

    for rule, error in rules.items():
        assert (error.status, error.field) == (403, rule), (rule, error.message)
        assert f"agent {record.address}'s policy" in error.message
    assert vote_refused.field == "allow_datanets" and paused_upload.field == "paused"
    assert "budget" in rules["budget"].message and "another-model" in rules["allow_models"].message
    mine = [r for r in client.serving.receipts(account=record.address, limit=100) if r["consumer"] == record.address]
    assert len(mine) == 1  # nothing refused was served or charged
    assert len(client.contributions("node-other")) == 1  # nor stored

    world.pause("direct", False)  # resumed: the very next action goes through again
    assert int(chat()["x_ledgerlm_receipt"]["fee"]) > 0
    try:  # the policy lets the vote through now; only the round's own rules (phase, assignment) can refuse it
        vote()
    except LedgerError as after:
        assert after.status != 403 and after.field not in RULES, after.message
    standing = client.agents.standing(record.address)
    assert standing["owner"] == owner.address and int(standing["spent"]) == 2 * spent


def test_no_key_acts_for_another_agent_or_lifts_a_policy(world, tmp_path):
    client, owner = world.client, world.owner
    victim = world.create("held", allow_datanets=["nobody"])
    world.pause("held")
    mallory = world.account(world.create("loose").name)
    client.create_datanet(DatanetSpec(name="open-facts", schema=QA_SCHEMA), owner)

    forged = client._sign(mallory, "Contribute", {"datanet": "open-facts", "manifestHash": "0x" + "00" * 32})
    forged["message"]["contributor"] = victim.address  # Mallory's signature in the held agent's name
    with pytest.raises(AuthError, match="does not match"):
        client._request("POST", "/datanets/open-facts/contributions", files={"action": (None, json.dumps(forged))})

    held = world.registry.get("held").policy
    lifted = policy_message(held.model_copy(update={"paused": False, "allow_datanets": []}))
    with pytest.raises(AuthError, match="bound to owner"):  # the agent cannot lift its own policy
        client.agents.set_policy(world.account("held"), victim.address, lifted)
    with pytest.raises(AuthError, match="bound to owner"):  # nor can another agent, binding it or not
        client.agents.set_policy(mallory, victim.address, lifted, bind=world.account("held"))
    with pytest.raises(AuthError, match="bound to owner"):
        client.agents.set_paused(mallory, victim.address, False)
    standing = client.agents.standing(victim.address)
    assert standing["policy"]["paused"] is True and standing["policy"]["allow_datanets"] == ["nobody"]

    stranger = world.keyring.unlock("agent-loose", "agent-passphrase-for-tests")
    unbound = policy_message(held)
    with pytest.raises(AuthError, match="BindAgent"):  # a first policy needs the agent's own consent
        client.agents.set_policy(owner, "0x" + "ab" * 20, unbound)
    with pytest.raises(AuthError, match="BindAgent signature must be agent"):
        client.agents.set_policy(owner, "0x" + "ab" * 20, unbound, bind=stranger)


def test_a_compute_job_is_an_action_the_policy_must_allow(world):
    """Paying a provider from escrow is spending like a call: the node asks the policy for `buy_compute` first."""
    from eth_account import Account

    client = world.client
    provider, price = Account.from_key(b"\x0b" * 32), 10**13
    client.chain.faucet(provider.address, eth_wei=UNIT, tokens=UNIT)
    client.chain.stake(provider, "provider", UNIT)
    offer = client.providers.offer(provider, kind="serve", hardware="cpu", base_model="tiny", price=price)
    try:
        world.create("jobs", actions=["search", "call_model"])
        agent, spec = world.account("jobs"), {"prompts": ["hi"], "max_new_tokens": 4}

        def buy():
            return client.providers.submit(agent, kind="serve", spec=spec, amount=price, offer_id=offer["id"])

        refused = _refused(buy)
        assert refused.status == 403 and refused.field == "actions" and "buy_compute" in refused.message
        assert client.providers.jobs(requester=agent.address) == []
        world.set_policy("jobs", actions=["search", "call_model", "buy_compute"])
        assert buy()["amount"] == str(price)
    finally:
        client.providers.withdraw(provider, offer["id"])


def test_a_payment_counts_what_calls_in_flight_hold(world):
    """A call admitted and still running holds its worst case against the agent's budget and the consumer's cap; a
    compute job bought meanwhile must not spend that room a second time (it once did: the payment checks read only
    what was already spent, so an agent with a long call running could buy a job worth its whole budget)."""
    from eth_account import Account

    client, node = world.client, world.node
    provider, price = Account.from_key(b"\x0c" * 32), 10**13
    client.chain.faucet(provider.address, eth_wei=UNIT, tokens=UNIT)
    client.chain.stake(provider, "provider", UNIT)
    offer = client.providers.offer(provider, kind="serve", hardware="cpu", base_model="tiny", price=price)
    spec = {"prompts": ["hi"], "max_new_tokens": 4}
    try:
        world.create("in-flight", actions=["call_model", "buy_compute"])
        agent = world.account("in-flight")
        key = node.serving.keys.authenticate(f"Bearer {world.registry.api_key('in-flight', agent)}")
        budget = world.registry.get("in-flight").policy.budget

        def buy():
            return client.providers.submit(agent, kind="serve", spec=spec, amount=price, offer_id=offer["id"])

        held = node.serving.budget.reserve(key, budget - price + 1, "a long call")  # what a running call holds
        try:
            refused = _refused(buy)
        finally:
            node.serving.budget.release(held)
        assert (refused.status, refused.field) == (403, "budget") and "budget" in refused.message
        assert client.providers.jobs(requester=agent.address) == []
        assert client.agents.standing(agent.address)["spent"] == "0"

        # a consumer with no policy: the cap they signed is what a running call holds room under
        consumer = Account.from_key(b"\x0d" * 32)
        client.chain.faucet(consumer.address, eth_wei=UNIT, tokens=UNIT)
        node.contracts.escrow.deposit(consumer, UNIT)
        cap = 10 * price
        plain, _ = client.serving.create_key(consumer, cap)
        held = node.serving.budget.reserve(node.serving.keys.authenticate(f"Bearer {plain}"), cap - price + 1,
                                           "a long call")
        try:
            refused = _refused(lambda: client.providers.submit(consumer, kind="serve", spec=spec, amount=price,
                                                               offer_id=offer["id"]))
        finally:
            node.serving.budget.release(held)
        assert (refused.status, refused.field) == (402, "payment") and "in flight" in refused.message
        assert client.providers.submit(consumer, kind="serve", spec=spec, amount=price, offer_id=offer["id"])[
            "amount"] == str(price)  # released: the same payment goes through
    finally:
        client.providers.withdraw(provider, offer["id"])


def test_a_policy_names_a_private_datanet_only_to_those_who_may_read_it(world):
    """Agent policies are public: one that allows a private Datanet must not tell strangers its name, while the
    agent's own wallet and its owner still read (and keep) the policy whole."""
    from eth_account import Account

    from ledgerlm.agents import AgentWallet
    from ledgerlm.agents.funding import enforced_policy
    from ledgerlm.client import NodeClient

    client = world.client
    client.create_datanet(DatanetSpec(name="hidden-vault", schema=QA_SCHEMA, visibility="private"), world.owner)
    world.create("keeper", allow_datanets=["hidden-vault"], actions=["contribute"])
    agent = world.account("keeper")
    stranger = NodeClient(client.http, reader=Account.create())
    shown = stranger.agents.standing(agent.address)
    assert shown["policy"]["allow_datanets"] == ["(private)"]
    assert "hidden-vault" not in str(client.http.get("/agents").json())
    assert enforced_policy(client, agent.address, reader=world.owner)["allow_datanets"] == ["hidden-vault"]
    wallet = AgentWallet(client, world.registry, "keeper", agent)
    assert wallet.policy().allow_datanets == ["hidden-vault"]
    world.set_policy("keeper", budget=2 * 10**15)  # a change read back as the owner keeps the name
    assert enforced_policy(client, agent.address, reader=agent)["allow_datanets"] == ["hidden-vault"]



def test_a_pause_made_while_an_upload_streams_in_refuses_that_upload(world, tmp_path, monkeypatch):
    """The policy was read once, when the signed action arrived, and an upload may trickle in for hours: one the
    owner paused the agent during was stored all the same."""
    from ledgerlm.datanets.ingest import Ingest
    from ledgerlm.identity import SignedAction

    client, owner = world.client, world.owner
    record = world.create("trickling", allow_datanets=["trickled"])
    client.create_datanet(DatanetSpec(name="trickled", schema=QA_SCHEMA), owner)
    original = Ingest._spool_items

    def paused_meanwhile(self, *args, **kwargs):  # the body has arrived; the owner pressed the switch while it did
        world.node.agent_policies.set_paused(record.address, SignedAction(**client._sign(
            owner, "PauseAgent", {"agent": record.address, "paused": True})))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Ingest, "_spool_items", paused_meanwhile)
    refused = _refused(lambda: client.contribute("trickled", _records(tmp_path, "late", 3), world.account("trickling")))
    assert (refused.status, refused.field) == (403, "paused")
    assert client.contributions("trickled") == []


def test_a_policy_change_signed_before_a_pause_does_not_lift_it(world):
    """Only PauseAgent moves the kill switch: a SetAgentPolicy carries a `paused` bit too, and one signed before
    the pause and delivered after it (or a budget change racing the switch) used to resume the agent."""
    client, owner = world.client, world.owner
    record = world.create("switched")
    policy = world.registry.get("switched").policy
    early = client._sign(owner, "SetAgentPolicy", {"agent": record.address,  # paused: False
                                                   **policy_message(policy.model_copy(update={"budget": 2 * BUDGET}))})
    assert early["message"]["paused"] is False
    world.pause("switched")
    client._request("PUT", f"/agents/{record.address}/policy", json={"action": early})
    standing = client.agents.standing(record.address)
    assert standing["policy"]["paused"] is True and int(standing["policy"]["budget"]) == 2 * BUDGET
