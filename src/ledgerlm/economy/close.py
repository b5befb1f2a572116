"""Closing a settlement epoch: freeze and plan in one database transaction, then settle, release and
post on chain in steps that are each idempotent, so a rerun after a crash finishes without paying twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, insert, select, update

from ledgerlm.chain import Debit
from ledgerlm.economy.access import resolve_pending, settled_access
from ledgerlm.economy.compute import expire_unreported, pay_jobs, settled_jobs
from ledgerlm.economy.epochs import open_epoch
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.payouts import Ledger, payout_tree
from ledgerlm.economy.pools import PoolPayer
from ledgerlm.economy.shares import load_assets, pay_holders
from ledgerlm.store import Database
from ledgerlm.store.schema import epoch_chunks, epoch_debits, epoch_payouts, epochs, receipts

# A withdrawal that becomes available within this much of the close may leave before the settlement lands.
SETTLE_MARGIN_SECONDS = 600
STEPS = ("plan", "settle", "rewards", "post", "publish")


@dataclass
class EpochCloser:
    """Everything a close needs: the database, the contracts, the node's key and where files go."""

    db: Database
    contracts: object  # ledgerlm.chain.Contracts
    node_account: object  # the hot key: settles, releases rewards, posts roots
    epochs_dir: Path
    chunk_size: int = 200
    after_step: Callable[[int, str], None] | None = None  # called after each committed step
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self) -> dict:
        """Close the open epoch, or finish one a crash interrupted; returns the epoch's summary."""
        # The cadence thread and an operator's request never close at once, nor do two nodes on one database.
        with self._lock, self.db.exclusive("epoch-close"):
            return self._close(plan=True)

    def finish(self) -> dict:
        """Finish a close a crash interrupted, and start none: another node may have finished it meanwhile."""
        with self._lock, self.db.exclusive("epoch-close"):
            return self._close(plan=False)

    def _close(self, *, plan: bool) -> dict:
        unfinished = self._unfinished()
        number = unfinished if unfinished is not None or not plan else self._plan()
        if number is None:
            return {"state": "empty", "message": "nothing to settle: the open epoch stays open"}
        self._step(number, "plan")
        self._settle(number)
        self._step(number, "settle")
        self._release(number)
        self._step(number, "rewards")
        self._post(number)
        self._step(number, "post")
        self.publish(number)
        self._step(number, "publish")
        return self.summary(number)

    def _step(self, number: int, step: str) -> None:
        if self.after_step is not None:
            self.after_step(number, step)

    def _unfinished(self) -> int | None:
        with self.db.connect() as conn:
            return conn.execute(select(epochs.c.number).where(epochs.c.state.in_(("planned", "settled", "posted")))
                                .order_by(epochs.c.number).limit(1)).scalar()

    # ------------------------------------------------------------------ plan (one transaction)

    def _plan(self) -> int | None:
        c = self.contracts
        resolve_pending(self.db, c.escrow)
        head = c.chain.head()  # the closing block: share holders are paid by their balance at its end
        now = head.timestamp
        # The epoch is opened (on a fresh node) in a write of its own: a read that wrote it would need the
        # write lock late, which SQLite refuses at once once another writer has committed meanwhile.
        with self.db.begin() as conn:
            number = open_epoch(conn)
        with self.db.connect() as conn:
            access = settled_access(conn, number)
            jobs = settled_jobs(conn, number)
            assets = load_assets(conn, issued_by=head.number)
            rows = conn.execute(select(receipts).where(and_(
                receipts.c.state == "final", receipts.c.settled_epoch.is_(None), receipts.c.epoch <= number,
            )).order_by(receipts.c.created_at, receipts.c.id)).mappings().all()
        owed: dict[str, int] = {}
        for r in rows:
            if r["consumer"] and int(r["fee"]) > 0:
                owed[r["consumer"]] = owed.get(r["consumer"], 0) + int(r["fee"])
        debits, unpaid = {}, {}
        for consumer, amount in sorted(owed.items()):
            reason = self._cannot_charge(consumer, amount, now)
            (unpaid if reason else debits)[consumer] = reason or amount
        paid = [r for r in rows if r["consumer"] in debits or not r["consumer"] or int(r["fee"]) == 0]
        ledger = Ledger()
        with self.db.connect() as conn:
            pools = PoolPayer(conn, number, shares=frozenset(assets))
            for r in paid:
                pools.add_receipt(ledger, r)
            for payment in access:
                pools.add_access(payment["datanet"], int(payment["amount"]))
            compute = pay_jobs(ledger, jobs)
            rewards = c.staking.reward_pool()
            rewards = pools.pay_slashed_stake(ledger, rewards)
            pools.pay_pools(ledger)
            pools.paid += pay_holders(ledger, c, assets, pools.asset_revenue, head.number)
        charged = sum(debits.values())
        access_total = sum(int(p["amount"]) for p in access)
        jobs_total = sum(int(j["amount"]) for j in jobs)
        if ledger.total != charged + rewards + access_total + jobs_total:  # conservation, before anything is written
            raise EconomyError(f"epoch {number}: payouts {ledger.total} != debits {charged} + rewards {rewards} "
                               f"+ access {access_total} + compute {jobs_total}", field="epoch", status=500)
        if ledger.total == 0:
            return None
        tree = payout_tree((p.account, p.amount) for p in ledger.accounts.values())
        leaves = {v[0]: i for i, v in enumerate(tree.values)}
        chunks = [sorted(debits)[i:i + self.chunk_size] for i in range(0, len(debits), self.chunk_size)]
        with self.db.begin() as conn:
            # The next epoch is opened below: the same turn `open_epoch` takes to open one.
            self.db.lock(conn, "epochs:open")
            if open_epoch(conn) != number:
                raise EconomyError("another close planned this epoch meanwhile; run it again", field="epoch",
                                   status=409)
            for i, members in enumerate(chunks):
                conn.execute(insert(epoch_chunks).values(epoch=number, chunk=i, state="planned", tx=None,
                                                         total=str(sum(debits[m] for m in members))))
            debit_rows = [{"epoch": number, "consumer": m, "amount": str(debits[m]), "chunk": i, "state": "planned",
                           "reason": None} for i, members in enumerate(chunks) for m in members]
            debit_rows += [{"epoch": number, "consumer": m, "amount": str(owed[m]), "chunk": None, "state": "unpaid",
                            "reason": why} for m, why in unpaid.items()]
            if debit_rows:
                conn.execute(insert(epoch_debits), debit_rows)
            conn.execute(insert(epoch_payouts), [
                {"epoch": number, "account": p.account, "amount": str(p.amount),
                 "proof": tree.proof(leaves[p.account]), "sources": p.sources()}
                for p in ledger.accounts.values()])
            paid_ids = [r["id"] for r in paid]
            for start in range(0, len(paid_ids), 500):
                conn.execute(update(receipts).where(receipts.c.id.in_(paid_ids[start:start + 500]))
                             .values(settled_epoch=number))
            pools.mark_rounds(conn)
            expire_unreported(conn, jobs)
            details = {"receipts": len(paid), "consumers": len(debits), "unpaid": len(unpaid), "charged": str(charged),
                       "rewards": str(rewards), "chunks": len(chunks), "pools": pools.published(),
                       "access": str(access_total), "access_payments": access, "compute": str(jobs_total),
                       "compute_jobs": compute, "closing_block": head.number}
            conn.execute(update(epochs).where(epochs.c.number == number).values(
                state="planned", closed_at=int(time.time()), root=tree.root, total=str(ledger.total), details=details))
            conn.execute(insert(epochs).values(number=number + 1, state="open", opened_at=int(time.time())))
        return number

    def _cannot_charge(self, consumer: str, amount: int, now: int) -> str | None:
        """Why a consumer cannot be charged in full this epoch, or None if they can."""
        escrow = self.contracts.escrow
        # the cap in force on chain: the consumer may have lowered or revoked it since signing
        allowance = escrow.spending_cap(consumer, self.node_account.address)
        if allowance.cap == 0:
            return "no spending cap for this node (never given, or revoked)"
        if allowance.left < amount:  # paid access debits the same cap
            return (f"owes {amount} but the spending cap {allowance.cap} has {allowance.left} left in this period "
                    f"(until {allowance.period_ends_at})")
        balance = escrow.balance_of(consumer)
        pending = escrow.pending_withdrawal(consumer)
        if pending.amount and pending.available_at <= now + SETTLE_MARGIN_SECONDS:
            balance -= pending.amount  # may leave before the settlement lands
        if balance < amount:
            return f"owes {amount} but holds {max(balance, 0)} in escrow"
        return None

    # ------------------------------------------------------------------ chain steps (idempotent)

    def _settle(self, number: int) -> None:
        escrow = self.contracts.escrow
        with self.db.connect() as conn:
            chunks = conn.execute(select(epoch_chunks).where(and_(epoch_chunks.c.epoch == number,
                                                                  epoch_chunks.c.state == "planned"))
                                  .order_by(epoch_chunks.c.chunk)).all()
        for chunk in chunks:
            tx = None
            if not escrow.is_chunk_settled(number, chunk.chunk):  # a crash may have landed it already
                tx = escrow.settle(self.node_account, number, chunk.chunk, self._debits(number, chunk.chunk)).tx_hash
            with self.db.begin() as conn:
                conn.execute(update(epoch_chunks).where(and_(epoch_chunks.c.epoch == number,
                                                             epoch_chunks.c.chunk == chunk.chunk))
                             .values(state="settled", tx=tx))
        with self.db.begin() as conn:
            conn.execute(update(epochs).where(and_(epochs.c.number == number, epochs.c.state == "planned"))
                         .values(state="settled"))

    def _debits(self, number: int, chunk: int) -> list[Debit]:
        with self.db.connect() as conn:
            rows = conn.execute(select(epoch_debits.c.consumer, epoch_debits.c.amount)
                                .where(and_(epoch_debits.c.epoch == number, epoch_debits.c.chunk == chunk))
                                .order_by(epoch_debits.c.consumer)).all()
        return [Debit(r.consumer, int(r.amount)) for r in rows]

    def _release(self, number: int) -> None:
        rewards = int(self._row(number)["details"]["rewards"])
        staking = self.contracts.staking
        if rewards and not staking.rewards_released(number):
            staking.release_rewards(self.node_account, number, rewards)

    def _post(self, number: int) -> None:
        row = self._row(number)
        if row["state"] == "posted":
            return
        funding = self.contracts.distributor.epoch(number)
        if funding is None or funding.root is None:
            self.contracts.distributor.post_root(self.node_account, number, row["root"], int(row["total"]))
        with self.db.begin() as conn:
            conn.execute(update(epochs).where(epochs.c.number == number).values(state="posted"))

    def _row(self, number: int):
        with self.db.connect() as conn:
            row = conn.execute(select(epochs).where(epochs.c.number == number)).mappings().first()
        if row is None:
            raise EconomyError(f"no epoch {number}", field="epoch", status=404)
        return row

    # ------------------------------------------------------------------ publication

    def publish(self, number: int) -> Path:
        """Write the epoch's payout and receipt files (atomically), then mark it published."""
        files = published_files(self.db, number, self.contracts)
        directory = self.epochs_dir / str(number)
        directory.mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            tmp = directory / f"{name}.json.tmp"
            tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
            tmp.replace(directory / f"{name}.json")
        with self.db.begin() as conn:
            conn.execute(update(epochs).where(and_(epochs.c.number == number, epochs.c.state == "posted"))
                         .values(state="published"))
        return directory

    def summary(self, number: int) -> dict:
        row = self._row(number)
        details = row["details"] or {}
        return {"epoch": number, "state": row["state"], "root": row["root"], "total": row["total"],
                **{k: details.get(k) for k in ("receipts", "consumers", "unpaid", "charged", "rewards", "chunks")},
                "files": str(self.epochs_dir / str(number))}


def published_files(db: Database, number: int, contracts=None) -> dict[str, dict]:
    """The payout file (accounts, amounts, proofs, sources, pools) and the receipts file of an epoch."""
    with db.connect() as conn:
        row = conn.execute(select(epochs).where(epochs.c.number == number)).mappings().first()
        if row is None or row["root"] is None:
            raise EconomyError(f"epoch {number} has no payout tree yet", field="epoch", status=404)
        payouts = conn.execute(select(epoch_payouts).where(epoch_payouts.c.epoch == number)
                               .order_by(epoch_payouts.c.account)).mappings().all()
        debits = conn.execute(select(epoch_debits).where(epoch_debits.c.epoch == number)
                              .order_by(epoch_debits.c.consumer)).mappings().all()
        paid = conn.execute(select(receipts.c.id, receipts.c.consumer, receipts.c.model_id, receipts.c.fee,
                                   receipts.c.payouts, receipts.c.attribution, receipts.c.created_at)
                            .where(receipts.c.settled_epoch == number).order_by(receipts.c.id)).mappings().all()
    details = row["details"] or {}
    payout_file = {
        "epoch": number, "root": row["root"], "total": row["total"], "charged": details.get("charged"),
        "rewards": details.get("rewards"), "pools": details.get("pools", []),
        "access": details.get("access", "0"), "access_payments": details.get("access_payments", []),
        "compute": details.get("compute", "0"), "compute_jobs": details.get("compute_jobs", []),
        "closing_block": details.get("closing_block"),
        "chain_id": contracts.chain.chain_id if contracts else None,
        "distributor": contracts.distributor.address if contracts else None,
        "payouts": [{"account": p["account"], "amount": p["amount"], "proof": p["proof"], "sources": p["sources"]}
                    for p in payouts],
        "debits": [{"consumer": d["consumer"], "amount": d["amount"], "state": d["state"], "reason": d["reason"]}
                   for d in debits],
    }
    receipt_file = {"epoch": number, "receipts": [dict(r) for r in paid]}
    return {"payouts": payout_file, "receipts": receipt_file}
