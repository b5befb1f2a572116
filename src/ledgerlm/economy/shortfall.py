"""Debits that fall short after an epoch's plan: what the escrow lets a node take from a consumer right now, and
the consumer's receipts re-split from what was taken."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledgerlm.money import split_by_weight

# A lowered cap's grace that ends this close to now may be over before the chunk lands: debit by the new cap.
GRACE_MARGIN_SECONDS = 120


@dataclass(frozen=True)
class Debitable:
    """What a node may debit from a consumer now: the least of what the cap in force leaves and the balance."""

    amount: int
    cap: int
    spent: int  # already debited under the cap this period
    balance: int

    def reason(self, owed: int) -> str:
        """Why `owed` could not be debited in full, in words a consumer and an operator can act on."""
        rest = f"; the other {owed - self.amount} stays owed and is charged at a later close the cap allows"
        if self.cap == 0:
            return (f"owed {owed}, charged {self.amount}: the spending cap for this node was revoked before "
                    f"settlement{rest}")
        if self.amount == self.balance and self.balance < self.cap - self.spent:
            return f"owed {owed}, charged {self.amount}: the escrow held only {self.balance} at settlement{rest}"
        return (f"owed {owed}, charged {self.amount}: the spending cap in force at settlement was {self.cap} with "
                f"{self.spent} already spent this period{rest}")


def debitable(escrow, consumer: str, settler: str, now: int) -> Debitable:
    """Read the cap in force (the replaced cap while a lowering's grace lasts), what this period already spent of
    it, and the consumer's escrow balance, from the chain at `now` (its head's time)."""
    cap, grace_ends_at = escrow.cap_in_force(consumer, settler)
    allowance = escrow.spending_cap(consumer, settler)
    if grace_ends_at and grace_ends_at < now + GRACE_MARGIN_SECONDS:
        cap = allowance.cap
    balance = escrow.balance_of(consumer)
    return Debitable(min(max(0, cap - allowance.spent), balance), cap, allowance.spent, balance)


def charged_receipts(receipts: list[Mapping], charged: Mapping[str, int]) -> list[dict]:
    """The receipts as the epoch pays them. For a consumer debited less than they owed (`charged`, by consumer),
    what was debited is split over their receipts by fee, and each receipt's payouts are re-split from its part in
    the proportions the receipt names; each split by largest remainder, so every one conserves its total. Such a
    receipt gains `charged` (what it pays out), `signed_payouts` (the split it was written with) and `owed_payouts`
    (each line less what it is paid now: what stays owed, and is charged at a later close)."""
    cut: dict[str, int] = {}
    for consumer, amount in charged.items():
        fees = {r["id"]: int(r["fee"]) for r in receipts if r["consumer"] == consumer and int(r["fee"]) > 0}
        if fees:
            cut.update(split_by_weight(int(amount), fees))
            cut.update({rid: cut.get(rid, 0) for rid in fees})
    out = []
    for r in receipts:
        r = dict(r)
        if r["id"] in cut:
            lines = r["payouts"] or []
            r["signed_payouts"] = lines
            r["charged"] = str(cut[r["id"]])
            r["payouts"], r["owed_payouts"] = cut_payouts(lines, cut[r["id"]])
        out.append(r)
    return out


def cut_payouts(lines: list[Mapping], charged: int) -> tuple[list[dict], list[dict]]:
    """A receipt's payout lines when only `charged` of their total is paid: the lines paid now (`charged` split in
    the lines' proportions, largest remainder) and the lines still owed (each less what it is paid now). The close
    cuts with it and `epoch verify` recomputes with it, so the two can never split differently."""
    weights = {i: int(p["amount"]) for i, p in enumerate(lines)}
    parts = split_by_weight(charged, weights) if charged and any(weights.values()) else {}
    paid = [{**p, "amount": str(parts[i])} for i, p in enumerate(lines) if parts.get(i)]
    owed = [{**p, "amount": str(int(p["amount"]) - parts.get(i, 0))} for i, p in enumerate(lines)
            if int(p["amount"]) - parts.get(i, 0)]
    return paid, owed
