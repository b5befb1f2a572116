"""What consumers sign and payees read: spending caps the settlement may use, and each account's earnings."""

from __future__ import annotations

import time

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from sqlalchemy import and_, delete, insert, select

from ledgerlm.chain import CAP_LIMIT, DEADLINE_LIMIT
from ledgerlm.economy.consumers import lock_consumer
from ledgerlm.economy.errors import EconomyError
from ledgerlm.store import Database
from ledgerlm.store.schema import epoch_payouts, epochs, spending_caps


def record_spending_cap(db: Database, escrow, *, consumer: str, settler: str, epoch: int, cap: int, deadline: int,
                        signature: str) -> dict:
    """Store a consumer's signed SpendingCap after checking it recovers to the consumer; a newer one for the
    same epoch replaces the older."""
    # The escrow settles only caps and deadlines its packed debits hold: one past them would stop the close.
    if not 0 <= int(cap) < CAP_LIMIT:
        raise EconomyError(f"cap must be an amount below {CAP_LIMIT} base units, got {cap}", field="cap")
    if not 0 <= int(deadline) < DEADLINE_LIMIT:
        raise EconomyError(f"deadline must be a Unix time below {DEADLINE_LIMIT}, got {deadline}", field="deadline")
    consumer, settler = to_checksum_address(consumer), to_checksum_address(settler)
    typed = escrow.spending_cap_typed_data(consumer, settler, epoch, cap, deadline)
    try:
        signer = Account.recover_message(encode_typed_data(full_message=typed),
                                         signature=bytes.fromhex(signature.removeprefix("0x")))
    except ValueError as exc:
        raise EconomyError(f"signature is not a valid signature: {exc}", field="signature", status=401) from exc
    if signer != consumer:
        raise EconomyError(f"the spending cap is signed by {signer}, not the consumer {consumer}", field="signature",
                           status=401)
    with db.begin() as conn:
        lock_consumer(db, conn, consumer)  # two nodes storing a cap for one consumer at once: the later one stands
        conn.execute(delete(spending_caps).where(and_(spending_caps.c.consumer == consumer,
                                                      spending_caps.c.epoch == epoch)))
        conn.execute(insert(spending_caps).values(consumer=consumer, epoch=epoch, settler=settler, cap=str(cap),
                                                  deadline=deadline, signature=signature, created_at=int(time.time())))
    return {"consumer": consumer, "settler": settler, "epoch": epoch, "cap": str(cap), "deadline": deadline}


def earnings(db: Database, distributor, address: str) -> dict:
    """Per epoch: the amount, whether it is claimed on chain, the proof, and where it came from."""
    address = to_checksum_address(address)
    with db.connect() as conn:
        rows = conn.execute(select(epoch_payouts, epochs.c.state).join(epochs, epochs.c.number == epoch_payouts.c.epoch)
                            .where(epoch_payouts.c.account == address).order_by(epoch_payouts.c.epoch)).mappings().all()
    out = []
    for r in rows:
        claimable = r["state"] in ("posted", "published")
        out.append({"epoch": r["epoch"], "amount": r["amount"], "state": r["state"], "claimable": claimable,
                    "claimed": claimable and distributor.is_claimed(r["epoch"], address), "proof": r["proof"],
                    "sources": r["sources"]})
    return {"address": address, "total": str(sum(int(e["amount"]) for e in out)),
            "unclaimed": str(sum(int(e["amount"]) for e in out if e["claimable"] and not e["claimed"])),
            "epochs": out}


def relay_claim(db: Database, distributor, relayer, address: str, epoch: int) -> dict:
    """Claim `address`'s payout of `epoch` with the `relayer` key paying the gas; the tokens go to `address`.

    The claim is permissionless on chain (the leaf names the payee), so relaying it moves no money
    anywhere but to the payee."""
    owed = earnings(db, distributor, address)
    entry = next((e for e in owed["epochs"] if e["epoch"] == epoch), None)
    if entry is None:
        raise EconomyError(f"{owed['address']} has no payout in epoch {epoch}", field="epoch", status=404)
    if not entry["claimable"]:
        raise EconomyError(f"epoch {epoch} is {entry['state']}: its payout root is not on chain yet", field="epoch",
                           status=409)
    if entry["claimed"]:
        raise EconomyError(f"{owed['address']} has already claimed epoch {epoch}", field="epoch", status=409)
    tx = distributor.claim(relayer, epoch, owed["address"], int(entry["amount"]), entry["proof"])
    return {"account": owed["address"], "epoch": epoch, "amount": entry["amount"], "tx_hash": tx.tx_hash}
