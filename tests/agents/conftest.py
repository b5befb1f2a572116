"""A node serving a tiny random Llama as its base model at a price, and an owner with LGR and gas."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from ledgerlm.agents import AgentPolicy, AgentRegistry, FundingPlan, change_policy, create_agent
from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.config import Home
from ledgerlm.identity import Keyring
from ledgerlm.node import Node

UNIT = 10**18
PRICE = 10**15  # base units per 1k tokens for the base model
BUDGET = 10**15  # enough for a few short calls, far from enough for a long one
PASSPHRASE = "agent-passphrase-for-tests"
GAS = 10**16  # wei per agent: a dozen agents share the owner's one faucet grant


@dataclass
class AgentWorld:
    home: Home
    client: NodeClient
    node: Node
    owner: object
    registry: AgentRegistry
    keyring: Keyring

    def create(self, name: str, stake: int = 0, **policy) -> object:
        policy = AgentPolicy(budget=policy.pop("budget", BUDGET), **policy)
        return create_agent(self.client, self.registry, self.keyring, name=name, owner=self.owner, policy=policy,
                            plan=FundingPlan(budget=policy.budget, stake=stake, gas_wei=GAS), passphrase=PASSPHRASE)

    def account(self, name: str):
        return self.keyring.unlock(f"agent-{name}", PASSPHRASE)

    def set_policy(self, name: str, **changes) -> object:
        """The owner signs a changed policy for the node (which enforces it from the agent's next action)."""
        policy = self.registry.get(name).policy.model_copy(update=changes)
        return change_policy(self.client, self.registry, name, self.owner, policy=policy)

    def pause(self, name: str, paused: bool = True) -> object:
        return change_policy(self.client, self.registry, name, self.owner, paused=paused)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    root = tmp_path_factory.mktemp("agents")
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.serving_base_price, config.torch_threads = str(PRICE), 1
    # one validator per contribution and one-second round phases, so a validator agent's round fits in a test
    config.validators_per_contribution, config.round_commit_seconds, config.round_reveal_seconds = 1, 1, 1
    home.save_config(config)
    owner = Account.from_key(b"\x0a" * 32)
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        client.factory.register_base("tiny", str(tiny_random_model(root / "tiny", ["The reef is copper."])))
        client.chain.faucet(owner.address, eth_wei=UNIT, tokens=10 * UNIT)
        yield AgentWorld(home, client, http.app.state.node, owner, AgentRegistry(home.root / "agents"),
                         Keyring(home.keys))
