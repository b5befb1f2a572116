"""Random sequences of settlement actions never break the money invariants users rely on.

A hypothesis state machine drives deposits, withdrawals, epoch settlements (payout trees built in
Python), claims (honest, repeated, forged), stakes, unstakes, withdrawals, slashes by authorised
and unauthorised accounts, transfers, mints and time jumps against a fresh chain per example. A
plain-Python model predicts every outcome, including the exact custom error of each refusal, and
after every step the chain must agree with the model on:

- every tracked token balance, escrow balance and stake position (so no balance moves without
  its owner's signature or an authorised role, and none goes negative);
- total supply == initial supply + mints;
- the escrow's token balance == the sum of consumer balances, the staking contract's == the sum of
  stakes, the distributor's == what funded epochs have not paid out yet;
- per epoch, claims never exceed the funded total and an account claims at most once.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledgerlm.chain import (
    ChainError,
    Contracts,
    Debit,
    Deployment,
    StakeRole,
    deploy_all,
    open_embedded,
    open_rpc,
    role_id,
)
from ledgerlm.chain.merkle import StandardMerkleTree

TOKEN = 10**18
ETHER = 10**18
COOLDOWN = 1000
WITHDRAW_DELAY = 500
ROLE = StakeRole.VALIDATOR
PAYOUT_TYPES = ["address", "uint256"]
OPENING_BALANCE = 100 * TOKEN
FAR_DEADLINE = 10**7  # seconds past the head: beyond every time jump an example can make
REASON = keccak(text="rejected-contribution")

CONSUMERS = ("alice", "bob")  # deposit, get debited, stake and get slashed
PAYEES = ("carol", "alice", "bob")  # consumers are paid as well as charged
EVERYONE = ("alice", "bob", "carol", "mallory")  # mallory never holds a role


def key_of(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"ledgerlm-invariants:{name}"))


ACCOUNTS = {name: key_of(name) for name in (*EVERYONE, "admin", "node", "treasury")}
# Every example starts from the same opening: wallets minted, deposits and stakes made and epoch 1
# settled (alice 10 and bob 6 debited, paid out to carol, alice and bob), so the first random
# steps already have balances to debit, stakes to slash and payouts to claim.
OPENING_WALLETS = {"alice": 100 * TOKEN, "bob": 100 * TOKEN, "mallory": 10 * TOKEN}
OPENING_DEPOSITS = {"alice": 50 * TOKEN, "bob": 50 * TOKEN}
OPENING_STAKES = {"alice": 20 * TOKEN, "bob": 20 * TOKEN}
OPENING_DEBITS = {"alice": 10 * TOKEN, "bob": 6 * TOKEN}
OPENING_PAYOUTS = [("carol", 8 * TOKEN), ("alice", 5 * TOKEN), ("bob", 3 * TOKEN)]


def amounts(most: int = 60) -> st.SearchStrategy[int]:
    """Mostly whole tokens, sometimes one base unit more or a few base units, so edges show."""
    kinds = st.sampled_from(["whole"] * 4 + ["odd", "dust"])
    return st.tuples(kinds, st.integers(1, most)).map(
        lambda k: {"whole": k[1] * TOKEN, "odd": k[1] * TOKEN + 1, "dust": k[1] % 3}[k[0]])


def payout_tree(payouts: list[tuple[str, int]]) -> StandardMerkleTree:
    return StandardMerkleTree.of([[a, v] for a, v in payouts], PAYOUT_TYPES)


@dataclass
class Template:
    """A chain with the contracts deployed and the opening played, copied for every example."""

    kind: str
    deployment: Deployment
    directory: Path | None = None  # embedded: a closed chain directory to copy
    url: str = ""  # anvil: the node, reverted to `snapshot` per example
    snapshot: str = ""


@dataclass
class Epoch:
    total: int
    payouts: list[tuple[str, int]]
    tree: StandardMerkleTree
    claimed: int = 0
    claimed_by: set[str] = field(default_factory=set)


@dataclass
class Pending:
    amount: int = 0
    available_at: int = 0


def _deploy(chain) -> Deployment:
    """Deploy the contracts and play the opening every example starts from."""
    admin, node = ACCOUNTS["admin"], ACCOUNTS["node"]
    deployment = deploy_all(chain, admin, treasury=ACCOUNTS["treasury"].address,
                            node=node.address, cooldown=COOLDOWN, withdraw_delay=WITHDRAW_DELAY, node_funds_epochs=True)
    c = Contracts(chain, deployment)
    for name, amount in OPENING_WALLETS.items():
        c.token.mint(node, ACCOUNTS[name].address, amount)
    for name, amount in OPENING_DEPOSITS.items():
        c.escrow.deposit(ACCOUNTS[name], amount)
    for name, amount in OPENING_STAKES.items():
        c.staking.stake(ACCOUNTS[name], ROLE, amount)
    deadline = chain.head().timestamp + FAR_DEADLINE
    debits = [Debit(ACCOUNTS[name].address, amount, amount, deadline,
                    c.escrow.sign_spending_cap(ACCOUNTS[name], node.address, 1, amount, deadline))
              for name, amount in OPENING_DEBITS.items()]
    tree = payout_tree([(ACCOUNTS[n].address, v) for n, v in OPENING_PAYOUTS])
    c.escrow.settle_epoch(node, 1, tree.root, debits)
    return deployment


@pytest.fixture(scope="module")
def embedded_template(tmp_path_factory) -> Template:
    directory = tmp_path_factory.mktemp("invariants-template")
    prefund = {a.address: 1000 * ETHER for a in ACCOUNTS.values()}
    chain = open_embedded(directory, prefund=prefund, durable=False)
    try:
        deployment = _deploy(chain)
    finally:
        chain.close()
    return Template("embedded", deployment, directory=directory)


@pytest.fixture(scope="module")
def anvil_template(anvil_url) -> Template:
    chain = open_rpc(anvil_url, expected_chain_id=31337)
    for account in ACCOUNTS.values():
        chain.w3.provider.make_request("anvil_setBalance", [account.address, hex(1000 * ETHER)])
    deployment = _deploy(chain)
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]
    chain.close()
    return Template("anvil", deployment, url=anvil_url, snapshot=snapshot)


class SettlementMachine(RuleBasedStateMachine):
    """The contracts on a fresh chain, shadowed by a model that predicts every outcome."""

    def __init__(self, template: Template):
        super().__init__()
        self.template = template
        self._directory: Path | None = None
        if template.kind == "embedded":
            self._directory = Path(tempfile.mkdtemp(prefix="example-",
                                                    dir=template.directory.parent))
            shutil.copytree(template.directory, self._directory, dirs_exist_ok=True)
            (self._directory / "chain.lock").unlink(missing_ok=True)
            self.chain = open_embedded(self._directory, durable=False)
        else:
            self.chain = open_rpc(template.url, expected_chain_id=31337)
            provider = self.chain.w3.provider
            assert provider.make_request("evm_revert", [template.snapshot])["result"]
            # anvil consumes a snapshot on revert; take it again for the next example.
            template.snapshot = provider.make_request("evm_snapshot", [])["result"]
        self.c = Contracts(self.chain, template.deployment)
        self.node = ACCOUNTS["node"]
        self.address = {name: a.address for name, a in ACCOUNTS.items()}
        for name in ("escrow", "staking", "distributor"):
            self.address[name] = getattr(self.c, name).address
        # Untracked accounts (the node, the admin) are covered by supply == sum of these.
        self.balances = {name: OPENING_WALLETS.get(name, 0) - OPENING_DEPOSITS.get(name, 0)
                         - OPENING_STAKES.get(name, 0) for name in (*EVERYONE, "treasury")}
        self.balances["escrow"] = sum(OPENING_DEPOSITS.values()) - sum(OPENING_DEBITS.values())
        self.balances["staking"] = sum(OPENING_STAKES.values())
        self.balances["distributor"] = sum(OPENING_DEBITS.values())
        self.supply = sum(OPENING_WALLETS.values())
        self.escrowed = {n: OPENING_DEPOSITS[n] - OPENING_DEBITS[n] for n in CONSUMERS}
        self.escrow_pending = {name: Pending() for name in CONSUMERS}
        self.spent = {(n, 1): OPENING_DEBITS[n] for n in CONSUMERS}
        self.active = dict(OPENING_STAKES)
        self.unstaking = {name: Pending() for name in CONSUMERS}
        payouts = [(self.address[n], v) for n, v in OPENING_PAYOUTS]
        self.epochs = {1: Epoch(sum(OPENING_DEBITS.values()), payouts, payout_tree(payouts))}
        self.next_epoch = 2
        self.checked_block: int | None = None

    def teardown(self) -> None:
        self.chain.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------

    def refused(self, error_name: str, action, **args) -> None:
        with pytest.raises(ChainError) as caught:
            action()
        assert caught.value.error_name == error_name, caught.value.reason
        for name, value in args.items():
            assert caught.value.error_args[name] == value, caught.value.reason

    def move(self, source: str, target: str, amount: int) -> None:
        assert 0 <= amount <= self.balances[source]
        self.balances[source] -= amount
        self.balances[target] += amount

    def now(self) -> int:
        return self.chain.head().timestamp

    def mined_at(self, result) -> int:
        return int(self.chain.w3.eth.get_block(result.block_number)["timestamp"])

    def wait_outcome(self, pending: Pending, withdraw, not_ready: str, field_name: str):
        """Run a time-locked withdrawal; the chain's clock decides, the model checks it agrees."""
        before = self.now()
        try:
            result = withdraw()
        except ChainError as exc:
            assert exc.error_name == not_ready, exc.reason
            assert exc.error_args[field_name] == pending.available_at
            assert pending.available_at > before
            return None
        assert self.mined_at(result) >= pending.available_at
        return result

    # -- tokens ------------------------------------------------------------------------------

    @rule(sender=st.sampled_from(EVERYONE), to=st.sampled_from(EVERYONE), amount=amounts(40),
          thief=st.sampled_from([False, False, True]))
    def transfer(self, sender, to, amount, thief):
        if thief:  # mallory tries to move someone else's tokens without an allowance
            self.refused("ERC20InsufficientAllowance", lambda: self.c.token.transfer_from(
                ACCOUNTS["mallory"], self.address[sender], self.address["mallory"], amount + 1))
            return
        action = lambda: self.c.token.transfer(ACCOUNTS[sender], self.address[to], amount)
        if amount > self.balances[sender]:
            self.refused("ERC20InsufficientBalance", action, needed=amount)
            return
        action()
        self.move(sender, to, amount)

    @rule(to=st.sampled_from(EVERYONE), amount=amounts(20), by_node=st.booleans())
    def mint(self, to, amount, by_node):
        if not by_node:
            self.refused("AccessControlUnauthorizedAccount", lambda: self.c.token.mint(
                ACCOUNTS["mallory"], self.address["mallory"], amount),
                neededRole=role_id("MINTER_ROLE"))
            return
        self.c.token.mint(self.node, self.address[to], amount)
        self.balances[to] += amount
        self.supply += amount

    # -- escrow ------------------------------------------------------------------------------

    @rule(consumer=st.sampled_from(CONSUMERS), amount=amounts(70))
    def deposit(self, consumer, amount):
        action = lambda: self.c.escrow.deposit(ACCOUNTS[consumer], amount)
        if amount == 0:
            self.refused("ZeroAmount", action)
        elif amount > self.balances[consumer]:
            self.refused("ERC20InsufficientBalance", action)
        else:
            action()
            self.move(consumer, "escrow", amount)
            self.escrowed[consumer] += amount

    @rule(consumer=st.sampled_from(CONSUMERS), amount=amounts(40))
    def request_withdrawal(self, consumer, amount):
        pending = self.escrow_pending[consumer]
        action = lambda: self.c.escrow.request_withdrawal(ACCOUNTS[consumer], amount)
        if amount == 0:
            self.refused("ZeroAmount", action)
        elif pending.amount + amount > self.escrowed[consumer]:
            self.refused("InsufficientBalance", action, amount=pending.amount + amount)
        else:
            result = action()
            pending.amount += amount
            pending.available_at = self.mined_at(result) + WITHDRAW_DELAY

    @precondition(lambda self: any(p.amount for p in self.escrow_pending.values()))
    @rule(consumer=st.sampled_from(CONSUMERS))
    def withdraw_from_escrow(self, consumer):
        pending = self.escrow_pending[consumer]
        action = lambda: self.c.escrow.withdraw(ACCOUNTS[consumer])
        if pending.amount == 0:
            self.refused("NoWithdrawalPending", action)
            return
        if self.wait_outcome(pending, action, "WithdrawalNotReady", "availableAt") is None:
            return
        paid = min(pending.amount, self.escrowed[consumer])
        self.escrowed[consumer] -= paid
        self.move("escrow", consumer, paid)
        self.escrow_pending[consumer] = Pending()

    @precondition(lambda self: any(p.amount for p in self.escrow_pending.values()))
    @rule(consumer=st.sampled_from(CONSUMERS))
    def cancel_withdrawal(self, consumer):
        action = lambda: self.c.escrow.cancel_withdrawal(ACCOUNTS[consumer])
        if self.escrow_pending[consumer].amount == 0:
            self.refused("NoWithdrawalPending", action)
            return
        action()
        self.escrow_pending[consumer] = Pending()

    @rule(data=st.data())
    def settle_epoch(self, data):
        settler = data.draw(st.sampled_from(["node"] * 5 + ["mallory"]), label="settler")
        reuse = data.draw(st.integers(0, 4), label="reuse epoch") == 0
        epoch = (data.draw(st.sampled_from(sorted(self.epochs)), label="epoch") if reuse
                 else self.next_epoch)
        charges = data.draw(st.lists(st.tuples(
            st.sampled_from(CONSUMERS), amounts(30), amounts(10),
            st.sampled_from(["signed"] * 6 + ["tight cap", "expired", "forged"])),
            max_size=3), label="debits")
        payees = data.draw(st.lists(st.sampled_from(PAYEES), min_size=1, max_size=3,
                                    unique=True), label="payees")
        weights = data.draw(st.lists(st.integers(1, 5), min_size=len(payees),
                                     max_size=len(payees)), label="weights")
        # A faulty node may promise more under the root than it collects; claims must still stop.
        overpromise = data.draw(st.sampled_from([0, 0, 0, TOKEN]), label="overpromise")

        now = self.now()
        debits, outcome = [], None
        spent = dict(self.spent)
        escrowed = dict(self.escrowed)
        for consumer, amount, slack, flavour in charges:
            # The cap covers what was already spent this epoch plus this charge, with slack;
            # a tight cap leaves one base unit too little.
            cap = spent.get((consumer, epoch), 0) + amount + slack
            if flavour == "tight cap":
                cap = max(cap - slack - 1, 0)
            deadline = now - 1 if flavour == "expired" else now + FAR_DEADLINE
            signer = ACCOUNTS["mallory" if flavour == "forged" else consumer]
            signature = self.c.escrow.sign_spending_cap(signer, self.address[settler], epoch,
                                                        cap, deadline)
            debits.append(Debit(self.address[consumer], amount, cap, deadline, signature))
            if outcome is not None:
                continue
            spent_after = spent.get((consumer, epoch), 0) + amount
            if flavour == "expired":
                outcome = ("AuthorisationExpired", {"deadline": deadline})
            elif flavour == "forged":
                outcome = ("InvalidSignature", {"consumer": self.address[consumer]})
            elif spent_after > cap:
                outcome = ("CapExceeded", {"spentAfter": spent_after, "cap": cap})
            elif amount > escrowed[consumer]:
                outcome = ("InsufficientBalance", {"balance": escrowed[consumer]})
            else:
                spent[(consumer, epoch)] = spent_after
                escrowed[consumer] -= amount
        if outcome is None and epoch in self.epochs:
            outcome = ("EpochAlreadyFunded", {"epoch": epoch})
        if settler != "node":
            outcome = ("AccessControlUnauthorizedAccount", {"neededRole": role_id("SETTLER_ROLE")})

        total = sum(d.amount for d in debits)
        shares = _split(total, weights)
        payouts = [(self.address[p], share) for p, share in zip(payees, shares)]
        payouts[0] = (payouts[0][0], payouts[0][1] + overpromise)
        tree = payout_tree(payouts)
        action = lambda: self.c.escrow.settle_epoch(ACCOUNTS[settler], epoch, tree.root, debits)
        if outcome is not None:
            self.refused(outcome[0], action, **outcome[1])
            return
        action()
        self.spent, self.escrowed = spent, escrowed
        self.move("escrow", "distributor", total)
        self.epochs[epoch] = Epoch(total, payouts, tree)
        self.next_epoch += 1

    # -- distributor -------------------------------------------------------------------------

    @rule(data=st.data(), relayer=st.sampled_from((*EVERYONE, "node")))
    def claim(self, data, relayer):
        epoch_number = data.draw(st.sampled_from(sorted(self.epochs)), label="epoch")
        epoch = self.epochs[epoch_number]
        index = data.draw(st.integers(0, len(epoch.payouts) - 1), label="leaf")
        flavour = data.draw(st.sampled_from(["honest"] * 3 + ["inflated", "stolen", "unfunded"]),
                            label="claim")
        account, amount = epoch.payouts[index]
        proof = epoch.tree.proof(index)
        if flavour == "inflated":
            amount += 1
        elif flavour == "stolen":
            account = self.address["mallory"]
        payee = next(n for n, a in self.address.items() if a == account)
        target = self.next_epoch + 1000 if flavour == "unfunded" else epoch_number
        action = lambda: self.c.distributor.claim(ACCOUNTS[relayer], target, account,
                                                  amount, proof)
        remaining = epoch.total - epoch.claimed
        if flavour == "unfunded":
            self.refused("UnknownEpoch", action, epoch=target)
        elif payee in epoch.claimed_by:
            self.refused("AlreadyClaimed", action, account=account)
        elif flavour != "honest":
            self.refused("InvalidProof", action, account=account, amount=amount)
        elif amount > remaining:
            self.refused("EpochOverclaimed", action, remaining=remaining, amount=amount)
        else:
            action()
            epoch.claimed += amount
            epoch.claimed_by.add(payee)
            self.move("distributor", payee, amount)
        funding = self.c.distributor.epoch(epoch_number)
        assert funding.claimed == epoch.claimed <= funding.total == epoch.total
        assert self.c.distributor.is_claimed(epoch_number, account) == (payee in epoch.claimed_by)

    # -- staking -----------------------------------------------------------------------------

    @rule(staker=st.sampled_from(CONSUMERS), amount=amounts(30))
    def stake(self, staker, amount):
        action = lambda: self.c.staking.stake(ACCOUNTS[staker], ROLE, amount)
        if amount == 0:
            self.refused("ZeroAmount", action)
        elif amount > self.balances[staker]:
            self.refused("ERC20InsufficientBalance", action)
        else:
            action()
            self.move(staker, "staking", amount)
            self.active[staker] += amount

    @rule(staker=st.sampled_from(CONSUMERS), amount=amounts(40))
    def request_unstake(self, staker, amount):
        action = lambda: self.c.staking.request_unstake(ACCOUNTS[staker], ROLE, amount)
        if amount == 0:
            self.refused("ZeroAmount", action)
        elif amount > self.active[staker]:
            self.refused("InsufficientStake", action, available=self.active[staker])
        else:
            result = action()
            self.active[staker] -= amount
            self.unstaking[staker].amount += amount
            self.unstaking[staker].available_at = self.mined_at(result) + COOLDOWN

    @precondition(lambda self: any(p.amount for p in self.unstaking.values()))
    @rule(staker=st.sampled_from(CONSUMERS))
    def withdraw_stake(self, staker):
        pending = self.unstaking[staker]
        action = lambda: self.c.staking.withdraw(ACCOUNTS[staker], ROLE)
        if pending.amount == 0:
            self.refused("NothingToWithdraw", action)
            return
        if self.wait_outcome(pending, action, "CooldownNotElapsed", "releaseAt") is None:
            return
        self.move("staking", staker, pending.amount)
        self.unstaking[staker] = Pending()

    @rule(staker=st.sampled_from(CONSUMERS), amount=amounts(25),
          slasher=st.sampled_from(["node"] * 3 + ["admin", "mallory", "alice"]))
    def slash(self, staker, amount, slasher):
        action = lambda: self.c.staking.slash(ACCOUNTS[slasher], self.address[staker], ROLE,
                                              amount, REASON)
        held = self.active[staker] + self.unstaking[staker].amount
        if slasher != "node":
            self.refused("AccessControlUnauthorizedAccount", action,
                         account=self.address[slasher], neededRole=role_id("SLASHER_ROLE"))
        elif amount == 0:
            self.refused("ZeroAmount", action)
        elif amount > held:
            self.refused("InsufficientStake", action, available=held, requested=amount)
        else:
            action()
            from_active = min(amount, self.active[staker])
            self.active[staker] -= from_active
            self.unstaking[staker].amount -= amount - from_active
            self.move("staking", "treasury", amount)

    # -- time --------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([30, WITHDRAW_DELAY + 1, COOLDOWN + 1]))
    def let_time_pass(self, seconds):
        before = self.chain.block_number()
        head = self.chain.advance_time(seconds)
        if self.checked_block == before:
            self.checked_block = head.number  # an empty block moves the clock, not balances

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def chain_agrees_with_the_model(self):
        # State only changes in new blocks (both backends mine one per transaction), so after a
        # refused action the unchanged head proves nothing moved and the full read is skipped.
        head = self.chain.block_number()
        if head == self.checked_block:
            return
        token = self.c.token
        on_chain = {name: token.balance_of(self.address[name]) for name in self.balances}
        assert on_chain == self.balances
        assert all(v >= 0 for v in self.balances.values())
        assert token.total_supply() == self.supply == sum(on_chain.values())

        escrowed = {name: self.c.escrow.balance_of(self.address[name]) for name in CONSUMERS}
        assert escrowed == self.escrowed
        assert on_chain["escrow"] == sum(escrowed.values())

        stakes = {name: (self.c.staking.stake_of(self.address[name], ROLE),
                         self.c.staking.pending_of(self.address[name], ROLE).amount)
                  for name in CONSUMERS}
        assert stakes == {n: (self.active[n], self.unstaking[n].amount) for n in CONSUMERS}
        assert on_chain["staking"] == sum(a + p for a, p in stakes.values())

        assert on_chain["distributor"] == sum(e.total - e.claimed for e in self.epochs.values())
        assert all(e.claimed <= e.total for e in self.epochs.values())
        self.checked_block = head


def _split(total: int, weights: list[int]) -> list[int]:
    """Integer shares of `total` by weight; the last takes the remainder, so they sum exactly."""
    shares = [total * w // sum(weights) for w in weights[:-1]]
    return [*shares, total - sum(shares)]


def _settings(examples: int, steps: int, *, quick: bool) -> settings:
    # The quick runs are derandomized, so their cost is the same every time, and skip shrinking:
    # each shrink attempt replays a chain, which can take minutes; the failing run is printed
    # step by step anyway. The slow runs explore fresh sequences and shrink what they find.
    phases = [Phase.explicit, Phase.reuse, Phase.generate] if quick else list(Phase)
    return settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                    database=None, derandomize=quick, phases=phases,
                    suppress_health_check=list(HealthCheck))


def test_settlement_invariants_hold_on_the_embedded_chain(embedded_template):
    # anvil runs the same machine in the slow tier below; here it would only add time.
    run_state_machine_as_test(lambda: SettlementMachine(embedded_template),
                              settings=_settings(10, 15, quick=True))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def test_settlement_invariants_hold_over_long_random_runs(backend, request):
    template = request.getfixturevalue(f"{backend}_template")
    run_state_machine_as_test(lambda: SettlementMachine(template),
                              settings=_settings(40, 30, quick=False))
