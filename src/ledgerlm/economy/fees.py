"""How one fee is priced and split between node, developer, contributors, the data pool and validators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ledgerlm.economy.errors import EconomyError
from ledgerlm.money import BPS, split_by_weight

ROLES = ("node", "developer", "contributor", "data_pool", "validators")


@dataclass(frozen=True)
class FeeShares:
    """A model's fee policy in basis points; the four shares sum to exactly 10,000."""

    node_bps: int
    developer_bps: int
    contributors_bps: int
    validators_bps: int

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EconomyError(f"{name} must be a non-negative integer", field=name)
        total = self.node_bps + self.developer_bps + self.contributors_bps + self.validators_bps
        if total != BPS:
            raise EconomyError(f"fee shares must sum to {BPS} basis points, not {total}", field="fee_policy")

    @classmethod
    def from_dict(cls, policy: Mapping[str, int]) -> FeeShares:
        try:
            return cls(**{k: policy[k] for k in ("node_bps", "developer_bps", "contributors_bps", "validators_bps")})
        except KeyError as missing:
            raise EconomyError(f"fee policy lacks {missing.args[0]}", field="fee_policy") from None

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Payout:
    """One line of a receipt: who (or which pool) is owed how many base units, and in what role.

    `account` is None for pools (`data_pool`, `validators`), which the epoch close pays out per
    Datanet: the data pool by data valuation, the validators' pool by stake × agreement.
    """

    role: str
    account: str | None
    datanet: str | None
    amount: int

    def to_dict(self) -> dict:
        return {"role": self.role, "account": self.account, "datanet": self.datanet, "amount": str(self.amount)}

    @classmethod
    def from_dict(cls, row: Mapping) -> Payout:
        return cls(row["role"], row.get("account"), row.get("datanet"), int(row["amount"]))


def price_fee(prompt_tokens: int, completion_tokens: int, price_per_1k: int) -> int:
    """The fee for a call: tokens × price per 1,000 tokens, rounded up so a call is never free by rounding."""
    for name, value in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens),
                        ("price_per_1k", price_per_1k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EconomyError(f"{name} must be a non-negative integer", field=name)
    return -(-(prompt_tokens + completion_tokens) * price_per_1k // 1000)


def split_fee(fee: int, shares: FeeShares, *, node: str, developer: str, datanet: str | None,
              contributor_bps: Mapping[str, int] | None = None, evidence_bps: int = 0) -> list[Payout]:
    """Split one fee into payouts that sum exactly to it.

    Node, developer and validators get floor(fee × their bps). Of the contributor share, the part
    backed by attribution evidence (`evidence_bps` of it) goes to the attributed contributors in
    proportion to `contributor_bps`; everything else — the part evidence does not cover and every
    rounding remainder — goes to the Datanet's data pool. Without a Datanet (a base model) there
    are no contributors or validators to pay: their shares and the remainders go to the node.
    """
    if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
        raise EconomyError("fee must be a non-negative integer", field="fee")
    if isinstance(evidence_bps, bool) or not isinstance(evidence_bps, int) or not 0 <= evidence_bps <= BPS:
        raise EconomyError(f"evidence_bps must be an integer in [0, {BPS}]", field="evidence_bps")
    contributor_bps = {a: w for a, w in (contributor_bps or {}).items() if w > 0}
    developer_amount = fee * shares.developer_bps // BPS
    if datanet is None:
        payouts = [Payout("developer", developer, None, developer_amount),
                   Payout("node", node, None, fee - developer_amount)]
        return [p for p in payouts if p.amount > 0]
    node_amount = fee * shares.node_bps // BPS
    validators_amount = fee * shares.validators_bps // BPS
    contributor_pool = fee * shares.contributors_bps // BPS
    attributed = contributor_pool * evidence_bps // BPS if contributor_bps else 0
    payouts = [Payout("node", node, None, node_amount), Payout("developer", developer, None, developer_amount)]
    if attributed:
        for account, amount in sorted(split_by_weight(attributed, contributor_bps).items()):
            payouts.append(Payout("contributor", account, datanet, amount))
    payouts.append(Payout("validators", None, datanet, validators_amount))
    paid = sum(p.amount for p in payouts)
    payouts.append(Payout("data_pool", None, datanet, fee - paid))
    return [p for p in payouts if p.amount > 0]
