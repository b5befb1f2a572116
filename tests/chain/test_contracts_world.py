"""A deployed settlement world for the contract unit tests: one deployment per module and backend.

Each contract module builds its own module-scoped `world` fixture with `open_world`, parametrised
over `BACKENDS` (the embedded chain and anvil), and checks refusals with `reverts`. Tests stay
independent without redeploying: every test takes fresh, gas-funded accounts from `world.actor()`
and fresh ids or epoch numbers from `world.fresh_id()` / `world.fresh_epoch()`, so nothing one
test does is visible to another. This module holds no tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledgerlm.chain import (
    Chain,
    ChainError,
    Contracts,
    deploy_all,
    epoch_id,
    open_embedded,
    open_rpc,
    role_id,
)
from ledgerlm.chain.merkle import StandardMerkleTree

TOKEN = 10**18
ETHER = 10**18
COOLDOWN = 3600
WITHDRAW_DELAY = 600
CLAIM_WINDOW = 7200
# Embedded accounts are prefunded at genesis, so the pool is fixed up front; anvil funds on demand.
POOL_SIZE = 160
PAYOUT_TYPES = ["address", "uint256"]

BACKENDS = ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)]


@dataclass
class World:
    """Contracts on one chain, with an admin, a node holding the operating roles and a treasury that
    holds LGR's fixed supply (and, in these tests only, may fund epochs directly)."""

    chain: Chain
    contracts: Contracts
    admin: LocalAccount
    node: LocalAccount
    treasury: LocalAccount
    salt: bytes
    _pool: Iterator[int] = field(default_factory=itertools.count)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def actor(self, tokens: int = 0) -> LocalAccount:
        """A fresh account with gas money and `tokens` base units sent to it from the treasury."""
        index = next(self._pool)
        account = pool_account(self.salt, index)
        if self.chain.kind == "embedded" and index >= POOL_SIZE:
            raise RuntimeError("the embedded account pool is used up; raise POOL_SIZE")
        if self.chain.kind != "embedded":
            self.chain.w3.provider.make_request("anvil_setBalance",
                                                [account.address, hex(100 * ETHER)])
        if tokens:
            self.contracts.token.transfer(self.treasury, account.address, tokens)
        return account

    def fresh_id(self, label: str = "id") -> bytes:
        return keccak(text=f"{label}:{next(self._ids)}")

    def fresh_epoch(self, node: LocalAccount | None = None) -> int:
        """A fresh epoch id of `node` (the world's node by default): only that node settles and posts it."""
        return epoch_id((node or self.node).address, next(self._ids))

    def now(self) -> int:
        return self.chain.head().timestamp

    def fund_payouts(self, payouts: list[tuple[str, int]], total: int | None = None,
                     ) -> tuple[int, StandardMerkleTree]:
        """Fund a fresh epoch from the treasury and post its payout tree; return (epoch, tree).

        `total` (default: the payouts' sum) is what the epoch is funded with and what the root is
        posted for, so a test can build an epoch whose leaves ask for more than it holds.
        """
        tree = StandardMerkleTree.of([[a, v] for a, v in payouts], PAYOUT_TYPES)
        amount = sum(v for _, v in payouts) if total is None else total
        epoch = self.fresh_epoch()
        self.contracts.distributor.fund(self.treasury, epoch, amount)
        self.contracts.distributor.post_root(self.node, epoch, tree.root, amount)
        return epoch, tree


def pool_account(salt: bytes, index: int) -> LocalAccount:
    return Account.from_key(keccak(salt + index.to_bytes(8, "big")))


def open_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[World]:
    """Deploy the settlement contracts on the requested backend for one test module."""
    salt = request.module.__name__.encode() + b"/" + request.param.encode()
    admin, node, treasury = (pool_account(salt + b"/role", i) for i in range(3))
    if request.param == "embedded":
        prefund = {a.address: 1000 * ETHER for a in (admin, node, treasury)}
        prefund.update({pool_account(salt, i).address: 100 * ETHER for i in range(POOL_SIZE)})
        chain = open_embedded(tmp_path_factory.mktemp("chain"), prefund=prefund, durable=False)
    else:
        chain = open_rpc(request.getfixturevalue("anvil_url"), expected_chain_id=31337)
        for a in (admin, node, treasury):
            chain.w3.provider.make_request("anvil_setBalance", [a.address, hex(1000 * ETHER)])
    deployment = deploy_all(chain, admin, treasury=treasury.address, node=node.address,
                            cooldown=COOLDOWN, withdraw_delay=WITHDRAW_DELAY, claim_window=CLAIM_WINDOW)
    contracts = Contracts(chain, deployment)
    contracts.distributor.grant_role(admin, "FUNDER_ROLE", treasury.address)
    yield World(chain, contracts, admin, node, treasury, salt)
    chain.close()


@contextmanager
def reverts(error_name: str, **expected_args: Any) -> Iterator[pytest.ExceptionInfo[ChainError]]:
    """Expect a ChainError decoded to the contract's custom error `error_name` with these args."""
    with pytest.raises(ChainError) as caught:
        yield caught
    error = caught.value
    assert error.error_name == error_name, f"expected {error_name}, got {error.reason}"
    for name, value in expected_args.items():
        assert error.error_args[name] == value, f"{error_name}.{name}: {error.error_args}"


def unauthorised(account: str, role: str):
    """Expect OpenZeppelin's AccessControl refusal of `account` for lacking `role`."""
    return reverts("AccessControlUnauthorizedAccount", account=account, neededRole=role_id(role))
