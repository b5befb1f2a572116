"""Economy routes: spending caps, epoch closes, published payout files, earnings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ledgerlm.api.cadence import start_every
from ledgerlm.api.deps import address_in, get_node, read_grant, reader_of, require_operator
from ledgerlm.economy import list_epochs, published_files, record_spending_cap, show_epoch
from ledgerlm.economy.earnings import earnings, relay_claim
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node

log = logging.getLogger("ledgerlm.economy")

router = APIRouter(prefix="/economy", tags=["economy"])


class SpendingCapRequest(BaseModel):
    consumer: str
    cap: int = Field(ge=0)
    nonce: int = Field(ge=1)
    deadline: int = Field(ge=0)
    signature: str


@router.post("/caps")
def submit_cap(body: SpendingCapRequest, node: Node = Depends(get_node)) -> dict:
    """A consumer's signed standing SpendingCap letting this node debit up to `cap` of their escrow per cap
    period; the node relays it to the escrow, where it replaces any cap with a lower nonce."""
    return record_spending_cap(node.db, node.contracts.escrow, node.account, consumer=body.consumer,
                               settler=node.account.address, cap=body.cap, nonce=body.nonce,
                               deadline=body.deadline, signature=body.signature, relays=node.cap_relays)


@router.get("/caps/{consumer}")
def read_cap(consumer: str, node: Node = Depends(get_node)) -> dict:
    """The spending cap `consumer` gives this node on chain: cap per period, nonce, spent and left this period."""
    consumer = address_in(consumer, "consumer")
    allowance = node.contracts.escrow.spending_cap(consumer, node.account.address)
    return {"consumer": consumer, "settler": node.account.address, "cap": str(allowance.cap),
            "nonce": allowance.nonce, "spent": str(allowance.spent), "left": str(allowance.left),
            "period_ends_at": allowance.period_ends_at}


@router.post("/epochs/close", dependencies=[Depends(require_operator)])
def close_epoch(node: Node = Depends(get_node)) -> dict:
    """Operator only: close the open epoch, or finish one a crash interrupted."""
    return node.economy.close()


def _disclosed(record: dict, node: Node, grant: ReadGrant | None) -> dict:
    """An epoch's record as the reader may see it: paid access to a private Datanet it may not read by amount."""
    from ledgerlm.economy.disclosure import epoch_record_for

    return epoch_record_for(record, lambda d: node.datanets.may_read(d, reader_of(grant, d)))


@router.get("/epochs")
def epochs(node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> list[dict]:
    """Every epoch: state, root, total and the close's counts (the pools are in the payout file); a paid access to
    a private Datanet names its payer, version and purpose only to those who may read that Datanet."""
    return [_disclosed(e, node, grant) for e in list_epochs(node.db)]


@router.get("/epochs/{number}")
def epoch(number: int, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """One epoch with its debits and any shortfall: what consumers owed but the cap in force did not let the
    close debit (that part of their fees was not paid out). Paid access shown as in the listing."""
    return _disclosed(show_epoch(node.db, number), node, grant)


@router.get("/epochs/{number}/payouts")
def payout_file(number: int, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """The published payout file: accounts, amounts, proofs, sources, pools. A private Datanet's data and
    validator pools show their amount only, and its name is left out of the sources, unless the reader's signed
    read (X-Ledgerlm-Read) names its owner or a member."""
    from ledgerlm.economy.disclosure import datanets_named, hidden_from, payout_file_for

    payouts = published_files(node.db, number, node.contracts)["payouts"]
    hidden = hidden_from(datanets_named(payouts), lambda d: node.datanets.may_read(d, reader_of(grant, d)))
    return payout_file_for(payouts, hidden)


@router.get("/epochs/{number}/receipts")
def receipt_file(number: int, node: Node = Depends(get_node)) -> dict:
    """The receipts the epoch settled, as published."""
    return published_files(node.db, number, node.contracts)["receipts"]


@router.get("/epochs/{number}/chain")
def chain_record(number: int, node: Node = Depends(get_node)) -> dict | None:
    """The distributor's record of the epoch (root, funded total, claimed, sweep), or null."""
    funding = node.contracts.distributor.epoch(node.economy.chain_epoch(number))
    return None if funding is None else {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                                         for k, v in asdict(funding).items()}


@router.get("/earnings/{address}")
def account_earnings(address: str, node: Node = Depends(get_node),
                     grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """Per epoch and per source: what the account earned, and whether it has claimed it; a private Datanet is
    named among the sources only to a reader who may read it."""
    from ledgerlm.economy.disclosure import earnings_datanets, earnings_for, hidden_from

    owed = earnings(node.db, node.contracts.distributor, address_in(address))
    return earnings_for(owed, hidden_from(earnings_datanets(owed),
                                          lambda d: node.datanets.may_read(d, reader_of(grant, d))))


class ClaimRequest(BaseModel):
    action: SignedAction


@router.post("/claims")
def claim(body: ClaimRequest, node: Node = Depends(get_node)) -> dict:
    """Relay an account's claim of one epoch's payout (signed ClaimPayout): the node pays the gas, the
    tokens go to the account. The signature is spent even when the claim is refused."""
    signer = node.accept_action(body.action, "ClaimPayout", {})
    return relay_claim(node.db, node.contracts.distributor, node.account, signer, int(body.action.message["epoch"]))


def start_epoch_cadence(node) -> Callable[[], None]:
    """With `epoch_seconds` set, close the open epoch that often in the background; returns a stopper."""
    seconds = getattr(getattr(node, "config", None), "epoch_seconds", 0)
    if not seconds or not node.on_chain:
        return lambda: None

    def close() -> None:  # a failed close is retried at the next tick, resuming where it stopped
        log.info("epoch close: %s", node.economy.close().get("state"))

    return start_every(seconds, "epoch-cadence", close, log)
