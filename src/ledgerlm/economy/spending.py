"""What each account spent on calls and paid access, per settlement epoch and ever, as running totals kept in
the transaction that records each spend, so a budget check reads one row whatever the history; and what its calls
still running hold."""

from __future__ import annotations

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ledgerlm.store.schema import access_payments, account_spending, compute_jobs, spend_holds

EVER = 0  # the epoch key of an account's total over every epoch


def add_spent(conn: Connection, account: str | None, epoch: int, amount: int) -> None:
    """Count `amount` (negative: a payment that failed) as spent by `account` in `epoch`, inside the caller's
    transaction, the one that writes the receipt or payment."""
    if account is None or amount == 0:
        return
    for key in (epoch, EVER):
        _add(conn, account, key, amount)


def spent_by(conn: Connection, account: str, epoch: int | None = None) -> int:
    """What `account` spent in `epoch` (None: ever)."""
    amount = conn.execute(select(account_spending.c.amount).where(_row(account, EVER if epoch is None else epoch))
                          ).scalar()
    return 0 if amount is None else int(amount)


def held_by(conn: Connection, account: str, now: int) -> int:
    """What `account`'s calls admitted and still running hold (each its worst case until its receipt is written):
    room under a cap or a budget that a payment made meanwhile must leave to them."""
    return sum(int(a) for a in conn.execute(select(spend_holds.c.amount).where(and_(
        spend_holds.c.consumer == account, spend_holds.c.expires_at > now))).scalars())


def paying_by(conn: Connection, account: str) -> int:
    """What `account`'s payments for access and compute jobs sent but not mined yet will take from its cap and
    escrow: on chain they are in neither `spent` nor out of the balance until they land."""
    access = conn.execute(select(access_payments.c.amount).where(and_(
        access_payments.c.developer == account, access_payments.c.state == "pending"))).scalars()
    jobs = conn.execute(select(compute_jobs.c.amount).where(and_(
        compute_jobs.c.requester == account, compute_jobs.c.payment_state == "pending"))).scalars()
    return sum(int(a) for a in access) + sum(int(a) for a in jobs)


def _row(account: str, epoch: int):
    return and_(account_spending.c.account == account, account_spending.c.epoch == epoch)


def _add(conn: Connection, account: str, epoch: int, amount: int) -> None:
    # Amounts pass 64 bits, so they are added here, not in SQL: the row is locked first (PostgreSQL), and two
    # writers inserting an account's first row at once are told apart by the key.
    current = conn.execute(select(account_spending.c.amount).where(_row(account, epoch)).with_for_update()).scalar()
    if current is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(account_spending).values(account=account, epoch=epoch, amount=str(amount)))
            return
        except IntegrityError:
            current = conn.execute(select(account_spending.c.amount).where(_row(account, epoch))
                                   .with_for_update()).scalar()
    conn.execute(update(account_spending).where(_row(account, epoch)).values(amount=str(int(current) + amount)))
