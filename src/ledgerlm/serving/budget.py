"""What a consumer may still spend, checked and reserved before any compute is spent on a call.

Remaining = the smaller of (the key's signed cap − fees already charged to the consumer in the
cap's epoch) and (the consumer's escrow balance − fees not yet settled). Each admitted call
reserves its worst case (prompt tokens + max_tokens at the model's price) until its receipt is
written, so concurrent calls on one account can never spend more than either bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from ledgerlm.economy import open_epoch
from ledgerlm.serving.errors import ApiKeyError, PaymentRequiredError
from ledgerlm.serving.keys import ApiKey
from ledgerlm.store import Database
from ledgerlm.store.schema import epochs, receipts
from ledgerlm.units import format_amount


@dataclass(frozen=True)
class Reservation:
    consumer: str | None
    amount: int


class Budget:
    def __init__(self, db: Database, escrow_balance: Callable[[str], int] | None):
        self.db = db
        self.escrow_balance = escrow_balance
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()

    def remaining(self, key: ApiKey) -> dict:
        """The key's standing: cap, spent in its epoch, escrow balance, unsettled fees, reserved, left."""
        with self.db.begin() as conn:
            epoch = open_epoch(conn)
            open_epochs = select(epochs.c.number).where(epochs.c.state != "settled")
            mine = receipts.c.consumer == key.consumer
            spent = sum(int(f) for f in conn.execute(
                select(receipts.c.fee).where(mine & (receipts.c.epoch == key.epoch))).scalars())
            unsettled = sum(int(f) for f in conn.execute(
                select(receipts.c.fee).where(mine & receipts.c.epoch.in_(open_epochs))).scalars())
        balance = self.escrow_balance(key.consumer) if self.escrow_balance else 0
        reserved = self._reserved.get(key.consumer, 0)
        left = max(0, min(int(key.cap) - spent, balance - unsettled) - reserved)
        if key.epoch != epoch or key.deadline <= int(time.time()):
            left = 0
        return {"consumer": key.consumer, "epoch": key.epoch, "open_epoch": epoch, "cap": key.cap,
                "spent": str(spent), "escrow_balance": str(balance), "unsettled": str(unsettled),
                "reserved": str(reserved), "remaining": str(left)}

    def reserve(self, key: ApiKey | None, cost: int, what: str) -> Reservation:
        """Hold `cost` for one call, or refuse it with 402 saying what is left and what it would cost."""
        if cost == 0:
            return Reservation(key.consumer if key else None, 0)
        if key is None:
            raise ApiKeyError(f"{what} costs {format_amount(cost)} LGR at most: call it with an API key "
                              "(`ledgerlm apikey create --as KEY --cap AMOUNT`)", field="authorization")
        with self._lock:  # one account's reservations are checked and taken atomically
            standing = self.remaining(key)
            left = int(standing["remaining"])
            if standing["epoch"] != standing["open_epoch"]:
                raise PaymentRequiredError(
                    f"API key {key.prefix}… spends under a cap for epoch {key.epoch}, but epoch "
                    f"{standing['open_epoch']} is open: create a new key for it", field="authorization")
            if key.deadline <= int(time.time()):
                raise PaymentRequiredError(f"API key {key.prefix}…'s spending cap expired at {key.deadline}",
                                           field="authorization")
            if cost > left:
                raise PaymentRequiredError(
                    f"payment required: {what} may cost up to {format_amount(cost)} LGR, and only "
                    f"{format_amount(left)} LGR is left (cap {format_amount(int(key.cap))} for epoch {key.epoch}, "
                    f"{format_amount(int(standing['spent']))} spent, escrow balance "
                    f"{format_amount(int(standing['escrow_balance']))}, {format_amount(int(standing['unsettled']))} "
                    f"unsettled, {format_amount(int(standing['reserved']))} held by calls in flight)",
                    field="max_tokens")
            self._reserved[key.consumer] = self._reserved.get(key.consumer, 0) + cost
        return Reservation(key.consumer, cost)

    def release(self, reservation: Reservation) -> None:
        if not reservation.amount:
            return
        with self._lock:
            self._reserved[reservation.consumer] -= reservation.amount
