"""Every token is accounted for across the whole flow: random sequences of deposits, standing caps, calls
(receipts), slashes, withdrawals, epoch closes and claims on a real node and chain (the embedded EVM, and anvil when installed) keep

    claims + unclaimed + unspent deposits + stakes, held slashes and the slashed pool + wallets + treasury == supply

to the base unit, and every balance matches what a plain model of the policy predicts."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from ledgerlm.chain import StakeRole
from ledgerlm.config import Home
from ledgerlm.economy.earnings import earnings, record_spending_cap
from ledgerlm.economy.errors import EconomyError
from ledgerlm.node import Node
from tests.chain.conftest import anvil_url  # noqa: F401 - the fixture that starts the session's anvil node
from tests.economy.helpers import key, write_receipt

UNIT = 10**18
CONSUMERS = [key(f"consumer-{i}") for i in range(3)]
DEV = key("developer")
VALIDATOR = key("validator")
CAP_LIFETIME = 365 * 24 * 3600


@dataclass
class Consumer:
    wallet: int = 0
    escrow: int = 0
    owed: int = 0  # receipts not yet settled
    cap: int = 0  # the standing cap per period given to the node
    spent: dict[int, int] = field(default_factory=dict)  # per cap period: debited by the node


TREASURY = key("treasury")
ADMIN = key("admin")


@dataclass
class Template:
    """A node home with the contracts deployed, copied afresh for every example; on anvil also the chain
    snapshot every example starts from."""

    home: Home
    url: str = ""
    snapshot: str = ""

    def treasury(self, node: Node):
        return node.faucet_account if not self.url else TREASURY


@pytest.fixture(scope="module", params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def template(request, tmp_path_factory) -> Template:
    home = Home(tmp_path_factory.mktemp("template") / "home")
    if request.param == "embedded":
        node = Node.init(home)
        try:
            for account in (VALIDATOR, *CONSUMERS):
                node.chain.send_eth(node.faucet_account, account.address, 10**18)
        finally:
            node.close()
        return Template(home)
    from ledgerlm.chain import deploy_all

    url = request.getfixturevalue("anvil_url")
    node = Node.init(home, chain=url)
    try:
        for account in (ADMIN, TREASURY, VALIDATOR, *CONSUMERS, node.account):
            node.chain.w3.provider.make_request("anvil_setBalance", [account.address, hex(10 * 10**18)])
        deploy_all(node.chain, ADMIN, treasury=TREASURY.address, node=node.account.address).save(
            home.deployment_path)
        snapshot = node.chain.w3.provider.make_request("evm_snapshot", [])["result"]
    finally:
        node.close()
    return Template(home, url, snapshot)


class Economy(RuleBasedStateMachine):
    home: Home
    template: Template

    @initialize()
    def start(self):
        self.node = Node.open(self.home)
        self.treasury = self.template.treasury(self.node)
        self.c = self.node.contracts
        self.supply = self.c.token.total_supply()
        self.consumers = {a.address: Consumer() for a in CONSUMERS}
        self.keys = {a.address: a for a in CONSUMERS}
        self.payees = {self.node.account.address: 0, DEV.address: 0}  # claimed so far
        self.epoch = 1
        self.staked = 0
        self.slashed = 0
        self.round = 0

    def teardown(self):
        self.node.close()

    @rule(who=st.sampled_from(CONSUMERS), amount=st.integers(1, 20).map(lambda n: n * UNIT // 2))
    def deposit(self, who, amount):
        self.c.token.transfer(self.treasury, who.address, amount)
        self.c.escrow.deposit(who, amount)
        self.consumers[who.address].escrow += amount

    @rule(who=st.sampled_from(CONSUMERS), cap=st.integers(0, 12).map(lambda n: n * UNIT))
    def sign_cap(self, who, cap):
        deadline = self.node.chain.head().timestamp + CAP_LIFETIME
        settler = self.node.account.address
        nonce = self.c.escrow.spending_cap(who.address, settler).nonce + 1
        signed = self.c.escrow.sign_spending_cap(who, settler, cap, nonce, deadline)

        def relay():
            record_spending_cap(self.node.db, self.c.escrow, self.node.account, consumer=who.address,
                                settler=settler, cap=cap, nonce=nonce, deadline=deadline,
                                signature="0x" + signed.signature.hex())

        if self.c.escrow.balance_of(who.address) == 0:  # the node pays no gas for a cap that debits nothing
            with pytest.raises(EconomyError, match="deposit first"):
                relay()
            return
        relay()
        self.consumers[who.address].cap = cap

    @rule(who=st.sampled_from(CONSUMERS), fee=st.one_of(st.integers(1, 3 * UNIT), st.integers(1, 99)))
    def call(self, who, fee):
        write_receipt(self.node, who.address, fee, DEV.address)
        self.consumers[who.address].owed += fee

    @rule(who=st.sampled_from(CONSUMERS), share=st.integers(1, 4))
    def withdraw(self, who, share):
        model = self.consumers[who.address]
        amount = model.escrow * share // 4
        if amount == 0:
            return
        self.c.escrow.request_withdrawal(who, amount)
        self.node.chain.advance_time(self.c.escrow.withdraw_delay_seconds())
        self.c.escrow.withdraw(who)
        model.escrow -= amount
        model.wallet += amount

    @rule(amount=st.integers(1, 50).map(lambda n: n * UNIT))
    def slash_a_validator(self, amount):
        """A validator stakes; a recorded round outcome slashes them (at most the contract's 10% cap)."""
        self.c.token.transfer(self.treasury, VALIDATOR.address, amount)
        self.c.staking.stake(VALIDATOR, StakeRole.VALIDATOR, amount)
        self.staked += amount
        self.round += 1
        _, taken = self.node._slash(self.round, "0x" + "11" * 32, VALIDATOR.address, int(StakeRole.VALIDATOR), amount)
        self.staked -= taken
        self.slashed += taken

    @rule()
    def close(self):
        period = self.node.chain.head().timestamp // self.c.escrow.cap_period_seconds()
        result = self.node.economy.close()
        payable = {a: m.owed for a, m in self.consumers.items()
                   if m.owed and m.cap - m.spent.get(period, 0) >= m.owed and m.escrow >= m.owed}
        if not payable:
            assert result["state"] == "empty"
            return
        assert result["epoch"] == self.epoch and int(result["charged"]) == sum(payable.values())
        for address, owed in payable.items():
            self.consumers[address].escrow -= owed
            self.consumers[address].owed = 0
            self.consumers[address].spent[period] = self.consumers[address].spent.get(period, 0) + owed
        self.epoch += 1

    @rule(payee=st.sampled_from(["node", "developer"]))
    def claim(self, payee):
        address = self.node.account.address if payee == "node" else DEV.address
        for e in earnings(self.node.db, self.c.distributor, address)["epochs"]:
            if e["claimable"] and not e["claimed"]:
                self.c.distributor.claim(self.node.account, int(e["chain_epoch"]), address, int(e["amount"]), e["proof"])
                self.payees[address] += int(e["amount"])

    @invariant()
    def every_token_is_accounted_for(self):
        if not hasattr(self, "node"):
            return
        c, t = self.c, self.c.token
        for address, model in self.consumers.items():
            assert c.escrow.balance_of(address) == model.escrow
            assert t.balance_of(address) == model.wallet
        for address, claimed in self.payees.items():
            assert t.balance_of(address) == claimed
        assert t.balance_of(c.staking.address) == self.staked + c.staking.slashes_held() + c.staking.reward_pool()
        assert c.staking.slashes_held() + c.staking.reward_pool() == self.slashed  # no close here pays a round's validators
        unclaimed = t.balance_of(c.distributor.address)
        deposits = t.balance_of(c.escrow.address)
        assert deposits == sum(m.escrow for m in self.consumers.values())
        treasury = t.balance_of(self.treasury.address)
        wallets = sum(m.wallet for m in self.consumers.values())
        claims = sum(self.payees.values())
        assert claims + unclaimed + deposits + t.balance_of(c.staking.address) + wallets + treasury == self.supply


def _run(template: Template, tmp_path, examples: int, steps: int) -> None:
    counter = iter(range(10**6))

    class FreshEconomy(Economy):
        def __init__(self):
            home = Home(tmp_path / f"example-{next(counter)}")
            shutil.copytree(template.home.root, home.root)
            if template.url:  # back to the deployed opening, and a new snapshot for the next example
                import httpx

                def rpc(method, params):
                    return httpx.post(template.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                          "params": params}).json()["result"]

                assert rpc("evm_revert", [template.snapshot])
                template.snapshot = rpc("evm_snapshot", [])
            type(self).home, type(self).template = home, template
            super().__init__()

    run_state_machine_as_test(FreshEconomy, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def test_tokens_in_equal_tokens_out_over_random_sequences(template, tmp_path):
    _run(template, tmp_path, examples=3, steps=10)


@pytest.mark.slow
def test_tokens_in_equal_tokens_out_over_many_long_sequences(template, tmp_path):
    _run(template, tmp_path, examples=40, steps=30)
