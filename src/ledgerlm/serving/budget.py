"""What a consumer may still spend, checked and reserved before any compute is spent on a call.

The authority is the standing spending cap the consumer gave this node, as the escrow holds it
(`apikey create` signs one; the consumer may lower or revoke it on chain, and that counts at once).
Remaining = the smaller of (what the cap has left in its period − fees not debited yet − access and compute
payments not on chain yet) and (the escrow balance − a withdrawal asked for − fees not debited yet − those
payments); fees not debited yet include a planned close's debits until they land on chain. Each admitted call
reserves its worst case (prompt tokens + max_tokens at the model's price) until its receipt is
written, so concurrent calls on one account can never spend more than either bound.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert

from ledgerlm.economy import held_by, lock_consumer, open_epoch, owed_by, paying_by
from ledgerlm.serving.errors import ApiKeyError, PaymentRequiredError
from ledgerlm.serving.keys import ApiKey
from ledgerlm.store import Database
from ledgerlm.store.schema import spend_holds
from ledgerlm.units import format_amount

# A hold a crashed node never released stops counting after this long; no call runs anywhere near it.
HOLD_SECONDS = 3600


@dataclass(frozen=True)
class Reservation:
    consumer: str | None
    amount: int
    hold: str | None = None  # the spend_holds row, released when the receipt is written


class Budget:
    def __init__(self, db: Database, settler: str, escrow=None):
        self.db = db
        self.settler = settler
        self.escrow = escrow  # PaymentEscrow client; None without a chain: nothing can be paid for
        self._lock = threading.Lock()

    def remaining(self, key: ApiKey) -> dict:
        """The consumer's standing: cap, spent this period, escrow balance, unsettled, reserved, left."""
        with self.db.begin() as conn:
            return self._standing(conn, key.consumer, int(time.time()))

    def _standing(self, conn, consumer: str, now: int) -> dict:
        epoch = open_epoch(conn)
        # fees not debited yet, those of a planned close among them, and what a close could not charge
        unsettled = owed_by(conn, consumer)
        # paid access to private Datanets and paid compute jobs are debited from the same cap and escrow at once;
        # on chain they are in `spent` and out of the balance, and until then they are counted here
        access = paying_by(conn, consumer)
        reserved = held_by(conn, consumer, now)
        if self.escrow is not None:  # the cap in force: the consumer may have lowered or revoked it on chain
            allowance = self.escrow.spending_cap(consumer, self.settler)
            balance = self.escrow.balance_of(consumer)
            # a withdrawal the consumer asked for leaves the escrow once its delay ends, whatever was spent meanwhile
            withdrawing = self.escrow.pending_withdrawal(consumer).amount
            cap, spent, ends_at = allowance.cap, allowance.spent, allowance.period_ends_at
        else:
            cap = spent = balance = withdrawing = ends_at = 0
        left = max(0, min(cap - spent - unsettled - access, balance - withdrawing - unsettled - access) - reserved)
        return {"consumer": consumer, "epoch": epoch, "cap": str(cap), "period_ends_at": ends_at,
                "spent": str(spent), "access": str(access), "escrow_balance": str(balance),
                "withdrawing": str(withdrawing), "unsettled": str(unsettled),
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
            if int(s["cap"]) == 0:
                raise PaymentRequiredError(
                    f"payment required: {key.consumer} gives this node no spending cap (never signed, or revoked); "
                    "sign one with `ledgerlm apikey create --as KEY --cap AMOUNT`", field="authorization")
            left = int(s["remaining"])
            if cost > left:
                raise PaymentRequiredError(
                    f"payment required: {what} may cost up to {format_amount(cost)} LGR, and only "
                    f"{format_amount(left)} LGR is left (cap {format_amount(int(s['cap']))} per period, "
                    f"{format_amount(int(s['spent']))} settled this period, escrow balance "
                    f"{format_amount(int(s['escrow_balance']))}"
                    + (f" of which {format_amount(int(s['withdrawing']))} is being withdrawn"
                       if int(s["withdrawing"]) else "")
                    + f", {format_amount(int(s['unsettled']))} unsettled, "
                    f"{format_amount(int(s['reserved']))} held by calls in flight)", field="max_tokens")
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
