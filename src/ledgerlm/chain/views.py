"""What the node derives from indexed chain events: Datanets, anchored versions, deposits, settlements, roots, claims.

Every record here is read from `chain_events`, never from the node's own tables, so after a re-org
it shows what the chain now holds; a write the re-org removed is gone from these views until it is
mined again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ledgerlm.store import Database
from ledgerlm.store.schema import chain_events


@dataclass(frozen=True)
class RegisteredDatanet:
    datanet_id: str
    owner: str
    name: str
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class AnchoredVersion:
    """A Datanet version whose Merkle root the Registry holds."""

    datanet_id: str
    version: int
    root: str
    count: int
    manifest_hash: str
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Deposit:
    consumer: str
    amount: int
    balance: int  # the consumer's escrow balance right after it
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Settlement:
    """One settled chunk of an epoch's debits."""

    epoch: int
    chunk: int
    total: int
    debit_count: int
    debits_hash: str
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class PostedRoot:
    epoch: int
    root: str
    total: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Claim:
    epoch: int
    account: str
    amount: int
    block_number: int
    tx_hash: str


class ChainView:
    """The node's view of the settlement contracts, read from the event index."""

    def __init__(self, db: Database):
        self.db = db

    def _rows(self, event: str, contract: str):
        with self.db.connect() as conn:
            return conn.execute(
                select(chain_events).where(chain_events.c.event == event, chain_events.c.contract == contract)
                .order_by(chain_events.c.block_number, chain_events.c.log_index)
            ).all()

    def registered_datanets(self) -> list[RegisteredDatanet]:
        return [RegisteredDatanet(r.args["datanetId"], r.args["owner"], r.args["name"], r.block_number, r.tx_hash)
                for r in self._rows("DatanetRegistered", "Registry")]

    def anchored_versions(self) -> list[AnchoredVersion]:
        return [AnchoredVersion(r.args["datanetId"], int(r.args["version"]), r.args["root"], int(r.args["count"]),
                                r.args["manifestHash"], r.block_number, r.tx_hash)
                for r in self._rows("VersionPublished", "Registry")]

    def deposits(self, consumer: str | None = None) -> list[Deposit]:
        found = [Deposit(r.args["consumer"], int(r.args["amount"]), int(r.args["balance"]), r.block_number, r.tx_hash)
                 for r in self._rows("Deposited", "PaymentEscrow")]
        return [d for d in found if consumer is None or d.consumer.lower() == consumer.lower()]

    def settlements(self, epoch: int | None = None) -> list[Settlement]:
        found = [Settlement(int(r.args["epoch"]), int(r.args["chunk"]), int(r.args["total"]),
                            int(r.args["debitCount"]), r.args["debitsHash"], r.block_number, r.tx_hash)
                 for r in self._rows("ChunkSettled", "PaymentEscrow")]
        return [s for s in found if epoch is None or s.epoch == epoch]

    def posted_roots(self) -> list[PostedRoot]:
        return [PostedRoot(int(r.args["epoch"]), r.args["root"], int(r.args["total"]), r.block_number, r.tx_hash)
                for r in self._rows("RootPosted", "EpochDistributor")]

    def claims(self, epoch: int | None = None) -> list[Claim]:
        found = [Claim(int(r.args["epoch"]), r.args["account"], int(r.args["amount"]), r.block_number, r.tx_hash)
                 for r in self._rows("Claimed", "EpochDistributor")]
        return [c for c in found if epoch is None or c.epoch == epoch]

    def summary(self) -> dict:
        """Counts and totals per kind of record, for `chain status`."""
        deposits, settlements, claims = self.deposits(), self.settlements(), self.claims()
        return {
            "registered_datanets": len(self.registered_datanets()),
            "anchored_versions": len(self.anchored_versions()),
            "deposits": len(deposits), "deposited": sum(d.amount for d in deposits),
            "settled_chunks": len(settlements), "settled": sum(s.total for s in settlements),
            "posted_roots": len(self.posted_roots()),
            "claims": len(claims), "claimed": sum(c.amount for c in claims),
        }
