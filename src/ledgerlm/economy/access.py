"""Paid access to private Datanets: a developer's payment for training on a version, debited from their escrow
into the open epoch at once (within the standing spending cap they gave this node), and paid to the Datanet at
close."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from eth_utils import to_checksum_address
from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.engine import Connection

from ledgerlm.chain import ChainError, Debit, epoch_id
from ledgerlm.economy.arrears import owed_by
from ledgerlm.economy.consumers import lock_consumer
from ledgerlm.economy.epochs import open_epoch
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.spending import add_spent, held_by, paying_by
from ledgerlm.identity import SignedAction, SigningDomain, verify_action
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import access_payments, compute_jobs
from ledgerlm.units import format_amount

# Held exclusively by an epoch close and shared by payments in flight, across every node on one database.
CLOSE_LOCK = "epoch-close"
# Access debits settle in chunks far above any epoch close's own (0, 1, 2, ...), one chunk per payment, so
# the escrow's once-per-(epoch, chunk) rule also makes each payment land at most once.
ACCESS_CHUNK_BASE = 2**128
# Compute jobs are paid the same way, in chunks above every access payment's.
JOB_CHUNK_BASE = 2**129
# What a licence allows, and how each is paid for from the CLI.
PURPOSES = {"train": "train on", "export": "export"}
_HOW = {"train": "the CLI does with `ledgerlm factory train --pay MAX`",
        "export": "the CLI does with `ledgerlm datanet export --pay MAX`"}


class PaymentRequired(EconomyError):
    status = 402


class CannotPay(PaymentRequired):
    """Refused before any transaction was sent: the payer's cap or escrow cannot cover the price."""


class PaymentPending(EconomyError):
    """The payment's transaction was sent but is not mined yet: it stays pending, and lands at most once."""

    status = 504


@dataclass(frozen=True)
class DebitRows:
    """Where one kind of immediate escrow payment keeps its rows: table, payment state, payer and transaction
    columns, the chunk numbers its debits use, and what else a failed payment changes in its row."""

    table: Table
    state: str
    payer: str
    tx: str
    chunk_base: int
    tool: str  # what an agent's policy must allow for its key to pay this way (agents.policy.TOOLS)
    failed: tuple[tuple[str, str], ...] = ()

    def column(self, name: str):
        return self.table.c[name]


ACCESS_ROWS = DebitRows(access_payments, "state", "developer", "tx", ACCESS_CHUNK_BASE, "read_datanet")
JOB_ROWS = DebitRows(compute_jobs, "payment_state", "requester", "payment_tx", JOB_CHUNK_BASE, "buy_compute",
                     failed=(("state", "unpaid"),))


@dataclass
class AccessPayments:
    """Takes payments for access from escrow; holds the closer's lock so no close plans an epoch mid-payment."""

    db: Database
    contracts: object  # ledgerlm.chain.Contracts
    node_account: object
    domain: SigningDomain
    lock: threading.Lock = field(default_factory=threading.Lock)
    # payer, amount, tool, Datanet (None: not a Datanet's) -> raises to refuse: the node checks an agent's policy
    # here (kill switch, allowed actions and Datanets, budget)
    spend_guard: Callable[[str, int, str, str | None], None] | None = None

    @contextmanager
    def paying(self) -> Iterator[None]:
        """Hold off every close while a payment is in flight: this node's by the closer's lock, other nodes' on the
        same database by the close's lock, held shared (payments run side by side; a close waits for them all, and
        they for it). A close that planned without a payment whose chunk then landed could never post its root."""
        with self.lock, self.db.shared(CLOSE_LOCK):
            yield

    def pay(self, signed: SignedAction | None, *, payer: str, datanet: str, version: int, purpose: str,
            price: int, model_id: str = "") -> dict:
        """The payer's licence to `purpose` ("train" or "export") one version: the one they already paid for, or
        a new one debiting `price` from their escrow on their signed PayAccess. One licence per (payer, version,
        purpose): paying once lets them train on (or export) that version again without paying again."""
        if purpose not in PURPOSES:
            raise EconomyError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", field="purpose")
        held = self.licence(payer, datanet, version, purpose) or self._landed(payer, datanet, version, purpose)
        if held is not None:
            return held
        if signed is None:
            raise PaymentRequired(
                f"{datanet} version {version} costs {format_amount(price)} LGR ({price} base units) to "
                f"{PURPOSES[purpose]}: sign a PayAccess for "
                f"it ({_HOW[purpose]}) and a spending cap for this node that covers it", field="payment")
        developer = verify_action(signed, expected="PayAccess", domain=self.domain)
        if developer != payer:
            raise EconomyError(f"the PayAccess is signed by {developer}, not by {payer} who asks for the licence",
                               field="developer", status=403)
        m = signed.message
        for name, value in (("datanet", datanet), ("version", version), ("modelId", model_id),
                            ("purpose", purpose)):
            if m[name] != value:
                raise EconomyError(f"the signed PayAccess is for {name} {m[name]!r}, not {value!r}", field=name)
        if int(m["amount"]) < price:
            raise PaymentRequired(f"{datanet} version {version} costs {format_amount(price)} LGR; the payment "
                                  f"signs for only {format_amount(int(m['amount']))} LGR", field="amount")
        with self.paying():
            held = self.licence(payer, datanet, version, purpose)  # a payment that finished while we waited
            if held is not None:
                return held

            def record(conn: Connection, epoch: int, action_id: int) -> int:
                if self._taken(conn, developer, datanet, version, purpose):  # under the payer's lock
                    raise EconomyError(f"{developer} paid for this licence on another node meanwhile, or is paying "
                                       "now; ask again in a moment", field="payment", status=409)
                return conn.execute(insert(access_payments).values(
                    datanet=datanet, version=version, developer=developer, amount=str(price), epoch=epoch,
                    purpose=purpose, state="pending", tx=None, job_id=None, action_id=action_id,
                    created_at=int(time.time()),
                )).inserted_primary_key[0]

            payment_id, epoch, tx = self.debit_locked(signed, developer, price, what=f"{datanet} version {version}",
                                                      record=record, rows=ACCESS_ROWS, datanet=datanet)
        return {"payment": payment_id, "datanet": datanet, "version": version, "developer": developer,
                "purpose": purpose, "amount": str(price), "epoch": epoch, "tx": tx}

    def debit_locked(self, signed: SignedAction, payer: str, price: int, *, what: str,
                     record: Callable[[Connection, int, int], int], rows: DebitRows,
                     datanet: str | None = None) -> tuple[int, int, str]:
        """Debit `price` from `payer`'s escrow into the open epoch at once, within the standing spending cap they
        gave this node; the caller is inside `self.paying()`. `record(conn, epoch, action_id)` stores the payment's row (state
        pending) in the transaction that records the signed action and returns its id; the escrow chunk is
        `rows.chunk_base + id`, so a payment lands at most once. Returns (id, epoch, tx)."""
        escrow = self.contracts.escrow
        with self.db.begin() as conn:
            # What is left to spend is read and taken under the payer's lock, which calls admitted on any node
            # take too, so two nodes cannot both spend the same room under the cap or an agent's budget.
            lock_consumer(self.db, conn, payer)
            if self.spend_guard is not None:
                self.spend_guard(payer, price, rows.tool, datanet)
            epoch = open_epoch(conn)
            # calls not settled yet are charged under the same cap at the next close: they come first
            owed = owed_by(conn, payer)
            # calls admitted and still running hold their worst case under the same cap: their receipts come next
            held = held_by(conn, payer, int(time.time()))
            # payments sent and not mined yet take from the same cap and escrow once they land
            paying = paying_by(conn, payer)
            problem = self._cannot_pay(payer, price, owed, held, paying)
            if problem:
                raise CannotPay(f"cannot take {price} for {what} from {payer}'s escrow: {problem}",
                                      field="payment")
            action_id = record_action(conn, signed, payer, chain_id=self.domain.chain_id)
            row_id = record(conn, epoch, action_id)
            add_spent(conn, payer, epoch, price)  # pending counts against budgets until it fails
        debit = Debit(payer, price)
        try:
            tx = escrow.settle(self.node_account, epoch_id(self.node_account.address, epoch), rows.chunk_base + row_id,
                               [debit]).tx_hash
        except ChainError as exc:
            if not (exc.status == 504 and exc.tx_hash):  # refused before sending, or mined and reverted
                _fail(self.db, rows, row_id)
                raise PaymentRequired(f"the escrow refused the payment: {exc}", field="payment") from exc
            # A slow chain answers "sent but not mined" (504) for a transaction that may land later: failing its
            # row would let the payer pay again, and the close plan without a payment the epoch then holds on chain.
            outcome = resolve_payment(self.db, rows, row_id, escrow, self.node_account.address, tx=exc.tx_hash)
            if outcome == "failed":
                raise PaymentRequired(f"the escrow refused the payment: {exc}", field="payment") from exc
            if outcome == "pending":
                ask = ("ask for the licence again once it is mined" if rows is ACCESS_ROWS else
                       f"job {row_id} is paid once it is mined: look it up rather than accept the offer again")
                raise PaymentPending(f"the payment for {what} (#{row_id}) was sent in {exc.tx_hash} but is not mined "
                                     f"yet; it stays pending and is taken at most once: {ask}", field="payment") from exc
            return row_id, epoch, exc.tx_hash
        with self.db.begin() as conn:
            # only a row still pending: nothing resolves it but this sender meanwhile (`_landed` never fails one)
            conn.execute(update(rows.table).where(and_(rows.table.c.id == row_id, rows.column(rows.state) == "pending"))
                         .values({rows.state: "paid", rows.tx: tx}))
        return row_id, epoch, tx

    def licence(self, payer: str, datanet: str, version: int, purpose: str) -> dict | None:
        """The paid licence `payer` holds to `purpose` the version, if any."""
        with self.db.connect() as conn:
            row = conn.execute(select(access_payments).where(and_(
                access_payments.c.developer == payer, access_payments.c.datanet == datanet,
                access_payments.c.version == version, access_payments.c.purpose == purpose,
                access_payments.c.state == "paid")).order_by(access_payments.c.id).limit(1)).mappings().first()
        if row is None:
            return None
        return {"payment": row["id"], "datanet": datanet, "version": version, "developer": payer,
                "purpose": purpose, "amount": row["amount"], "epoch": row["epoch"], "tx": row["tx"]}

    def _landed(self, payer: str, datanet: str, version: int, purpose: str) -> dict | None:
        """The licence of a payment left pending by a slow chain, once its transaction has landed."""
        with self.db.connect() as conn:
            row_id = conn.execute(select(access_payments.c.id).where(and_(
                access_payments.c.developer == payer, access_payments.c.datanet == datanet,
                access_payments.c.version == version, access_payments.c.purpose == purpose,
                access_payments.c.state == "pending")).limit(1)).scalar()
        if row_id is None:
            return None
        # never failed from here: the row may be another request's whose transaction is not sent yet
        resolve_payment(self.db, ACCESS_ROWS, row_id, self.contracts.escrow, self.node_account.address, may_fail=False)
        return self.licence(payer, datanet, version, purpose)

    def job_landed(self, job_id: int) -> bool:
        """Whether a compute job's payment left pending by a slow chain has landed (and is now marked paid)."""
        return resolve_payment(self.db, JOB_ROWS, job_id, self.contracts.escrow, self.node_account.address,
                               may_fail=False) == "paid"

    @staticmethod
    def _taken(conn, developer: str, datanet: str, version: int, purpose: str) -> bool:
        """A payment for this licence by this developer, paid or with its chain debit under way."""
        return conn.execute(select(access_payments.c.id).where(and_(
            access_payments.c.developer == developer, access_payments.c.datanet == datanet,
            access_payments.c.version == version, access_payments.c.purpose == purpose,
            access_payments.c.state.in_(("pending", "paid")))).limit(1)).first() is not None

    def _cannot_pay(self, developer: str, price: int, owed: int, held: int = 0, paying: int = 0) -> str | None:
        allowance = self.contracts.escrow.spending_cap(developer, self.node_account.address)
        if allowance.cap == 0:
            return "no spending cap for this node (sign one that covers the price)"
        taken = owed + held + paying
        if allowance.left < taken + price:
            return (f"the spending cap {allowance.cap} has {max(0, allowance.left - taken)} left in this period"
                    + (f" after {owed} owed for calls not settled yet" if owed else "")
                    + (f", {held} held by calls in flight" if held else "")
                    + (f", {paying} paid in transactions not mined yet" if paying else ""))
        escrow = self.contracts.escrow
        balance = escrow.balance_of(developer) - escrow.pending_withdrawal(developer).amount  # leaving: not payable
        if balance < taken + price:
            return f"escrow holds {balance}" + (f", of which {taken} is owed, held by calls or paid in transactions "
                                                "not mined yet" if taken else "")
        return None

    def attach_job(self, payment_id: int, job_id: int) -> None:
        self._set(payment_id, job_id=job_id)

    def _set(self, payment_id: int, **values) -> None:
        with self.db.begin() as conn:
            conn.execute(update(access_payments).where(access_payments.c.id == payment_id).values(**values))

    def payments(self, developer: str | None = None) -> list[dict]:
        query = select(access_payments).order_by(access_payments.c.id)
        if developer:
            query = query.where(access_payments.c.developer == to_checksum_address(developer))
        with self.db.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


PAYMENT_ROWS = (ACCESS_ROWS, JOB_ROWS)


def pending_payments(rows: DebitRows):
    """The query of `rows`' payments still pending: (id, epoch)."""
    return select(rows.table.c.id, rows.table.c.epoch).where(rows.column(rows.state) == "pending")


def resolve_pending(db: Database, escrow, settler: str) -> list[tuple[str, int, int]]:
    """Resolve every payment (for access or a compute job) a crash or a slow chain left pending
    (`resolve_payment`); returns (table, row, epoch) of those whose transaction may still land."""
    waiting = []
    for rows in PAYMENT_ROWS:
        with db.connect() as conn:
            pending = conn.execute(pending_payments(rows)).all()
        for row_id, epoch in pending:
            if resolve_payment(db, rows, row_id, escrow, settler) == "pending":
                waiting.append((rows.table.name, row_id, epoch))
    return waiting


def resolve_payment(db: Database, rows: DebitRows, row_id: int, escrow, settler: str, *,
                    tx: str | None = None, may_fail: bool = True) -> str:
    """A pending payment's outcome on chain: "paid" once its chunk landed (in the epoch of `settler`, the node that
    debited it), "failed" once it no longer can (unless not `may_fail`: only the sender, or a close that holds off
    every payment, knows no transaction is about to be sent), else "pending" (its transaction may still be mined);
    a row resolved meanwhile answers its state.

    Nothing of the settler's in flight means every transaction it sent before has been mined or dropped, so a chunk
    still unsettled after that never landed. (A dropped transaction that someone else broadcasts again later is
    not covered; an epoch whose root is posted refuses it on chain.)
    """
    with db.connect() as conn:
        epoch = conn.execute(select(rows.table.c.epoch).where(and_(
            rows.table.c.id == row_id, rows.column(rows.state) == "pending"))).scalar()
    if epoch is None:  # resolved meanwhile
        with db.connect() as conn:
            return str(conn.execute(select(rows.column(rows.state)).where(rows.table.c.id == row_id)).scalar())
    chunk = epoch_id(settler, epoch), rows.chunk_base + row_id
    if not escrow.is_chunk_settled(*chunk):
        if not may_fail or escrow.chain.in_flight(settler):
            if tx is not None:
                with db.begin() as conn:
                    conn.execute(update(rows.table).where(rows.table.c.id == row_id).values({rows.tx: tx}))
            return "pending"
        if not escrow.is_chunk_settled(*chunk):  # mined between the two reads
            _fail(db, rows, row_id)
            return "failed"
    with db.begin() as conn:
        conn.execute(update(rows.table).where(and_(rows.table.c.id == row_id, rows.column(rows.state) == "pending"))
                     .values({rows.state: "paid", **({rows.tx: tx} if tx else {})}))
    return "paid"


def _fail(db: Database, rows: DebitRows, row_id: int) -> None:
    """A pending payment the escrow did not take: failed, and no longer counted as spent."""
    table = rows.table
    with db.begin() as conn:
        row = conn.execute(select(table).where(and_(table.c.id == row_id, rows.column(rows.state) == "pending"))
                           ).mappings().first()
        if row is None:
            return
        # only while still pending: two nodes failing the same payment at once give its amount back once
        if not conn.execute(update(table).where(and_(table.c.id == row_id, rows.column(rows.state) == "pending"))
                            .values({rows.state: "failed", **dict(rows.failed)})).rowcount:
            return
        add_spent(conn, row[rows.payer], row["epoch"], -int(row["amount"]))


def settled_access(conn: Connection, epoch: int) -> list[dict]:
    """The access payments debited into `epoch`, which its close pays to their Datanets."""
    rows = conn.execute(select(access_payments).where(and_(access_payments.c.epoch == epoch,
                                                           access_payments.c.state == "paid"))
                        .order_by(access_payments.c.id)).mappings().all()
    return [{"id": r["id"], "datanet": r["datanet"], "version": r["version"], "developer": r["developer"],
             "purpose": r["purpose"], "amount": r["amount"], "tx": r["tx"]} for r in rows]
