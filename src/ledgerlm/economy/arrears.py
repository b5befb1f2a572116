"""Arrears: the part of a consumer's fees a close could not debit (their cap in force or escrow fell short), still
owed by them and charged, line by line to the payees their receipts name, at a later close their cap allows."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from ledgerlm.store.schema import arrears, epoch_chunks, epoch_debits, receipts


def _as_receipts(conn: Connection, where) -> list[dict]:
    rows = conn.execute(select(arrears, receipts.c.model_id, receipts.c.attribution, receipts.c.created_at)
                        .join(receipts, receipts.c.id == arrears.c.receipt_id).where(where)
                        .order_by(arrears.c.from_epoch, arrears.c.id)).mappings().all()
    return [{"id": r["receipt_id"], "consumer": r["consumer"], "model_id": r["model_id"], "fee": r["amount"],
             "payouts": r["payouts"], "attribution": r["attribution"], "created_at": r["created_at"],
             "arrears_from": r["from_epoch"], "arrear": r["id"]} for r in rows]


def owed_arrears(conn: Connection, before: int) -> list[dict]:
    """The arrears cut by closes before epoch `before` and not charged since, each as the receipt it is owed for:
    `fee` is what is still owed and `payouts` the lines still owed to each payee (`arrears_from`: the epoch that
    cut it)."""
    return _as_receipts(conn, and_(arrears.c.settled_epoch.is_(None), arrears.c.from_epoch < before))


def charged_arrears(conn: Connection, epoch: int) -> list[dict]:
    """The arrears epoch `epoch` charges, as `owed_arrears` gives them."""
    return _as_receipts(conn, arrears.c.settled_epoch == epoch)


def settle_arrears(conn: Connection, epoch: int, ids: list[int]) -> None:
    """Mark arrears (by id) as charged by epoch `epoch`'s close."""
    for start in range(0, len(ids), 500):
        conn.execute(update(arrears).where(arrears.c.id.in_(ids[start:start + 500])).values(settled_epoch=epoch))


def carry_forward(conn: Connection, epoch: int, paid: list[Mapping]) -> int:
    """Record, for every receipt (or arrear) epoch `epoch` charged less than it owed (`charged_receipts` marks them),
    what is still owed, replacing what an earlier re-plan of this epoch recorded; returns the total carried."""
    conn.execute(delete(arrears).where(arrears.c.from_epoch == epoch))
    rows = [{"receipt_id": r["id"], "consumer": r["consumer"], "from_epoch": epoch,
             "amount": str(int(r["fee"]) - int(r["charged"])), "payouts": r["owed_payouts"], "settled_epoch": None}
            for r in paid if "charged" in r and int(r["fee"]) > int(r["charged"])]
    if rows:
        conn.execute(insert(arrears), rows)
    return sum(int(r["amount"]) for r in rows)


def owed_by(conn: Connection, consumer: str) -> int:
    """What `consumer` owes that no escrow debit has taken yet, and their cap and balance must still cover: fees
    of receipts no close has planned, debits a close planned that are not on chain yet (the plan marks its
    receipts settled before its chunks land), and arrears."""
    unsettled = sum(int(f) for f in conn.execute(select(receipts.c.fee).where(and_(
        receipts.c.consumer == consumer, receipts.c.settled_epoch.is_(None)))).scalars())
    planned = sum(int(a) for a in conn.execute(select(epoch_debits.c.amount).join(epoch_chunks, and_(
        epoch_chunks.c.epoch == epoch_debits.c.epoch, epoch_chunks.c.chunk == epoch_debits.c.chunk)).where(and_(
            epoch_debits.c.consumer == consumer, epoch_chunks.c.state == "planned"))).scalars())
    return unsettled + planned + arrears_owed(conn, consumer)


def arrears_owed(conn: Connection, consumer: str) -> int:
    """What `consumer` still owes from closes that could not charge them in full."""
    return sum(int(a) for a in conn.execute(select(arrears.c.amount).where(and_(
        arrears.c.consumer == consumer, arrears.c.settled_epoch.is_(None)))).scalars())
