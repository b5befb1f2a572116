"""Idempotency claims: a call that carries an `Idempotency-Key` produces at most one receipt, on any node.

Every serving process sharing the database claims a key before it computes (one row per key). The
receipt is written in the same transaction that attaches it to the claim, and only by the process
that still holds the claim, so a retried request cannot be charged twice: it gets the first call's
answer back (a replay), or, while that call still runs, 409 with how long until its lease ends. The
holder renews the leases of its running calls from a heartbeat thread; a claim whose holder died
lapses and the next retry takes it over. A call that fails gives its claim back, so a retry runs.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ledgerlm.serving.errors import ServingError
from ledgerlm.store import Database
from ledgerlm.store.schema import serving_claims

MAX_KEY_CHARS = 255
# A key answers retries for a day after its call; older finished claims are deleted, so the table stays
# the size of a day's calls (a gateway sends a key with every call).
RETENTION_SECONDS = 86_400
PRUNE_EVERY_SECONDS = 600


class IdempotencyConflict(ServingError):
    """The key is held by a call still running (here or on another node), or was used for another request."""

    status = 409

    def __init__(self, message: str, *, retry_after: int | None = None, status: int | None = None):
        super().__init__(message, field="idempotency_key", status=status, retry_after=retry_after)


@dataclass(frozen=True)
class Claim:
    key_sha256: str
    request_sha256: str
    replay_of: str | None = None  # the receipt of the call this key already produced


def check_key(key: str | None) -> str | None:
    """The header's value when usable; printable ASCII of at most 255 characters, as common APIs accept."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_CHARS or not all(32 < ord(c) < 127 for c in key):
        raise ServingError(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters without "
                           "spaces", field="idempotency_key")
    return key


def _sha256(value) -> str:
    try:
        return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
    except TypeError:  # an integer past 64 bits, which orjson does not write: the standard library does
        import json

        return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class IdempotencyClaims:
    """Claims, replays and lease renewal for one serving process (`instance`)."""

    def __init__(self, db: Database, *, lease_seconds: int = 30):
        self.db = db
        self.lease_seconds = max(3, int(lease_seconds))
        self.instance = uuid.uuid4().hex
        self._held = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    def prune(self, now: int | None = None) -> int:
        """Delete finished claims older than RETENTION_SECONDS; returns how many."""
        now = int(time.time()) if now is None else now
        with self.db.begin() as conn:
            return conn.execute(delete(serving_claims).where(
                serving_claims.c.receipt_id.is_not(None)
                & (serving_claims.c.created_at < now - RETENTION_SECONDS))).rowcount

    def claim(self, key: str, consumer: str | None, request: dict) -> Claim:
        """Hold `key` for this call, or say which receipt it already produced; 409 while another call runs it."""
        # keys are per consumer: one consumer's key can never replay another's answer
        key_sha256 = _sha256([consumer or "", key])
        request_sha256 = _sha256(request)
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
            self._pruned_at = time.monotonic()
            self.prune()
        for _ in range(3):  # two processes inserting the same new key: the loser reads the winner's row
            now = int(time.time())
            try:
                with self.db.begin() as conn:
                    row = conn.execute(select(serving_claims).where(
                        serving_claims.c.key_sha256 == key_sha256)).mappings().first()
                    if row is None:
                        conn.execute(insert(serving_claims).values(
                            key_sha256=key_sha256, request_sha256=request_sha256, instance=self.instance,
                            receipt_id=None, lease_until=now + self.lease_seconds, created_at=now))
                        break
                    if row["request_sha256"] != request_sha256:
                        raise IdempotencyConflict("this Idempotency-Key was already used for a different request; "
                                                  "use a new key for a new request", status=422)
                    if row["receipt_id"] is not None:
                        return Claim(key_sha256, request_sha256, replay_of=row["receipt_id"])
                    if row["lease_until"] > now:
                        wait = row["lease_until"] - now
                        where = "on this node" if row["instance"] == self.instance else "on another node"
                        raise IdempotencyConflict(f"a request with this Idempotency-Key is still running {where}; "
                                                  f"retry in {wait} s for its answer", retry_after=wait)
                    # its holder stopped renewing (it died mid-call): take it over
                    conn.execute(update(serving_claims).where(
                        (serving_claims.c.key_sha256 == key_sha256) & serving_claims.c.receipt_id.is_(None)
                        & (serving_claims.c.lease_until == row["lease_until"])).values(
                        instance=self.instance, lease_until=now + self.lease_seconds))
                    break
            except IntegrityError:
                continue
        else:
            raise IdempotencyConflict("this Idempotency-Key is being claimed by another call; retry",
                                      retry_after=1)
        self._hold(+1)
        return Claim(key_sha256, request_sha256)

    def attach(self, conn: Connection, claim: Claim, receipt_id: str) -> None:
        """In the receipt's own transaction: bind it to the claim, or refuse when the claim was lost."""
        result = conn.execute(update(serving_claims).where(
            (serving_claims.c.key_sha256 == claim.key_sha256) & (serving_claims.c.instance == self.instance)
            & serving_claims.c.receipt_id.is_(None)).values(receipt_id=receipt_id))
        if result.rowcount != 1:
            raise IdempotencyConflict("this call's Idempotency-Key was taken over by a retry after its lease "
                                      "lapsed; the retry's receipt stands and this call is not charged")

    def finished(self, claim: Claim, *, failed: bool) -> None:
        """The call ended: a failed one gives the key back so that a retry runs it again."""
        if failed:
            with self.db.begin() as conn:
                conn.execute(delete(serving_claims).where(
                    (serving_claims.c.key_sha256 == claim.key_sha256) & (serving_claims.c.instance == self.instance)
                    & serving_claims.c.receipt_id.is_(None)))
        self._hold(-1)

    def _hold(self, delta: int) -> None:
        with self._lock:
            self._held += delta
            if self._held > 0 and self._thread is None:
                self._thread = threading.Thread(target=self._heartbeat, name="ledgerlm-claims", daemon=True)
                self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            with self._lock:
                if not self._held:
                    continue
            try:
                with self.db.begin() as conn:
                    conn.execute(update(serving_claims).where(
                        (serving_claims.c.instance == self.instance) & serving_claims.c.receipt_id.is_(None))
                        .values(lease_until=int(time.time()) + self.lease_seconds))
            except Exception:  # a busy database: the next beat renews; the lease outlasts two misses
                pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
