"""An epoch's payouts: per-account integer totals with their sources, and the one-leaf-per-account payout tree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from ledgerlm.chain.merkle import StandardMerkleTree
from ledgerlm.economy.errors import EconomyError
from ledgerlm.money import split_by_weight

PAYOUT_TYPES = ["address", "uint256"]


@dataclass
class AccountPayout:
    """What one account is owed for an epoch and where every unit came from."""

    account: str
    amount: int = 0
    roles: dict[str, int] = field(default_factory=dict)
    receipts: set[str] = field(default_factory=set)
    datanets: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)
    rounds: set[int] = field(default_factory=set)
    jobs: set[int] = field(default_factory=set)

    def sources(self) -> dict:
        sources = {"roles": {k: str(v) for k, v in sorted(self.roles.items())}, "receipts": sorted(self.receipts),
                   "datanets": sorted(self.datanets), "models": sorted(self.models), "rounds": sorted(self.rounds)}
        if self.jobs:
            sources["jobs"] = sorted(self.jobs)
        return sources


class Ledger:
    """Accumulates credits per account; every credit names its role and source."""

    def __init__(self):
        self.accounts: dict[str, AccountPayout] = {}

    def credit(self, account: str, amount: int, role: str, *, receipt: str | None = None,
               datanet: str | None = None, model: str | None = None, rounds: Iterable[int] = (),
               job: int | None = None) -> None:
        if amount <= 0:
            return
        account = to_checksum_address(account)
        entry = self.accounts.setdefault(account, AccountPayout(account))
        entry.amount += amount
        entry.roles[role] = entry.roles.get(role, 0) + amount
        if receipt:
            entry.receipts.add(receipt)
        if datanet:
            entry.datanets.add(datanet)
        if model:
            entry.models.add(model)
        entry.rounds.update(rounds)
        if job is not None:
            entry.jobs.add(job)

    def credit_split(self, total: int, weights: Mapping[str, int], role: str, **source) -> dict[str, int]:
        """Split `total` by integer weights (largest remainder, so nothing is lost or created)."""
        shares = split_by_weight(total, weights) if total else {}
        for account, amount in shares.items():
            self.credit(account, amount, role, **source)
        return shares

    @property
    def total(self) -> int:
        return sum(p.amount for p in self.accounts.values())


def payout_tree(payouts: Iterable[tuple[str, int]]) -> StandardMerkleTree:
    """The epoch's StandardMerkleTree over (address, uint256) leaves, one per account.

    Claims are keyed by (epoch, account), so a second leaf for an account could never be claimed:
    refuse it rather than strand its amount.
    """
    values, seen = [], set()
    for account, amount in payouts:
        key = to_checksum_address(account)
        if key in seen:
            raise EconomyError(f"two payout leaves for {key}: an account gets one leaf per epoch", field="payouts")
        if amount <= 0:
            raise EconomyError(f"the payout to {key} must be positive, not {amount}", field="payouts")
        seen.add(key)
        values.append([key, int(amount)])
    if not values:
        raise EconomyError("an epoch with nothing to pay has no payout tree", field="payouts")
    return StandardMerkleTree.of(values, PAYOUT_TYPES)
