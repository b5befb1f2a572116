"""Revenue share routes: the allocation an issue would make, issue (signed by the asset's owner), the assets, their
holders and earnings per share."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ledgerlm.api.deps import get_node, read_grant, reader_of
from ledgerlm.errors import LedgerError
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node

router = APIRouter(prefix="/shares", tags=["shares"])


class IssueBody(BaseModel):
    action: SignedAction
    share_issue_signature: str  # the owner's RevenueShareFactory ShareIssue signature over the same terms


def _readable(node: Node, ref: str, grant: ReadGrant | None):
    """The asset, once the reader may read it: a private Datanet's allocation names its contributors and what
    their data was valued at, so only its owner and members (signed read request) see it."""
    asset = node.shares.asset(ref)
    if asset.kind == "datanet":
        node.datanets.require_access(asset.asset, reader_of(grant, asset.asset))
    return asset


def _show(node: Node, asset) -> dict:
    return {**asset.to_dict(), "earnings": node.shares.earnings(asset.ref)}


@router.get("/allocation/{kind}/{asset}")
def allocation(kind: str, asset: str, supply: int = Query(..., gt=0), version: int = Query(default=0, ge=0),
               node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """The allocation an issue of `supply` base units would make (leaves with proofs), its root and the factory's
    EIP-712 domain: what the owner checks and signs, in IssueShares and in the factory's ShareIssue. A private
    Datanet's names its contributors, so only its owner and members (signed read request) see it."""
    if kind == "datanet":
        node.datanets.require_access(asset, reader_of(grant, asset))
    return node.shares.preview(kind, asset, supply, version).to_dict()


@router.post("", status_code=201)
def issue(body: IssueBody, node: Node = Depends(get_node)) -> dict:
    """Issue an asset's shares once, on the allocation root its owner signed: a signed IssueShares by the
    Datanet's owner or the model's developer, and their ShareIssue signature over the same terms for the chain."""
    return _show(node, node.shares.issue(body.action, body.share_issue_signature))


@router.get("")
def assets(node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> list[dict]:
    """Every asset with shares the reader may see (a private Datanet's: its owner and members): token, supply,
    allocation root."""
    shown = []
    for a in node.shares.all():
        try:
            if a.kind == "datanet":
                node.datanets.require_access(a.asset, reader_of(grant, a.asset))
        except LedgerError:
            continue
        shown.append({k: v for k, v in a.to_dict().items() if k != "allocation"})
    return shown


@router.get("/{ref}")
def show(ref: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """One asset's shares (`datanet:NAME`, `model:ID`, a bare name or the token): allocation with proofs,
    and the revenue paid to holders per epoch with earnings per whole share."""
    return _show(node, _readable(node, ref, grant))


@router.get("/{ref}/holders")
def holders(ref: str, block: int | None = Query(default=None, ge=0), node: Node = Depends(get_node),
            grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """Holders at `block` (default: the chain head): balance, allocation not yet claimed, basis points."""
    return node.shares.holders(_readable(node, ref, grant).ref, block)
