"""What consumers sign and payees read: standing spending caps the settlement may use, and each account's earnings."""

from __future__ import annotations

import time

from eth_utils import is_address, to_checksum_address
from hexbytes import HexBytes
from sqlalchemy import and_, delete, insert, select

from ledgerlm.buckets import KeyedLimit, TokenBuckets, hourly
from ledgerlm.chain import CAP_LIMIT, DEADLINE_LIMIT
from ledgerlm.economy.consumers import lock_consumer
from ledgerlm.economy.errors import EconomyError
from ledgerlm.errors import LedgerError
from ledgerlm.identity import recover_signer
from ledgerlm.store import Database
from ledgerlm.store.schema import epoch_payouts, epochs, spending_caps

# The node pays the gas of every cap it relays, and a cap is signed by its consumer alone: anyone
# can sign caps for fresh addresses, or churn nonces on one, to spend the node's gas. So the node
# relays a cap only over an escrow that holds something (a cap over an empty one debits nothing), and per consumer
# CAP_RELAY_BURST at once, then one per CAP_RELAY_SECONDS (a client raising its cap before each of
# a few payments stays well inside); the escrow takes a signed cap from any sender, so a consumer in
# a hurry submits it there. A dust deposit makes any fresh address a consumer, so the node also relays
# at most `cap_relays_per_hour` caps in all (NodeConfig).
CAP_RELAY_BURST = 10
CAP_RELAY_SECONDS = 60


class CapRelays:
    """How many caps a node still relays now: per consumer CAP_RELAY_BURST at once, one more per
    CAP_RELAY_SECONDS, and `per_hour` in all (one per node: each pays its own gas)."""

    def __init__(self, per_hour: int = 600):
        self._limit = KeyedLimit(TokenBuckets(burst=CAP_RELAY_BURST, per_second=1 / CAP_RELAY_SECONDS),
                                 hourly(per_hour))

    def take(self, consumer: str) -> None:
        """Count one relay for `consumer`, or refuse it (429) while its relays or the node's are spent."""
        def refusal(spent: str, most: int, wait: int) -> EconomyError:
            yourself = "or submit the signed cap to the escrow yourself (it takes one from any sender)"
            if spent == "each":
                return EconomyError(f"this node has relayed {most} spending caps of {consumer} lately, the most it "
                                    f"relays at once; wait {wait} s, {yourself}", field="consumer", status=429)
            return EconomyError(f"this node has relayed {most} spending caps within the hour, the most it pays the "
                                f"gas of; wait {wait} s, {yourself}", field="cap", status=429)

        self._limit.take_or_refuse(consumer, refusal)


def record_spending_cap(db: Database, escrow, relayer, *, consumer: str, settler: str, cap: int, nonce: int,
                        deadline: int, signature: str, relays: CapRelays | None = None) -> dict:
    """Check a consumer's signed standing SpendingCap, relay it to the escrow (where it replaces any older one for
    this settler, and from where the close and serving read the cap in force) and record it."""
    from ledgerlm.chain import ChainError, SignedSpendingCap

    if not 0 <= int(cap) < CAP_LIMIT:
        raise EconomyError(f"cap must be an amount below {CAP_LIMIT} base units, got {cap}", field="cap")
    if not 0 <= int(deadline) < DEADLINE_LIMIT:
        raise EconomyError(f"deadline must be a Unix time below {DEADLINE_LIMIT}, got {deadline}", field="deadline")
    if not 0 < int(nonce) < DEADLINE_LIMIT:
        raise EconomyError(f"nonce must be a whole number in [1, {DEADLINE_LIMIT}), got {nonce}", field="nonce")
    if not is_address(consumer):
        raise EconomyError(f"consumer must be an address, got {consumer!r}", field="consumer")
    consumer, settler = to_checksum_address(consumer), to_checksum_address(settler)
    typed = escrow.spending_cap_typed_data(consumer, settler, cap, nonce, deadline)
    signer = recover_signer(typed, signature, what="the spending cap", error=EconomyError)
    raw = bytes(HexBytes(signature))  # read as the recovery read it, so the escrow checks the same 65 bytes
    if signer != consumer:
        raise EconomyError(f"the spending cap is signed by {signer}, not the consumer {consumer}", field="signature",
                           status=401)
    held = escrow.spending_cap(consumer, settler)
    if int(nonce) <= held.nonce:
        raise EconomyError(f"the escrow already holds a spending cap of {consumer} for {settler} with nonce "
                           f"{held.nonce}; a new one needs a higher nonce", field="nonce", status=409)
    if int(deadline) <= escrow.chain.head().timestamp:
        raise EconomyError(f"the spending cap's deadline {deadline} has passed", field="deadline")
    if escrow.balance_of(consumer) == 0:
        raise EconomyError(f"the escrow holds nothing of {consumer}: deposit first (a cap over an empty escrow lets "
                           "this node debit nothing, and this node pays the gas of relaying it)", field="consumer",
                           status=402)
    if relays is not None:
        relays.take(consumer)
    try:
        tx = escrow.set_spending_caps_with_sig(relayer, [SignedSpendingCap(
            consumer, settler, int(cap), int(nonce), int(deadline), raw)]).tx_hash
    except ChainError as exc:
        raise EconomyError(f"the escrow refused the spending cap: {exc}", field="signature", status=409) from exc
    with db.begin() as conn:
        lock_consumer(db, conn, consumer)  # two nodes storing a cap for one consumer at once: the later one stands
        conn.execute(delete(spending_caps).where(and_(spending_caps.c.consumer == consumer,
                                                      spending_caps.c.settler == settler)))
        conn.execute(insert(spending_caps).values(consumer=consumer, settler=settler, cap=str(cap), nonce=int(nonce),
                                                  deadline=int(deadline), signature=signature, tx=tx,
                                                  created_at=int(time.time())))
    return {"consumer": consumer, "settler": settler, "cap": str(cap), "nonce": int(nonce), "deadline": int(deadline),
            "tx": tx}


def earnings(db: Database, distributor, address: str) -> dict:
    """Per epoch: the amount, whether it is claimed on chain, the proof, and where it came from."""
    address = to_checksum_address(address)
    with db.connect() as conn:
        rows = conn.execute(select(epoch_payouts, epochs.c.state, epochs.c.details)
                            .join(epochs, epochs.c.number == epoch_payouts.c.epoch)
                            .where(epoch_payouts.c.account == address).order_by(epoch_payouts.c.epoch)).mappings().all()
    out = []
    for r in rows:
        state = r["state"]
        claimable = state in ("posted", "published")
        # the distributor's id of the epoch, to claim with: the node's address above its number
        chain_epoch = int((r["details"] or {}).get("chain_epoch") or r["epoch"])
        claimed = claimable and distributor.is_claimed(chain_epoch, address)
        if claimable and not claimed:
            funding = distributor.epoch(chain_epoch)
            if funding is not None and funding.swept:  # the claim window passed: what was left went to the treasury
                state, claimable = "swept", False
        out.append({"epoch": r["epoch"], "chain_epoch": str(chain_epoch), "amount": r["amount"], "state": state,
                    "claimable": claimable, "claimed": claimed, "proof": r["proof"], "sources": r["sources"]})
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
    if entry["state"] == "swept":
        raise EconomyError(f"epoch {epoch} was swept to the treasury: its claim window has passed", field="epoch",
                           status=409)
    if not entry["claimable"]:
        raise EconomyError(f"epoch {epoch} is {entry['state']}: its payout root is not on chain yet", field="epoch",
                           status=409)
    if entry["claimed"]:
        raise EconomyError(f"{owed['address']} has already claimed epoch {epoch}", field="epoch", status=409)
    try:
        tx = distributor.claim(relayer, int(entry["chain_epoch"]), owed["address"], int(entry["amount"]),
                               entry["proof"])
    except LedgerError as exc:
        if "AlreadyClaimed" not in exc.message:
            raise
        # a claim sent at the same time landed first: the same answer as a claim sent after it
        raise EconomyError(f"{owed['address']} has already claimed epoch {epoch}", field="epoch",
                           status=409) from None
    return {"account": owed["address"], "epoch": epoch, "amount": entry["amount"], "tx_hash": tx.tx_hash}
