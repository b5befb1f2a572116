"""Paying compute jobs at an epoch's close: a job debited into the epoch pays its provider when it passed its
spot-check, and goes back to its requester when it failed one or was not reported before the close."""

from __future__ import annotations

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from ledgerlm.economy.payouts import Ledger
from ledgerlm.store.schema import compute_jobs

# A job still in this state when its epoch closes was never reported: its requester is refunded.
UNREPORTED = "accepted"


def settled_jobs(conn: Connection, epoch: int) -> list[dict]:
    """The compute jobs whose payment was debited into `epoch`."""
    rows = conn.execute(select(compute_jobs.c.id, compute_jobs.c.provider, compute_jobs.c.requester,
                               compute_jobs.c.amount, compute_jobs.c.state, compute_jobs.c.payment_tx)
                        .where(and_(compute_jobs.c.epoch == epoch, compute_jobs.c.payment_state == "paid"))
                        .order_by(compute_jobs.c.id)).mappings().all()
    return [dict(r) for r in rows]


def pay_jobs(ledger: Ledger, jobs: list[dict]) -> list[dict]:
    """Credit each job's amount to its provider (verified) or back to its requester; returns what was paid."""
    paid = []
    for job in jobs:
        verified = job["state"] == "verified"
        payee, role = (job["provider"], "compute") if verified else (job["requester"], "compute_refund")
        ledger.credit(payee, int(job["amount"]), role, job=job["id"])
        paid.append({"job": job["id"], "account": payee, "role": role, "amount": job["amount"],
                     "state": job["state"] if job["state"] != UNREPORTED else "expired"})
    return paid


def expire_unreported(conn: Connection, jobs: list[dict]) -> None:
    """Jobs refunded because their epoch closed before they were reported can no longer be reported."""
    ids = [j["id"] for j in jobs if j["state"] == UNREPORTED]
    if ids:
        conn.execute(update(compute_jobs).where(and_(compute_jobs.c.id.in_(ids), compute_jobs.c.state == UNREPORTED))
                     .values(state="expired"))
