"""Settlement epochs: which one is open, so every receipt knows the epoch its fee is settled in."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledgerlm.store import Database
from ledgerlm.store.schema import epochs


def open_epoch(conn: Connection) -> int:
    """The number of the open epoch, opening epoch 1 on a fresh node.

    Call inside the transaction that writes what belongs to the epoch, so a close that starts
    concurrently sees either the row and its epoch, or neither.
    """
    number = conn.execute(select(epochs.c.number).where(epochs.c.state == "open")).scalar()
    if number is not None:
        return int(number)
    last = conn.execute(select(epochs.c.number).order_by(epochs.c.number.desc()).limit(1)).scalar()
    number = 1 if last is None else int(last) + 1
    conn.execute(epochs.insert().values(number=number, state="open", opened_at=int(time.time())))
    return number


def list_epochs(db: Database) -> list[dict]:
    """Every epoch: state, root, total and the close's counts (the pools are in the payout file)."""
    with db.connect() as conn:
        rows = conn.execute(select(epochs).order_by(epochs.c.number)).mappings().all()
    return [{"epoch": r["number"], "state": r["state"], "opened_at": r["opened_at"], "closed_at": r["closed_at"],
             "root": r["root"], "total": r["total"],
             **{k: v for k, v in (r["details"] or {}).items() if k != "pools"}} for r in rows]
