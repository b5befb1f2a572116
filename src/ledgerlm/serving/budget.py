"""What a consumer may still spend, checked and reserved before any compute is spent on a call.

The authority is the consumer's signed spending cap for the open epoch (the one the epoch close
settles with; `apikey create` records one, and a new one can be signed for each epoch without a
new key). Remaining = the smaller of (that cap − fees already charged to the consumer in the
epoch) and (the escrow balance − fees not yet settled). Each admitted call reserves its worst case
(prompt tokens + max_tokens at the model's price) until its receipt is written, so concurrent calls
on one account can never spend more than either bound.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, select

from ledgerlm.economy import lock_consumer, open_epoch
from ledgerlm.serving.errors import ApiKeyError, PaymentRequiredError
from ledgerlm.serving.keys import ApiKey
from ledgerlm.store import Database
from ledgerlm.store.schema import access_payments, receipts, spend_holds, spending_caps
from ledgerlm.units import format_amount

# A hold a crashed node never released stops counting after this long; no call runs anywhere near it.
HOLD_SECONDS = 3600


@dataclass(frozen=True)
class Reservation:
    consumer: str | None
    amount: int
    hold: str | None = None  # the spend_holds row, released when the receipt is written


class Budget:
    def __init__(self, db: Database, settler: str, escrow_balance: Callable[[str], int] | None):
        self.db = db
        self.settler = settler
        self.escrow_balance = escrow_balance
        self._lock = threading.Lock()

    def remaining(self, key: ApiKey) -> dict:
        """The consumer's standing in the open epoch: cap, spent, escrow balance, unsettled, reserved, left."""
        with self.db.begin() as conn:
            return self._standing(conn, key.consumer, int(time.time()))

    def _standing(self, conn, consumer: str, now: int) -> dict:
        epoch = open_epoch(conn)
        cap = conn.execute(select(spending_caps).where(and_(
            spending_caps.c.consumer == consumer, spending_caps.c.epoch == epoch,
            spending_caps.c.settler == self.settler))).mappings().first()
        mine = receipts.c.consumer == consumer
        spent = sum(int(f) for f in conn.execute(
            select(receipts.c.fee).where(mine & (receipts.c.epoch == epoch))).scalars())
        unsettled = sum(int(f) for f in conn.execute(
            select(receipts.c.fee).where(mine & receipts.c.settled_epoch.is_(None))).scalars())
        # paid access to private Datanets is debited from the same signed cap
        access = sum(int(a) for a in conn.execute(select(access_payments.c.amount).where(and_(
            access_payments.c.developer == consumer, access_payments.c.epoch == epoch,
            access_payments.c.state.in_(("pending", "paid"))))).scalars())
        reserved = sum(int(a) for a in conn.execute(select(spend_holds.c.amount).where(and_(
            spend_holds.c.consumer == consumer, spend_holds.c.expires_at > now))).scalars())
        balance = self.escrow_balance(consumer) if self.escrow_balance else 0
        live = cap is not None and int(cap["deadline"]) > now
        limit = int(cap["cap"]) if live else 0
        left = max(0, min(limit - spent - access, balance - unsettled) - reserved)
        return {"consumer": consumer, "epoch": epoch, "cap": str(limit), "cap_deadline": cap["deadline"] if cap else None,
                "spent": str(spent), "access": str(access), "escrow_balance": str(balance), "unsettled": str(unsettled),
                "reserved": str(reserved), "remaining": str(left)}

    def reserve(self, key: ApiKey | None, cost: int, what: str,
                guard: Callable[[int], None] | None = None) -> Reservation:
        """Hold `cost` for one call, or refuse it with 402 saying what is left and what it would cost.

        `guard` is the node's further rule for this account (an agent's policy); it is called with what the
        account's calls in flight hold, under the same lock, so concurrent calls cannot slip past it. The holds
        are rows in the database and the lock is the consumer's (`lock_consumer`), so calls admitted by other
        nodes on the same database count too."""
        if cost == 0:
            if guard is not None:
                guard(0)
            return Reservation(key.consumer if key else None, 0)
        if key is None:
            raise ApiKeyError(f"{what} costs {format_amount(cost)} LGR at most: call it with an API key "
                              "(`ledgerlm apikey create --as KEY --cap AMOUNT`)", field="authorization")
        now = int(time.time())
        with self._lock, self.db.begin() as conn:
            lock_consumer(self.db, conn, key.consumer)
            s = self._standing(conn, key.consumer, now)
            if guard is not None:
                guard(int(s["reserved"]))
            if s["cap_deadline"] is None or int(s["cap_deadline"]) <= now:
                raise PaymentRequiredError(
                    f"payment required: {key.consumer} has no live spending cap for epoch {s['epoch']}; sign one "
                    f"with `ledgerlm apikey create --as KEY --cap AMOUNT`", field="authorization")
            left = int(s["remaining"])
            if cost > left:
                raise PaymentRequiredError(
                    f"payment required: {what} may cost up to {format_amount(cost)} LGR, and only "
                    f"{format_amount(left)} LGR is left (cap {format_amount(int(s['cap']))} for epoch {s['epoch']}, "
                    f"{format_amount(int(s['spent']))} spent, escrow balance {format_amount(int(s['escrow_balance']))}, "
                    f"{format_amount(int(s['unsettled']))} unsettled, {format_amount(int(s['reserved']))} held by "
                    "calls in flight)", field="max_tokens")
            hold = uuid.uuid4().hex
            conn.execute(delete(spend_holds).where(and_(spend_holds.c.consumer == key.consumer,
                                                        spend_holds.c.expires_at <= now)))
            conn.execute(insert(spend_holds).values(id=hold, consumer=key.consumer, amount=str(cost), created_at=now,
                                                    expires_at=now + HOLD_SECONDS))
        return Reservation(key.consumer, cost, hold)

    def release(self, reservation: Reservation) -> None:
        if reservation.hold is None:
            return
        with self.db.begin() as conn:
            conn.execute(delete(spend_holds).where(spend_holds.c.id == reservation.hold))
