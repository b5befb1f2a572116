"""Creating an agent: its own key, its owner's transfer, and the escrow deposit and cap the agent signs itself."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledgerlm.agents.audit import AuditEntry, AuditLog
from ledgerlm.agents.errors import AgentError
from ledgerlm.agents.policy import AgentPolicy
from ledgerlm.agents.registry import AgentRecord, AgentRegistry
from ledgerlm.client import NodeClient
from ledgerlm.identity import Keyring

GAS_WEI = 10**17  # what the owner sends for the agent's own transactions (deposit, stake, votes)


@dataclass(frozen=True)
class FundingPlan:
    """What the owner moves to the agent: the escrow deposit (`budget`), validator stake, and gas."""

    budget: int
    stake: int = 0
    gas_wei: int = GAS_WEI


def agent_key_name(name: str) -> str:
    return f"agent-{name}"


def create_agent(node: NodeClient, registry: AgentRegistry, keyring: Keyring, *, name: str, owner: LocalAccount,
                 policy: AgentPolicy, plan: FundingPlan, passphrase: str) -> AgentRecord:
    """Make the agent's encrypted key, fund it from the owner, and let the agent deposit, stake and sign its cap.

    The owner's key signs only the two transfers; every later signature (the escrow deposit, the stake, the
    spending cap and the API key bound to it) is the agent's, so the escrow contract holds the agent to
    its own cap whatever the node does."""
    if registry.exists(name):
        raise AgentError(f"an agent named {name!r} already exists", field="name", status=409)
    # a per-epoch budget may be funded for several epochs at once; the cap the agent signs is always one budget
    if plan.budget < policy.budget or (plan.budget != policy.budget and not policy.per_epoch):
        raise AgentError(f"the deposit ({plan.budget}) must equal the budget ({policy.budget}), or exceed it for a "
                         "per-epoch budget", field="budget")
    agent = Account.create()
    keyring.new(agent_key_name(name), passphrase, private_key=agent.key)
    audit = AuditLog(registry.audit_path(name))
    steps = [
        ("fund_gas", owner, lambda: node.chain.send_eth(owner, agent.address, plan.gas_wei)),
        ("fund_tokens", owner, lambda: node.chain.transfer(owner, agent.address, plan.budget + plan.stake)),
        ("escrow_deposit", agent, lambda: _deposit(node, agent, plan.budget)),
    ]
    if plan.stake:
        steps.append(("stake", agent, lambda: node.chain.stake(agent, "validator", plan.stake)))
    for step, signer, run in steps:
        done = run()
        txs = [t["tx_hash"] for t in (done if isinstance(done, list) else [done])]
        audit.append(AuditEntry(agent=name, tool=step, args={"signer": signer.address}, ok=True, tx_hashes=txs))
    key, stored = node.serving.create_key(agent, policy.budget)
    audit.append(AuditEntry(agent=name, tool="spending_cap", args={"cap": str(policy.budget)}, ok=True,
                            result={"key_id": stored["id"], "epoch": stored["epoch"]}))
    return registry.add(AgentRecord(name=name, address=agent.address, owner=owner.address,
                                    key_name=agent_key_name(name), policy=policy, api_key=key,
                                    key_epoch=stored["epoch"], created_at=int(time.time())))


def _deposit(node: NodeClient, agent: LocalAccount, amount: int) -> list[dict]:
    escrow = node.info()["contracts"]["PaymentEscrow"]
    return [node.chain.send(agent, "LedgerToken", "approve", [escrow, amount]),
            node.chain.send(agent, "PaymentEscrow", "deposit", [amount])]
