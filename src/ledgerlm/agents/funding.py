"""Creating an agent: its own key, its owner's transfer, the escrow deposit and cap the agent signs itself, and
the owner-signed policy the node enforces. A creation that stopped part-way finishes when run again."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledgerlm.agents.audit import AuditEntry, AuditLog
from ledgerlm.agents.errors import AgentError
from ledgerlm.agents.policy import AgentPolicy, policy_message
from ledgerlm.agents.registry import AgentRecord, AgentRegistry, new_api_key
from ledgerlm.client import NodeClient
from ledgerlm.errors import LedgerError, NotFoundError
from ledgerlm.identity import Keyring

GAS_WEI = 10**17  # what the owner sends for the agent's own transactions (deposit, stake, votes)


@dataclass(frozen=True)
class FundingPlan:
    """What the owner moves to the agent: the escrow deposit (`budget`), validator stake, and gas."""

    budget: int
    stake: int = 0
    gas_wei: int = GAS_WEI

    def to_record(self) -> dict[str, str]:
        return {"budget": str(self.budget), "stake": str(self.stake), "gas_wei": str(self.gas_wei)}


def agent_key_name(name: str) -> str:
    return f"agent-{name}"


def create_agent(node: NodeClient, registry: AgentRegistry, keyring: Keyring, *, name: str, owner: LocalAccount,
                 policy: AgentPolicy, plan: FundingPlan, passphrase: str) -> AgentRecord:
    """Make the agent's encrypted key, fund it from the owner, let the agent deposit, stake and sign its cap, and
    register the owner's policy with the node.

    The owner's key signs only the two transfers and the policy; every other signature (the escrow deposit, the
    stake, the spending cap, the API key bound to it, accepting its owner) is the agent's, so the escrow contract
    holds the agent to its own cap whatever the node does. Each step first looks at what is already on chain and
    on the node, so running it again after a failure finishes the job and never funds anything twice."""
    # a per-epoch budget may be funded for several epochs at once; the cap the agent signs is always one budget
    if plan.budget < policy.budget or (plan.budget != policy.budget and not policy.per_epoch):
        raise AgentError(f"the deposit ({plan.budget}) must equal the budget ({policy.budget}), or exceed it for a "
                         "per-epoch budget", field="budget")
    record, agent = _start(registry, keyring, name=name, owner=owner, policy=policy, plan=plan, passphrase=passphrase)
    audit = AuditLog(registry.audit_path(name))

    def log(step: str, signer: LocalAccount, done) -> None:
        txs = [t["tx_hash"] for t in (done if isinstance(done, list) else [done])]
        audit.append(AuditEntry(agent=name, tool=step, args={"signer": signer.address}, ok=True, tx_hashes=txs))

    try:
        held = node.chain.account(agent.address)
        if not held["eth_wei"] and not held["nonce"]:
            log("fund_gas", owner, node.chain.send_eth(owner, agent.address, plan.gas_wei))
        staked = int(held["stake"]["validator"])
        short = plan.budget + plan.stake - int(held["tokens"]) - int(held["escrow"]) - staked
        if short > 0:
            log("fund_tokens", owner, node.chain.transfer(owner, agent.address, short))
        if int(held["escrow"]) < plan.budget:
            log("escrow_deposit", agent, _deposit(node, agent, plan.budget - int(held["escrow"])))
        if staked < plan.stake:
            log("stake", agent, node.chain.stake(agent, "validator", plan.stake - staked))
        try:
            node.agents.standing(agent.address)
        except NotFoundError:
            node.agents.set_policy(owner, agent.address, policy_message(policy), bind=agent)
            audit.append(AuditEntry(agent=name, tool="register_policy", args={"signer": owner.address}, ok=True,
                                    result={"policy": policy.model_dump(mode="json")}))
        if registry.api_key(name, agent) is None:
            key, stored = node.serving.create_key(agent, policy.budget, key=new_api_key())
            registry.seal_api_key(name, key, agent)
            record.key_epoch = stored["epoch"]
            audit.append(AuditEntry(agent=name, tool="spending_cap", args={"cap": str(policy.budget)}, ok=True,
                                    result={"key_id": stored["id"], "epoch": stored["epoch"]}))
    except AgentError:
        raise
    except Exception as exc:
        raise AgentError(f"creating agent {name!r} stopped part-way ({getattr(exc, 'message', exc)}); nothing "
                         "done is lost: run the same `agent create` again to finish", field=getattr(exc, "field", None)
                         or "funding", status=getattr(exc, "status", 400)) from exc
    record.state = "ready"
    registry.save(record)
    return record


def _start(registry: AgentRegistry, keyring: Keyring, *, name: str, owner: LocalAccount, policy: AgentPolicy,
           plan: FundingPlan, passphrase: str) -> tuple[AgentRecord, LocalAccount]:
    """The agent's record and key: new, or those of a creation that stopped part-way (same options only)."""
    if registry.exists(name):
        record = registry.get(name)
        if record.state == "ready":
            raise AgentError(f"an agent named {name!r} already exists", field="name", status=409)
        asked = {"owner": owner.address, "policy": policy.model_dump(), "plan": plan.to_record()}
        began = {"owner": record.owner, "policy": record.policy.model_dump(), "plan": record.plan}
        differ = [k for k in asked if asked[k] != began[k]]
        if differ:
            raise AgentError(f"agent {name!r} was partly created with another {', '.join(differ)}; rerun "
                             "`agent create` with the options it began with to finish it", field=differ[0],
                             status=409)
        return record, keyring.unlock(record.key_name, passphrase)
    key_name = agent_key_name(name)
    try:  # a key without a record: the first run stopped between the two; adopt the key
        agent = keyring.unlock(key_name, passphrase)
    except NotFoundError:
        agent = Account.create()
        keyring.new(key_name, passphrase, private_key=agent.key)
    record = AgentRecord(name=name, address=agent.address, owner=owner.address, key_name=key_name, policy=policy,
                         state="funding", plan=plan.to_record(), created_at=int(time.time()))
    registry.save(record)
    return record, agent


def _deposit(node: NodeClient, agent: LocalAccount, amount: int) -> list[dict]:
    escrow = node.info()["contracts"]["PaymentEscrow"]
    return [node.chain.send(agent, "LedgerToken", "approve", [escrow, amount]),
            node.chain.send(agent, "PaymentEscrow", "deposit", [amount])]


def enforced_policy(node: NodeClient, address: str, reader: LocalAccount | None = None) -> dict | None:
    """The policy the node enforces for the agent at `address` (amounts as integers); None if it has none.
    `reader` (the owner or the agent) signs the read, so the private Datanets it allows are named."""
    try:
        policy = dict(node.agents.standing(address, reader=reader)["policy"])
    except LedgerError as exc:
        if exc.status != 404:
            raise
        return None
    policy["budget"] = int(policy["budget"])
    if policy.get("max_price_per_1k") is not None:
        policy["max_price_per_1k"] = int(policy["max_price_per_1k"])
    return policy


def change_policy(node: NodeClient, registry: AgentRegistry, name: str, owner: LocalAccount, *,
                  policy: AgentPolicy | None = None, paused: bool | None = None) -> AgentRecord:
    """The owner replaces the agent's policy, or pauses or resumes it; the node's copy (which it enforces) first,
    then the home's. Either way it applies from the agent's next action."""
    record = registry.get(name)
    if owner.address != record.owner:
        raise AgentError(f"key {owner.address} is not agent {name!r}'s owner ({record.owner})", field="owner")
    if policy is not None:
        # A new policy keeps the pause the node enforces now: a pause made elsewhere (another home, the SDK, the
        # API) is lifted only by a resume, never by changing a budget from this home's older copy.
        enforced = enforced_policy(node, record.address, reader=owner)
        if enforced is not None:
            policy = policy.model_copy(update={"paused": enforced["paused"]})
        node.agents.set_policy(owner, record.address, policy_message(policy))
        record.policy = policy
    if paused is not None:
        node.agents.set_paused(owner, record.address, paused)
        record.policy.paused = paused
    registry.save(record)
    return record
