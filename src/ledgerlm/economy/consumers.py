"""One consumer's escrow spending decided by one node at a time, however many nodes share the database."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from ledgerlm.store import Database


def lock_consumer(db: Database, conn: Connection, consumer: str) -> None:
    """Hold `consumer`'s spending until `conn`'s transaction ends: admitting a call and paying for access both
    read what is left and then take from it, which must not interleave with another node doing the same."""
    db.lock(conn, f"spending:{consumer.lower()}")
