"""Paying an epoch's pools: each receipt's direct payouts, the validators' share by stake × agreement ×
reputation, slashed stake to the epoch's validators, and each Datanet's data pool by data valuation."""

from __future__ import annotations

import math
from collections.abc import Callable

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from ledgerlm.economy.payouts import Ledger
from ledgerlm.store.schema import (
    contribution_events,
    contributions,
    datanets,
    gate_reports,
    reputation,
    validation_rounds,
    version_members,
    versions,
)
from ledgerlm.validation.reputation import NEUTRAL_BPS, reward_multiplier_bps

DEAD_STATES = ("rejected", "withdrawn")
VALUE_SCALE = 10**9  # valuation scores are floats; integer weights keep the split exact


def _record_weights(rows: list) -> list[int]:
    """Each accepted record's weight in VALUE_SCALE units: its value relative to its batch's mean; as the average
    record (1) when never valued (its batch was a lone record before there was data to value it against, or
    valuation failed). A value stored before values were relative is made relative within its batch, the reports
    one gate run wrote (they share its time)."""
    from ledgerlm.validation.valuation import relative_values

    legacy: dict[int, dict[int, float]] = {}  # gate run time -> {row: raw value}
    for i, (_, value, at) in enumerate(rows):
        if isinstance(value, dict) and value.get("value") is not None and "relative" not in value:
            score = value["value"]
            legacy.setdefault(int(at or 0), {})[i] = float(score) if isinstance(score, (int, float)) else 0.0
    made = {i: v for batch in legacy.values() for i, v in relative_values(batch).items()}
    weights = []
    for i, (_, value, _) in enumerate(rows):
        if not isinstance(value, dict) or value.get("value") is None:
            weights.append(VALUE_SCALE)
            continue
        score = made[i] if i in made else value.get("relative")
        # an infinite or unreadable score would stop the close
        ok = isinstance(score, (int, float)) and 0 < score < math.inf
        weights.append(int(score * VALUE_SCALE) if ok else 0)
    return weights


def valuation_weights(conn: Connection, datanet: str, version: int | None = None) -> dict[str, int]:
    """Contributors of the Datanet's accepted data (of one version, when given), by data valuation: each record
    by its value relative to its batch's (`relative_values`), a record never valued as an average one; by
    accepted count when every record was valued at nothing; the owner when nothing is accepted."""
    query = (select(contributions.c.contributor, gate_reports.c.value, gate_reports.c.created_at)
             .join(datanets, datanets.c.id == contributions.c.datanet_id)
             .outerjoin(gate_reports, gate_reports.c.contribution_id == contributions.c.id)
             .where(datanets.c.name == datanet))
    if version is None:
        query = query.where(contributions.c.state == "accepted")
    else:  # the version's members, less data withdrawn or rejected since it was cut
        query = query.join(version_members, version_members.c.contribution_id == contributions.c.id).join(
            versions, versions.c.id == version_members.c.version_id).where(and_(
                versions.c.number == version, contributions.c.state.notin_(DEAD_STATES)))
    rows = conn.execute(query).all()
    valued: dict[str, int] = {}
    counted: dict[str, int] = {}
    for (contributor, _, _), weight in zip(rows, _record_weights(rows)):
        counted[contributor] = counted.get(contributor, 0) + 1
        valued[contributor] = valued.get(contributor, 0) + weight
    if any(valued.values()):
        return {c: w for c, w in valued.items() if w}
    if counted:
        return counted
    owner = conn.execute(select(datanets.c.owner).where(datanets.c.name == datanet)).scalar()
    return {owner: 1}


class PoolPayer:
    """Collects one epoch's receipts into direct credits and per-Datanet pools, then pays the pools."""

    def __init__(self, conn: Connection, epoch: int, shares: frozenset[tuple[str, str]] = frozenset(),
                 basis: dict[str, dict] | None = None, stake_at_risk: Callable[[str], int] | None = None):
        self.conn = conn
        self.epoch = epoch
        # A validator's stake still at risk now (staked, or cooling down to leave, in the validator role): a round
        # pays by the stake it was opened with, and stake since withdrawn, or handed to another key that staked it
        # again, would otherwise earn twice for one stake. None: rounds pay by their opening stake alone.
        self.stake_at_risk = stake_at_risk
        self._at_risk: dict[str, int] = {}
        # How each pool is split (its rounds and weights), written down at the plan: a re-plan after a consumer's
        # debit fell short gives it back, so the same pools, smaller, split the same way whatever rounds, reputations
        # and valuations did since.
        self.fixed = basis
        self.basis: dict[str, dict] = {}
        # Assets with issued revenue shares: their revenue goes to holders, collected here by source.
        self.shares = shares
        self.asset_revenue: dict[tuple[str, str], dict[str, int]] = {}
        self.validator_pools: dict[str, int] = {}
        self.data_pools: dict[str, int] = {}
        self.redirected: list[dict] = []
        self.paid: list[dict] = []
        self._rounds_used: set[int] = set()
        self._dead_since: dict[int, int] | None = None

    # ------------------------------------------------------------------ receipts

    def add_receipt(self, ledger: Ledger, receipt) -> None:
        rid, model = receipt["id"], receipt["model_id"]
        for p in receipt["payouts"] or []:
            amount, datanet = int(p["amount"]), p.get("datanet")
            if p["role"] == "developer" and ("model", model) in self.shares:
                self._to_holders(("model", model), "developer", amount)
            elif p["role"] in ("node", "developer"):
                ledger.credit(p["account"], amount, p["role"], receipt=rid, model=model)
            elif p["role"] == "contributor":
                kept = self._live_share(receipt, p["account"], amount)
                ledger.credit(p["account"], kept, "contributor", receipt=rid, datanet=datanet, model=model)
                if amount - kept:
                    self.data_pools[datanet] = self.data_pools.get(datanet, 0) + amount - kept
                    self.redirected.append({"receipt": rid, "account": p["account"], "datanet": datanet,
                                            "amount": str(amount - kept)})
            elif p["role"] == "validators":
                self.validator_pools[datanet] = self.validator_pools.get(datanet, 0) + amount
            elif p["role"] == "data_pool":
                self.data_pools[datanet] = self.data_pools.get(datanet, 0) + amount

    def add_access(self, datanet: str, amount: int) -> None:
        """A developer's payment to train on the Datanet: its revenue, like its data pool."""
        if ("datanet", datanet) in self.shares:
            self._to_holders(("datanet", datanet), "access", amount)
        else:
            self.data_pools[datanet] = self.data_pools.get(datanet, 0) + amount

    def _to_holders(self, asset: tuple[str, str], source: str, amount: int) -> None:
        sources = self.asset_revenue.setdefault(asset, {})
        sources[source] = sources.get(source, 0) + amount

    def _live_share(self, receipt, account: str, amount: int) -> int:
        """The part of a contributor payout backed by contributions still live when the call was served:
        rejected or withdrawn data earns nothing after its state changed."""
        attribution = receipt["attribution"] or {}
        shares = [c for c in attribution.get("contributions", []) if c.get("contributor") == account]
        whole = sum(int(c.get("bps", 0)) for c in shares)
        if not whole:
            return amount
        dead = self._dead()
        live = sum(int(c.get("bps", 0)) for c in shares
                   if dead.get(int(c["contribution_id"]), receipt["created_at"] + 1) > receipt["created_at"])
        return amount * live // whole

    def _dead(self) -> dict[int, int]:
        if self._dead_since is None:
            self._dead_since = {}
            for cid, at in self.conn.execute(select(contribution_events.c.contribution_id,
                                                    contribution_events.c.created_at)
                                             .where(contribution_events.c.state.in_(DEAD_STATES))):
                self._dead_since[cid] = min(at, self._dead_since.get(cid, at))
        return self._dead_since

    # ------------------------------------------------------------------ validators

    def _rounds(self, datanet: str | None, *, public_only: bool = False) -> list:
        """This epoch's tallied rounds (of one Datanet, or all; `public_only`: of public Datanets); for a
        Datanet without any this epoch, every round it ever had, so the validators who built its data keep
        earning from it."""
        query = (select(validation_rounds.c.id, validation_rounds.c.tally, validation_rounds.c.rewarded_epoch)
                 .join(datanets, datanets.c.id == validation_rounds.c.datanet_id)
                 .where(validation_rounds.c.state == "tallied"))
        if datanet is not None:
            query = query.where(datanets.c.name == datanet)
        if public_only:
            query = query.where(datanets.c.visibility == "public")
        rows = self.conn.execute(query.order_by(validation_rounds.c.id)).all()
        fresh = [r for r in rows if r.rewarded_epoch is None]
        return fresh if fresh or datanet is None else rows

    def _validator_weights(self, rounds) -> dict[str, int]:
        weights: dict[str, int] = {}
        for r in rounds:
            for validator, outcome in ((r.tally or {}).get("validators") or {}).items():
                weight = int(outcome.get("reward_weight", 0))
                stake = int(outcome.get("stake", 0))
                if weight and stake and self.stake_at_risk is not None:
                    if validator not in self._at_risk:
                        self._at_risk[validator] = self.stake_at_risk(validator)
                    # stake × agreement, the stake no more than what is still at risk (exact: weight is a multiple)
                    weight = weight * min(stake, self._at_risk[validator]) // stake
                if weight:
                    weights[validator] = weights.get(validator, 0) + weight
        for validator in list(weights):
            rep = self.conn.execute(select(reputation.c.bps).where(and_(
                reputation.c.address == validator, reputation.c.role == "validator"))).scalar()
            weights[validator] *= reward_multiplier_bps(NEUTRAL_BPS if rep is None else rep)
        return weights

    def _basis(self, key: str, find: Callable[[], tuple[list[int], dict[str, int]]]
               ) -> tuple[list[int], dict[str, int]]:
        """The rounds and weights pool `key` is split by: found now at a plan, or the plan's on a re-plan."""
        if self.fixed is None:
            rounds, weights = find()
        else:
            kept = self.fixed.get(key, {"rounds": [], "weights": {}})
            rounds, weights = list(kept["rounds"]), {a: int(w) for a, w in kept["weights"].items()}
        self.basis[key] = {"rounds": rounds, "weights": {a: str(w) for a, w in sorted(weights.items())}}
        return rounds, weights

    def pay_slashed_stake(self, ledger: Ledger, pool: int) -> int:
        """Slashed stake goes to the validators of this epoch's rounds on public Datanets; returns how much was
        paid (0 when no round this epoch earned any weight: the pool waits on chain for the next epoch).

        A private Datanet's rounds are scored only by its owner and the members the owner chose: an owner
        could score a round of many trivial records with a key of its own and take most of what others'
        slashes brought. Those rounds earn from their own Datanet's validator pool, not from this one."""
        rounds = [] if self.fixed is not None else [r for r in self._rounds(None, public_only=True)
                                                    if r.rewarded_epoch is None]
        ids, weights = self._basis("slashed_stake", lambda: ([r.id for r in rounds], self._validator_weights(rounds)))
        if not pool or not weights:
            return 0
        split = ledger.credit_split(pool, weights, "slashed_stake", rounds=ids)
        self._rounds_used.update(ids)
        self.paid.append({"kind": "slashed_stake", "datanet": None, "amount": str(pool), "rounds": ids,
                          "split": {a: str(v) for a, v in sorted(split.items())}})
        return pool

    # ------------------------------------------------------------------ pools

    def pay_pools(self, ledger: Ledger) -> None:
        for datanet, amount in sorted(self.validator_pools.items()):
            rounds = [] if self.fixed is not None else self._rounds(datanet)
            ids, weights = self._basis(f"validators:{datanet}",
                                       lambda rounds=rounds: ([r.id for r in rounds], self._validator_weights(rounds)))
            if not weights:  # nobody validated this Datanet: its data earns the share instead
                self.data_pools[datanet] = self.data_pools.get(datanet, 0) + amount
                continue
            split = ledger.credit_split(amount, weights, "validator", datanet=datanet, rounds=ids)
            self._rounds_used.update(r.id for r in rounds if r.rewarded_epoch is None)
            self.paid.append({"kind": "validators", "datanet": datanet, "amount": str(amount), "rounds": ids,
                              "split": {a: str(v) for a, v in sorted(split.items())}})
        for datanet, amount in sorted(self.data_pools.items()):
            if ("datanet", datanet) in self.shares:
                self._to_holders(("datanet", datanet), "data_pool", amount)
                continue
            _, weights = self._basis(f"data_pool:{datanet}", lambda datanet=datanet: ([], self._data_weights(datanet)))
            split = ledger.credit_split(amount, weights, "data_pool", datanet=datanet)
            self.paid.append({"kind": "data_pool", "datanet": datanet, "amount": str(amount), "rounds": [],
                              "split": {a: str(v) for a, v in sorted(split.items())}})

    def _data_weights(self, datanet: str) -> dict[str, int]:
        return valuation_weights(self.conn, datanet)

    def mark_rounds(self, conn: Connection) -> None:
        if self._rounds_used:
            conn.execute(update(validation_rounds).where(validation_rounds.c.id.in_(sorted(self._rounds_used)))
                         .values(rewarded_epoch=self.epoch))

    def published(self) -> list[dict]:
        return self.paid + [{"kind": "redirected", **r} for r in self.redirected]
