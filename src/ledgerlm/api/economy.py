"""Economy routes: spending caps, epoch closes, published payout files, earnings."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ledgerlm.api.deps import get_node
from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings, record_spending_cap
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.faucet import is_loopback
from ledgerlm.node import Node

router = APIRouter(prefix="/economy", tags=["economy"])


class SpendingCapRequest(BaseModel):
    consumer: str
    epoch: int = Field(ge=1)
    cap: int = Field(ge=0)
    deadline: int = Field(ge=0)
    signature: str


@router.post("/caps")
def submit_cap(body: SpendingCapRequest, node: Node = Depends(get_node)) -> dict:
    """A consumer's signed SpendingCap letting this node settle up to `cap` of their escrow in `epoch`."""
    return record_spending_cap(node.db, node.contracts.escrow, consumer=body.consumer, settler=node.account.address,
                               epoch=body.epoch, cap=body.cap, deadline=body.deadline, signature=body.signature)


@router.post("/epochs/close")
def close_epoch(request: Request, node: Node = Depends(get_node)) -> dict:
    """Operator only (loopback): close the open epoch, or finish one a crash interrupted."""
    host = request.client.host if request.client else None
    if not is_loopback(host):
        raise EconomyError(f"only the node operator closes epochs (loopback), not {host}", field="client", status=403)
    return node.economy.close()


@router.get("/epochs")
def list_epochs(node: Node = Depends(get_node)) -> list[dict]:
    from sqlalchemy import select

    from ledgerlm.store.schema import epochs

    with node.db.connect() as conn:
        rows = conn.execute(select(epochs).order_by(epochs.c.number)).mappings().all()
    return [{"epoch": r["number"], "state": r["state"], "opened_at": r["opened_at"], "closed_at": r["closed_at"],
             "root": r["root"], "total": r["total"], **(r["details"] or {})} for r in rows]


@router.get("/epochs/{number}/payouts")
def payout_file(number: int, node: Node = Depends(get_node)) -> dict:
    """The published payout file: accounts, amounts, proofs, sources, pools."""
    return published_files(node.db, number, node.contracts)["payouts"]


@router.get("/epochs/{number}/receipts")
def receipt_file(number: int, node: Node = Depends(get_node)) -> dict:
    """The receipts the epoch settled, as published."""
    return published_files(node.db, number, node.contracts)["receipts"]


@router.get("/epochs/{number}/chain")
def chain_record(number: int, node: Node = Depends(get_node)) -> dict | None:
    """The distributor's record of the epoch (root, funded total, claimed, sweep), or null."""
    funding = node.contracts.distributor.epoch(number)
    return None if funding is None else {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                                         for k, v in asdict(funding).items()}


@router.get("/earnings/{address}")
def account_earnings(address: str, node: Node = Depends(get_node)) -> dict:
    """Per epoch and per source: what the account earned, and whether it has claimed it."""
    return earnings(node.db, node.contracts.distributor, address)
