"""Settlement epochs: which one is open, so every receipt knows the epoch its fee is settled in."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ledgerlm.economy.errors import EconomyError
from ledgerlm.store import Database, lock_key
from ledgerlm.store.schema import arrears, epoch_debits, epochs


def open_epoch(conn: Connection) -> int:
    """The number of the open epoch, opening epoch 1 on a fresh node.

    Call inside the transaction that writes what belongs to the epoch, so a close that starts
    concurrently sees either the row and its epoch, or neither. On PostgreSQL the open epoch's row is
    share-locked to the end of that transaction: writers on many nodes go on together, and a close (which
    locks it for update) waits for them, and they for it.
    """
    number = _open_number(conn, lock=True)
    if number is None:
        # None open (a fresh node), or a close on another node committed while this statement waited on the
        # row. Nodes opening one take turns, and look again once it is theirs: what the one before opened, or
        # what that close opened, is committed and visible by then.
        lock_key(conn, "epochs:open")
        number = _open_number(conn, lock=True)
    if number is not None:
        return number
    number = _next_number(conn)
    conn.execute(epochs.insert().values(number=number, state="open", opened_at=int(time.time())))
    return number


def _open_number(conn: Connection, *, lock: bool = False) -> int | None:
    query = select(epochs.c.number).where(epochs.c.state == "open")
    number = conn.execute(query.with_for_update(read=True) if lock else query).scalar()
    return None if number is None else int(number)


def _next_number(conn: Connection) -> int:
    last = conn.execute(select(epochs.c.number).order_by(epochs.c.number.desc()).limit(1)).scalar()
    return 1 if last is None else int(last) + 1


def current_epoch(conn: Connection) -> int:
    """The open epoch's number without writing anything: the one `open_epoch` opens on a fresh node.

    For reads: a read that wrote the first epoch's row would have to upgrade to a write lock, which
    SQLite refuses at once ("database is locked") while another writer holds it.
    """
    number = _open_number(conn)
    return _next_number(conn) if number is None else number


def _listed(r) -> dict:
    return {"epoch": r["number"], "state": r["state"], "opened_at": r["opened_at"], "closed_at": r["closed_at"],
            "root": r["root"], "total": r["total"],
            **{k: v for k, v in (r["details"] or {}).items() if k not in ("pools", "split_basis")}}


def show_epoch(db: Database, number: int) -> dict:
    """One epoch as `list_epochs` has it, with each consumer's debit: charged in full (`planned`), cut to what the
    cap in force allowed when its chunk was sent (`short`, with what was owed; the rest, `carried`, stays owed and
    `charged_in` names the later epochs that charged it), or left for a later epoch (`unpaid`). `arrears` is what
    this epoch charged of what earlier ones could not."""
    with db.connect() as conn:
        row = conn.execute(select(epochs).where(epochs.c.number == number)).mappings().first()
        if row is None:
            raise EconomyError(f"there is no epoch {number}", field="epoch", status=404)
        debits = conn.execute(select(epoch_debits).where(epoch_debits.c.epoch == number)
                              .order_by(epoch_debits.c.consumer)).mappings().all()
        carried = conn.execute(select(arrears.c.consumer, arrears.c.amount, arrears.c.settled_epoch)
                               .where(arrears.c.from_epoch == number)).all()
    later: dict[str, tuple[int, set[int]]] = {}
    for consumer, amount, settled in carried:
        total, charged_in = later.get(consumer, (0, set()))
        later[consumer] = (total + int(amount), charged_in | ({settled} if settled is not None else set()))
    shown = _listed(row)
    short = shown.get("short") or {}
    shown["debits"] = [{"consumer": d["consumer"], "amount": d["amount"], "chunk": d["chunk"], "state": d["state"],
                        "owed": short.get(d["consumer"], {}).get("owed", d["amount"]), "reason": d["reason"],
                        "carried": str(later.get(d["consumer"], (0, set()))[0]),
                        "charged_in": sorted(later.get(d["consumer"], (0, set()))[1])}
                       for d in debits]
    return shown


def list_epochs(db: Database) -> list[dict]:
    """Every epoch: state, root, total, the close's counts and any shortfall (the pools are in the payout file)."""
    with db.connect() as conn:
        rows = conn.execute(select(epochs).order_by(epochs.c.number)).mappings().all()
    return [_listed(r) for r in rows]
