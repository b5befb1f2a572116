"""Which epoch close charged a receipt, and the settlement transaction that carried the charge."""

from __future__ import annotations

from sqlalchemy import and_, select

from ledgerlm.store import Database
from ledgerlm.store.schema import epoch_chunks, epoch_debits, receipts


def receipt_settlement(db: Database, receipt_id: str) -> dict | None:
    """{"epoch", "chunk", "tx"} of the close that settled the receipt's fee; None while it is unsettled.

    `tx` stays None for a free call (nothing to charge) or a close that has not sent its chunk yet."""
    with db.connect() as conn:
        row = conn.execute(select(receipts.c.settled_epoch, receipts.c.consumer)
                           .where(receipts.c.id == receipt_id)).first()
        if row is None or row.settled_epoch is None:
            return None
        chunk = conn.execute(select(epoch_debits.c.chunk).where(and_(
            epoch_debits.c.epoch == row.settled_epoch, epoch_debits.c.consumer == row.consumer))).scalar()
        tx = None if chunk is None else conn.execute(select(epoch_chunks.c.tx).where(and_(
            epoch_chunks.c.epoch == row.settled_epoch, epoch_chunks.c.chunk == chunk))).scalar()
    return {"epoch": row.settled_epoch, "chunk": chunk, "tx": tx}
