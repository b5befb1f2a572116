"""Closing a settlement epoch: freeze and plan in one database transaction, then settle, release and
post on chain in steps that are each idempotent, so a rerun after a crash finishes without paying twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from ledgerlm.chain import Debit, StakeRole, epoch_id
from ledgerlm.economy.access import CLOSE_LOCK, resolve_pending, settled_access
from ledgerlm.economy.arrears import carry_forward, charged_arrears, owed_arrears, settle_arrears
from ledgerlm.economy.compute import expire_unreported, pay_jobs, settled_jobs
from ledgerlm.economy.epochs import open_epoch
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.payouts import Ledger, payout_tree
from ledgerlm.economy.pools import PoolPayer
from ledgerlm.economy.shares import ShareAsset, load_assets, pay_holders
from ledgerlm.economy.shortfall import charged_receipts, debitable
from ledgerlm.store import Database
from ledgerlm.store.schema import (
    access_payments,
    compute_jobs,
    epoch_chunks,
    epoch_debits,
    epoch_payouts,
    epochs,
    receipts,
)

# A withdrawal that becomes available within this much of the close may leave before the settlement lands.
SETTLE_MARGIN_SECONDS = 600
STEPS = ("plan", "settle", "rewards", "post", "publish")
PLAN_ATTEMPTS = 5  # plans made while calls keep landing; the last leaves those that land during it to the next


class _LandedMeanwhile(Exception):
    """A call or payment landed in the epoch after its plan was read: plan it again."""


@dataclass
class EpochCloser:
    """Everything a close needs: the database, the contracts, the node's key and where files go."""

    db: Database
    contracts: object  # ledgerlm.chain.Contracts
    node_account: object  # the hot key: settles, releases rewards, posts roots
    epochs_dir: Path
    chunk_size: int = 200
    after_step: Callable[[int, str], None] | None = None  # called after each committed step
    # Finishes the attribution of every receipt still awaiting it (the node hands in its serving worker's).
    finish_receipts: Callable[[], object] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self) -> dict:
        """Close the open epoch, or finish one a crash interrupted; returns the epoch's summary."""
        # The cadence thread and an operator's request never close at once, nor do two nodes on one database.
        with self._lock, self.db.exclusive(CLOSE_LOCK):
            return self._close(plan=True)

    def finish(self) -> dict:
        """Finish a close a crash interrupted, and start none: another node may have finished it meanwhile."""
        with self._lock, self.db.exclusive(CLOSE_LOCK):
            return self._close(plan=False)

    def _close(self, *, plan: bool) -> dict:
        unfinished = self._unfinished()
        if unfinished is not None and self._swept(unfinished):
            return self._given_up(unfinished)
        number = unfinished if unfinished is not None or not plan else self._plan_settling()
        if number is None:
            return {"state": "empty", "message": "nothing to settle: the open epoch stays open"}
        self._step(number, "plan")
        self._settle(number)
        self._step(number, "settle")
        if self._row(number)["root"] is None:  # every debit fell short to nothing, and nothing else was paid
            return self.summary(number)
        self._release(number)
        self._step(number, "rewards")
        if self._row(number)["root"] is None:  # it paid validators only, and another node released the pool first
            return self.summary(number)
        self._post(number)
        self._step(number, "post")
        self.publish(number)
        self._step(number, "publish")
        return self.summary(number)

    def _step(self, number: int, step: str) -> None:
        if self.after_step is not None:
            self.after_step(number, step)

    def _swept(self, number: int) -> bool:
        funding = self.contracts.distributor.epoch(self.chain_epoch(number))
        return funding is not None and funding.swept

    def _given_up(self, number: int) -> dict:
        """An epoch the admin swept before this node finished it: what it held went to the treasury, and no root
        can be posted or funded under its id any more. It is marked `swept`, an end state, so the closes after it
        go on. Receipts it had not charged yet (it was still open) are left for the next epoch to charge."""
        with self.db.begin() as conn:
            row = conn.execute(select(epochs.c.state, epochs.c.details).where(epochs.c.number == number)
                               .with_for_update()).mappings().first()
            details = {**(row["details"] or {}), "swept_from": row["state"],
                       "chain_epoch": str(self.chain_epoch(number))}
            conn.execute(update(epochs).where(epochs.c.number == number).values(state="swept", details=details))
        summary = self.summary(number)
        before = "closed" if details["swept_from"] == "open" else "posted"
        summary["message"] = (f"epoch {number} was swept to the treasury before it was {before}: its payouts cannot "
                              "be claimed; close again to go on with the next epoch")
        return summary

    def _unfinished(self) -> int | None:
        with self.db.connect() as conn:
            return conn.execute(select(epochs.c.number).where(epochs.c.state.in_(("planned", "settled", "posted")))
                                .order_by(epochs.c.number).limit(1)).scalar()

    # ------------------------------------------------------------------ plan (one transaction)

    def _plan_settling(self) -> int | None:
        """Plan the open epoch, again while calls or payments keep landing in it during the plan; the last try
        plans without those that land during it (they are settled by the next close, as a receipt signed for an
        epoch may be: `epoch verify` looks for it in the epochs before), so a busy node's close always ends."""
        for _ in range(PLAN_ATTEMPTS - 1):
            try:
                return self._plan()
            except _LandedMeanwhile:
                continue
        return self._plan(strict=False)

    def _in_epoch(self, conn: Connection, number: int) -> set[tuple[str, str]]:
        """What the plan of epoch `number` must settle or knowingly leave: its receipts not settled yet, with
        their state (one whose attribution finished meanwhile is final now, and to be settled), and the access
        payments and compute jobs paid into it."""
        found = {("receipt", f"{i}:{state}") for i, state in conn.execute(select(receipts.c.id, receipts.c.state)
                                                                          .where(and_(receipts.c.settled_epoch.is_(None),
                                                                                      receipts.c.epoch <= number)))}
        found |= {("access", str(i)) for i in conn.execute(select(access_payments.c.id).where(and_(
            access_payments.c.epoch == number, access_payments.c.state == "paid"))).scalars()}
        found |= {("job", str(i)) for i in conn.execute(select(compute_jobs.c.id).where(and_(
            compute_jobs.c.epoch == number, compute_jobs.c.payment_state == "paid"))).scalars()}
        return found

    def _plan(self, *, strict: bool = True) -> int | None:
        c = self.contracts
        if self.finish_receipts is not None and self._attributing():
            # A call's receipt belongs to the epoch it was answered in. One still awaiting attribution (the node
            # restarted after answering, or a new adapter's attribution is slow) would otherwise be settled by the
            # next close, under another distributor id, and the epoch would close without all its receipts.
            self.finish_receipts()
        waiting = resolve_pending(self.db, c.escrow, self.node_account.address)
        # Slashes are held on chain, revocable by the admin key, until they mature; those that have are moved into
        # the reward pool now (anyone may), so the plan below pays validators what the pool may release.
        c.staking.settle_matured_slashes(self.node_account)
        head = c.chain.head()  # the closing block: share holders are paid by their balance at its end
        now = head.timestamp
        # The epoch is opened (on a fresh node) in a write of its own: a read that wrote it would need the
        # write lock late, which SQLite refuses at once once another writer has committed meanwhile.
        with self.db.begin() as conn:
            number = open_epoch(conn)
        if self._swept(number):  # access payments funded it, and it was swept before it was ever closed
            self._given_up(number)
            with self.db.begin() as conn:
                number = open_epoch(conn)
        late = [f"{table} {row}" for table, row, epoch in waiting if epoch == number]
        if late:
            # A plan without it could never post its root once it lands (the epoch would hold more than the plan).
            raise EconomyError(f"{', '.join(late)}: a payment into this epoch was sent but is not mined yet; the close "
                               "waits for it: close again once it is", field="epoch", status=409)
        with self.db.connect() as conn:
            seen = self._in_epoch(conn, number)
            access = settled_access(conn, number)
            jobs = settled_jobs(conn, number)
            assets = load_assets(conn, issued_by=head.number)
            rows = conn.execute(select(receipts).where(and_(
                receipts.c.state == "final", receipts.c.settled_epoch.is_(None), receipts.c.epoch <= number,
            )).order_by(receipts.c.created_at, receipts.c.id)).mappings().all()
            debts = owed_arrears(conn, number)  # what earlier closes could not charge: owed with this epoch's fees
        owed: dict[str, int] = {}
        for r in [*rows, *debts]:
            if r["consumer"] and int(r["fee"]) > 0:
                owed[r["consumer"]] = owed.get(r["consumer"], 0) + int(r["fee"])
        debits, unpaid = {}, {}
        for consumer, amount in sorted(owed.items()):
            reason = self._cannot_charge(consumer, amount, now)
            (unpaid if reason else debits)[consumer] = reason or amount
        paid = [r for r in rows if r["consumer"] in debits or not r["consumer"] or int(r["fee"]) == 0]
        recovered = [d for d in debts if d["consumer"] in debits]
        charged = sum(debits.values())
        with self.db.connect() as conn:
            # the pool within the day's release limit: what the release can pay out
            ledger, pools, compute, rewards = self._payouts(conn, number, [*paid, *recovered], access, jobs,
                                                            c.staking.releasable(), assets, head.number)
        self._check_conservation(number, ledger, charged, rewards, access, jobs)
        if ledger.total == 0:
            return None
        chunks = [sorted(debits)[i:i + self.chunk_size] for i in range(0, len(debits), self.chunk_size)]
        with self.db.begin() as conn:
            # The next epoch is opened below: the same turn `open_epoch` takes to open one.
            self.db.lock(conn, "epochs:open")
            if open_epoch(conn) != number:
                raise EconomyError("another close planned this epoch meanwhile; run it again", field="epoch",
                                   status=409)
            # A call answered (or a payment made) while the plan was read would otherwise be left to the next
            # close: its receipt signed for this epoch but settled by another, under another distributor id.
            # Writers into the epoch hold its row shared until they commit; once it is ours, none is left.
            conn.execute(select(epochs.c.number).where(epochs.c.number == number).with_for_update())
            if strict and self._in_epoch(conn, number) - seen:
                raise _LandedMeanwhile
            for i, members in enumerate(chunks):
                conn.execute(insert(epoch_chunks).values(epoch=number, chunk=i, state="planned", tx=None,
                                                         total=str(sum(debits[m] for m in members))))
            debit_rows = [{"epoch": number, "consumer": m, "amount": str(debits[m]), "chunk": i, "state": "planned",
                           "reason": None} for i, members in enumerate(chunks) for m in members]
            debit_rows += [{"epoch": number, "consumer": m, "amount": str(owed[m]), "chunk": None, "state": "unpaid",
                            "reason": why} for m, why in unpaid.items()]
            if debit_rows:
                conn.execute(insert(epoch_debits), debit_rows)
            root = self._write_payouts(conn, number, ledger)
            paid_ids = [r["id"] for r in paid]
            for start in range(0, len(paid_ids), 500):
                conn.execute(update(receipts).where(receipts.c.id.in_(paid_ids[start:start + 500]))
                             .values(settled_epoch=number))
            settle_arrears(conn, number, [d["arrear"] for d in recovered])
            pools.mark_rounds(conn)
            expire_unreported(conn, jobs)
            access_total = sum(int(p["amount"]) for p in access)
            details = {"receipts": len(paid), "consumers": len(debits), "unpaid": len(unpaid), "charged": str(charged),
                       "rewards": str(rewards), "chunks": len(chunks), "pools": pools.published(),
                       "access": str(access_total), "access_payments": access,
                       "compute": str(sum(int(j["amount"]) for j in jobs)), "compute_jobs": compute,
                       "closing_block": head.number, "chain_epoch": str(self._epoch_id(number)),
                       "shortfall": "0", "short": {}, "split_basis": pools.basis,
                       "arrears": str(sum(int(d["fee"]) for d in recovered)), "arrears_receipts": len(recovered)}
            conn.execute(update(epochs).where(epochs.c.number == number).values(
                state="planned", closed_at=int(time.time()), root=root, total=str(ledger.total), details=details))
            conn.execute(insert(epochs).values(number=number + 1, state="open", opened_at=int(time.time())))
        return number

    def _attributing(self) -> bool:
        """Whether any receipt still awaits its attribution."""
        with self.db.connect() as conn:
            return conn.execute(select(receipts.c.id).where(receipts.c.state == "attributing").limit(1)).first() \
                is not None

    def _payouts(self, conn: Connection, number: int, paid: list, access: list[dict], jobs: list[dict],
                 reward_pool: int, assets: dict[tuple[str, str], ShareAsset], block: int,
                 basis: dict[str, dict] | None = None):
        """The epoch's ledger from its paid receipts, access payments, compute jobs and slashed stake; with `basis`
        (a plan's), each pool is split by the rounds and weights that plan used. Returns (ledger, pools, the compute
        jobs paid, the slashed stake paid)."""
        ledger = Ledger()
        staking = self.contracts.staking

        def at_risk(account: str) -> int:
            return (staking.stake_of(account, StakeRole.VALIDATOR)
                    + staking.pending_of(account, StakeRole.VALIDATOR).amount)

        pools = PoolPayer(conn, number, shares=frozenset(assets), basis=basis, stake_at_risk=at_risk)
        for r in paid:
            pools.add_receipt(ledger, r)
        for payment in access:
            pools.add_access(payment["datanet"], int(payment["amount"]))
        compute = pay_jobs(ledger, jobs)
        rewards = pools.pay_slashed_stake(ledger, reward_pool)
        pools.pay_pools(ledger)
        pools.paid += pay_holders(ledger, self.contracts, assets, pools.asset_revenue, block)
        return ledger, pools, compute, rewards

    @staticmethod
    def _check_conservation(number: int, ledger: Ledger, charged: int, rewards: int, access: list[dict],
                            jobs: list[dict]) -> None:
        """Payouts equal what came in, to the base unit, before anything is written."""
        access_total = sum(int(p["amount"]) for p in access)
        jobs_total = sum(int(j["amount"]) for j in jobs)
        if ledger.total != charged + rewards + access_total + jobs_total:
            raise EconomyError(f"epoch {number}: payouts {ledger.total} != debits {charged} + rewards {rewards} "
                               f"+ access {access_total} + compute {jobs_total}", field="epoch", status=500)

    @staticmethod
    def _write_payouts(conn: Connection, number: int, ledger: Ledger) -> str | None:
        """Store the epoch's payout leaves with their proofs (replacing any); returns the root (None: nothing to pay)."""
        conn.execute(delete(epoch_payouts).where(epoch_payouts.c.epoch == number))
        if ledger.total == 0:
            return None
        tree = payout_tree((p.account, p.amount) for p in ledger.accounts.values())
        leaves = {v[0]: i for i, v in enumerate(tree.values)}
        conn.execute(insert(epoch_payouts), [
            {"epoch": number, "account": p.account, "amount": str(p.amount),
             "proof": tree.proof(leaves[p.account]), "sources": p.sources()}
            for p in ledger.accounts.values()])
        return tree.root

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

    def _epoch_id(self, number: int) -> int:
        return epoch_id(self.node_account.address, number)

    def chain_epoch(self, number: int) -> int:
        """The distributor's id of this node's epoch `number` (as its close recorded it, for closes that predate
        epoch ids carrying their node)."""
        with self.db.connect() as conn:
            details = conn.execute(select(epochs.c.details).where(epochs.c.number == number)).scalar()
        return int((details or {}).get("chain_epoch") or self._epoch_id(number))

    def _settle(self, number: int) -> None:
        escrow = self.contracts.escrow
        chain_epoch = self.chain_epoch(number)
        with self.db.connect() as conn:
            chunks = conn.execute(select(epoch_chunks).where(and_(epoch_chunks.c.epoch == number,
                                                                  epoch_chunks.c.state == "planned"))
                                  .order_by(epoch_chunks.c.chunk)).all()
        for chunk in chunks:
            tx = None
            settled = escrow.is_chunk_settled(chain_epoch, chunk.chunk)
            if not settled:
                if self.contracts.chain.in_flight(self.node_account.address):
                    # This chunk's own settlement may be among them (sent before a timeout or crash): cut to a cap
                    # lowered since and sent again, both could land, and the first would fund more than the plan.
                    raise EconomyError(f"epoch {number}: chunk {chunk.chunk} is not settled and transactions this "
                                       "node sent are not mined yet; the close resumes once they are", field="epoch",
                                       status=503)
                settled = escrow.is_chunk_settled(chain_epoch, chunk.chunk)  # mined between the two reads
            if not settled:
                debits = self._debitable(number, chunk.chunk)
                if debits:  # a chunk whose every debit fell short to nothing sends nothing
                    tx = escrow.settle(self.node_account, chain_epoch, chunk.chunk, debits).tx_hash
            else:  # a crash landed it before its transaction was recorded: the chain's log has it
                tx = self.contracts.chain.event_tx(escrow.contract, "ChunkSettled", self.contracts.deployment.block,
                                                   epoch=chain_epoch, chunk=chunk.chunk)
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

    def _debitable(self, number: int, chunk: int) -> list[Debit]:
        """The chunk's debits, each within what its consumer's cap in force and balance allow right now.

        A consumer may lower or revoke their cap (or withdraw) after the plan; a chunk sent late, e.g. by a close
        resumed after a crash, would then revert and the close stay stuck. A debit that no longer fits is cut to
        what fits and the epoch re-planned to match before the chunk is sent."""
        debits = self._debits(number, chunk)
        now = self.contracts.chain.head().timestamp
        short = {}
        for d in debits:
            can = debitable(self.contracts.escrow, d.consumer, self.node_account.address, now)
            if can.amount < d.amount:
                short[d.consumer] = can
        if short:
            self._fall_short(number, chunk, short)
            debits = self._debits(number, chunk)
        return [d for d in debits if d.amount > 0]

    def _fall_short(self, number: int, chunk: int, short: dict) -> None:
        """Cut the consumers' debits to what they can be charged and re-plan the payouts to match, in one
        transaction: the unpaid part of their fees is not distributed; it is recorded as the epoch's shortfall."""
        with self.db.begin() as conn:
            row = conn.execute(select(epochs).where(epochs.c.number == number)).mappings().first()
            details = dict(row["details"] or {})
            cut = dict(details.get("short") or {})
            planned = {d.consumer: d.amount for d in self._debits(number, chunk)}
            for consumer, can in sorted(short.items()):
                owed = int(cut.get(consumer, {}).get("owed", planned[consumer]))
                reason = can.reason(owed)
                cut[consumer] = {"owed": str(owed), "charged": str(can.amount), "reason": reason}
                conn.execute(update(epoch_debits).where(and_(epoch_debits.c.epoch == number,
                                                             epoch_debits.c.consumer == consumer))
                             .values(amount=str(can.amount), state="short", reason=reason))
            amounts = [int(a) for a in conn.execute(select(epoch_debits.c.amount).where(and_(
                epoch_debits.c.epoch == number, epoch_debits.c.chunk == chunk))).scalars()]
            conn.execute(update(epoch_chunks).where(and_(epoch_chunks.c.epoch == number, epoch_chunks.c.chunk == chunk))
                         .values(total=str(sum(amounts))))
            details.update(short=cut, shortfall=str(sum(int(v["owed"]) - int(v["charged"]) for v in cut.values())))
            self._replan(conn, number, row["state"], details)

    def _replan(self, conn: Connection, number: int, state: str, details: dict) -> None:
        """Write the epoch's payouts again from what its debits now charge (`details["short"]`: the consumers cut
        short) and the slashed stake it now pays (`details["rewards"]`), each pool split by the plan's basis."""
        cut = details.get("short") or {}
        charged = sum(int(a) for a in conn.execute(select(epoch_debits.c.amount).where(and_(
            epoch_debits.c.epoch == number, epoch_debits.c.chunk.is_not(None)))).scalars())
        rows = conn.execute(select(receipts).where(receipts.c.settled_epoch == number)
                            .order_by(receipts.c.created_at, receipts.c.id)).mappings().all()
        paid = charged_receipts([*rows, *charged_arrears(conn, number)], {c: int(v["charged"]) for c, v in cut.items()})
        # what was not debited stays owed by the consumer, line by line to the payees, for a later close
        carry_forward(conn, number, paid)
        block = int(details["closing_block"])
        access = details.get("access_payments") or []
        jobs = settled_jobs(conn, number)
        ledger, pools, compute, rewards = self._payouts(
            conn, number, paid, access, jobs, int(details["rewards"]), load_assets(conn, issued_by=block), block,
            basis=details.get("split_basis"))
        self._check_conservation(number, ledger, charged, rewards, access, jobs)
        root = self._write_payouts(conn, number, ledger)
        details.update(charged=str(charged), pools=pools.published(), compute_jobs=compute, rewards=str(rewards))
        conn.execute(update(epochs).where(epochs.c.number == number).values(
            root=root, total=str(ledger.total), details=details, state=state if root is not None else "unpaid"))

    def _release(self, number: int) -> None:
        rewards = int(self._row(number)["details"]["rewards"])
        staking = self.contracts.staking
        chain_epoch = self.chain_epoch(number)
        if not rewards or staking.rewards_released(chain_epoch):
            return
        pool = staking.releasable()
        if pool < rewards:
            # Nodes settling to one deployment share the pool (and its daily release limit): another node's close
            # released part of it after this epoch was planned. Its validators are paid what can still be released,
            # re-split as the plan split it.
            with self.db.begin() as conn:
                row = conn.execute(select(epochs).where(epochs.c.number == number)).mappings().first()
                details = {**(row["details"] or {}), "rewards": str(pool), "rewards_planned": str(rewards)}
                self._replan(conn, number, row["state"], details)
            rewards = int(self._row(number)["details"]["rewards"])
        if rewards:
            staking.release_rewards(self.node_account, chain_epoch, rewards)

    def _post(self, number: int) -> None:
        row = self._row(number)
        if row["state"] == "posted":
            return
        chain_epoch = self.chain_epoch(number)
        funding = self.contracts.distributor.epoch(chain_epoch)
        if funding is None or funding.root is None:
            self.contracts.distributor.post_root(self.node_account, chain_epoch, row["root"], int(row["total"]))
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
                "shortfall": details.get("shortfall", "0"), "short": details.get("short", {}),
                "chain_epoch": details.get("chain_epoch"),
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
        paid = [*paid, *charged_arrears(conn, number)]  # what earlier epochs could not charge, charged in this one
        from ledgerlm.serving.receipts import published_receipts

        paid = published_receipts(conn, paid)  # published for anyone: a private Datanet's records left out
        # Each receipt's signed body and the node's signature (an arrear: its receipt's), so anyone can check that
        # the payouts published are the ones the node signed when it answered the call.
        ids = sorted({r["id"] for r in paid})
        signed = {}
        for start in range(0, len(ids), 500):
            signed.update({i: (body, signature) for i, body, signature in conn.execute(
                select(receipts.c.id, receipts.c.body, receipts.c.signature)
                .where(receipts.c.id.in_(ids[start:start + 500])))})
        paid = [{**r, "body": signed[r["id"]][0], "signature": signed[r["id"]][1]} for r in paid]
    details = row["details"] or {}
    payout_file = {
        "epoch": number, "root": row["root"], "total": row["total"], "charged": details.get("charged"),
        "rewards": details.get("rewards"), "pools": details.get("pools", []),
        "access": details.get("access", "0"), "access_payments": details.get("access_payments", []),
        "compute": details.get("compute", "0"), "compute_jobs": details.get("compute_jobs", []),
        "closing_block": details.get("closing_block"), "chain_epoch": details.get("chain_epoch"),
        "shortfall": details.get("shortfall", "0"), "short": details.get("short", {}),
        "chain_id": contracts.chain.chain_id if contracts else None,
        "distributor": contracts.distributor.address if contracts else None,
        "payouts": [{"account": p["account"], "amount": p["amount"], "proof": p["proof"], "sources": p["sources"]}
                    for p in payouts],
        "debits": [{"consumer": d["consumer"], "amount": d["amount"], "state": d["state"], "reason": d["reason"],
                    "owed": details.get("short", {}).get(d["consumer"], {}).get("owed", d["amount"])}
                   for d in debits],
    }
    short = {c: int(v["charged"]) for c, v in (details.get("short") or {}).items()}
    receipt_file = {"epoch": number, "receipts": charged_receipts(paid, short)}
    if contracts is not None:  # the EIP-712 domain the receipts are signed in: this chain and its Registry
        receipt_file["signing_domain"] = {"chain_id": contracts.chain.chain_id,
                                          "verifying_contract": contracts.registry.address}
    return {"payouts": payout_file, "receipts": receipt_file}
