"""Which epoch close charged a receipt, and the settlement transaction that carried the charge."""

from __future__ import annotations

from sqlalchemy import and_, select

from ledgerlm.store import Database
from ledgerlm.store.schema import arrears, epoch_chunks, epoch_debits, receipts


def receipt_settlement(db: Database, receipt_id: str) -> dict | None:
    """{"epoch", "chunk", "tx", "arrears"} of the close that settled the receipt's fee; None while it is unsettled.

    `tx` stays None for a free call (nothing to charge) or a close that has not sent its chunk yet. `arrears`: what
    a close could not debit of it, each {"from_epoch", "amount", "charged_in"} (None while still owed)."""
    with db.connect() as conn:
        row = conn.execute(select(receipts.c.settled_epoch, receipts.c.consumer)
                           .where(receipts.c.id == receipt_id)).first()
        if row is None or row.settled_epoch is None:
            return None
        chunk = conn.execute(select(epoch_debits.c.chunk).where(and_(
            epoch_debits.c.epoch == row.settled_epoch, epoch_debits.c.consumer == row.consumer))).scalar()
        tx = None if chunk is None else conn.execute(select(epoch_chunks.c.tx).where(and_(
            epoch_chunks.c.epoch == row.settled_epoch, epoch_chunks.c.chunk == chunk))).scalar()
        owed = conn.execute(select(arrears.c.from_epoch, arrears.c.amount, arrears.c.settled_epoch)
                            .where(arrears.c.receipt_id == receipt_id).order_by(arrears.c.id)).all()
    return {"epoch": row.settled_epoch, "chunk": chunk, "tx": tx,
            "arrears": [{"from_epoch": a.from_epoch, "amount": a.amount, "charged_in": a.settled_epoch} for a in owed]}
