"""Revenue share routes: issue (signed by the asset's owner), the assets, their holders and earnings per share."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ledgerlm.api.deps import get_node
from ledgerlm.identity import SignedAction
from ledgerlm.node import Node

router = APIRouter(prefix="/shares", tags=["shares"])


class IssueBody(BaseModel):
    action: SignedAction


def _show(node: Node, ref: str) -> dict:
    asset = node.shares.asset(ref)
    return {**asset.to_dict(), "earnings": node.shares.earnings(asset.ref)}


@router.post("", status_code=201)
def issue(body: IssueBody, node: Node = Depends(get_node)) -> dict:
    """Issue an asset's shares (signed IssueShares by the Datanet's owner or the model's developer), once."""
    return _show(node, node.shares.issue(body.action).ref)


@router.get("")
def assets(node: Node = Depends(get_node)) -> list[dict]:
    """Every asset with shares: token, supply, allocation root."""
    return [{k: v for k, v in a.to_dict().items() if k != "allocation"} for a in node.shares.all()]


@router.get("/{ref}")
def show(ref: str, node: Node = Depends(get_node)) -> dict:
    """One asset's shares (`datanet:NAME`, `model:ID`, a bare name or the token): allocation with proofs,
    and the revenue paid to holders per epoch with earnings per whole share."""
    return _show(node, ref)


@router.get("/{ref}/holders")
def holders(ref: str, block: int | None = Query(default=None, ge=0), node: Node = Depends(get_node)) -> dict:
    """Holders at `block` (default: the chain head): balance, allocation not yet claimed, basis points."""
    return node.shares.holders(ref, block)
