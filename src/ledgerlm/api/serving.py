"""Serving routes beside the OpenAI ones: consumer API keys and their budget, and receipts."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from ledgerlm.api.deps import get_node, read_grant, reader_of
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node
from ledgerlm.serving import ApiKeyError
from ledgerlm.serving.receipts import MAX_LISTED, Receipt, public, receipt_datanet, shown

router = APIRouter(tags=["serving"])


class CreateKeyBody(BaseModel):
    action: SignedAction  # CreateApiKey over the key's sha256 and the cap
    cap_signature: str  # the consumer's PaymentEscrow SpendingCap signature


class ActionBody(BaseModel):
    action: SignedAction


@router.get("/serving/status")
def serving_status(node: Node = Depends(get_node)) -> dict:
    """Read-only, for gateways: the resident base model, the adapters warm on device and in host memory,
    calls running, and the deployment this node signs for."""
    return {**node.serving.status(), "node_address": node.account.address,
            "signing_domain": node.domain.to_dict()}


@router.get("/apikeys/terms")
def key_terms(node: Node = Depends(get_node)) -> dict:
    """What a consumer signs for a key: this node as settler, the open epoch, the escrow's EIP-712 domain."""
    return node.serving.keys.terms()


@router.post("/apikeys", status_code=201)
def create_key(body: CreateKeyBody, node: Node = Depends(get_node)) -> dict:
    """Register a key (by its sha256) under the consumer's signed spending cap for the open epoch."""
    return node.serving.keys.create(body.action, body.cap_signature).model_dump()


@router.get("/apikeys")
def list_keys(consumer: str | None = None, node: Node = Depends(get_node)) -> list[dict]:
    return [k.model_dump() for k in node.serving.keys.list(consumer)]


@router.post("/apikeys/{key_id}/revoke")
def revoke_key(key_id: int, body: ActionBody, node: Node = Depends(get_node)) -> dict:
    if body.action.message.get("keyId") != key_id:
        raise ApiKeyError("the signature is for another key", field="keyId")
    return node.serving.keys.revoke(body.action).model_dump()


@router.get("/apikeys/me")
def my_budget(request: Request, node: Node = Depends(get_node)) -> dict:
    """The calling key's cap, what it spent, its escrow balance and what is left (Bearer sk-lgr-...)."""
    key = node.serving.keys.authenticate(request.headers.get("authorization"))
    if key is None:
        raise ApiKeyError("send the key as `Authorization: Bearer sk-lgr-...`", field="authorization")
    return {"key": key.model_dump(), **node.serving.budget.remaining(key)}


def records_shown(node: Node, grant: ReadGrant | None, receipt: Receipt, seen: dict | None = None) -> bool:
    """Whether the reader may see which records a receipt's answer was attributed to: anyone for a model of a
    public Datanet (or a base model), the owner and members of a private one (`Access.may_read`), as for its
    model's page. `seen` remembers the answer per Datanet over one listing."""
    datanet = receipt_datanet(receipt)
    if datanet is None:
        return True
    seen = {} if seen is None else seen
    if datanet not in seen:
        seen[datanet] = node.datanets.may_read(datanet, reader_of(grant, datanet))
    return seen[datanet]


@router.get("/receipts")
def list_receipts(account: str | None = None, model: str | None = None,
                  state: Literal["attributing", "final"] | None = None,
                  limit: int = Query(100, ge=1, le=MAX_LISTED), before: str | None = None,
                  node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> list[dict]:
    """Receipts, newest first, at most `limit` (up to 1,000); `account` matches the consumer or anyone the receipt
    pays; `before` (the last id of a page) lists the next page."""
    seen: dict[str, bool] = {}
    return [public(r, records_shown=records_shown(node, grant, r, seen))
            for r in node.serving.receipts.list(account=account, model=model, state=state, limit=limit,
                                                before=before)]


@router.get("/receipts/{receipt_id}")
def show_receipt(receipt_id: str, node: Node = Depends(get_node),
                 grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """One receipt with the node's own check (split recomputed, signature recovered) and, once an epoch close
    charged it, that close's settlement transaction."""
    from ledgerlm.economy import receipt_settlement

    log = node.serving.receipts
    receipt = log.get(receipt_id)
    return {"receipt": public(receipt, records_shown=records_shown(node, grant, receipt)),
            "checks": log.verify(receipt), "settlement": receipt_settlement(node.db, receipt_id)}


@router.get("/receipts/{receipt_id}/full")
def show_own_receipt(receipt_id: str, node: Node = Depends(get_node),
                     grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """The consumer's own receipt with the prompt and answer it was made for (so `ledgerlm attribute --verify` can
    recompute it), for a read request (X-Ledgerlm-Read) its consumer signed for every Datanet ("*"): a grant for one
    Datanet reads that Datanet, not the consumer's prompts. 401 without one, 403 for anyone else. The records of a
    private Datanet it was attributed to are shown as to anyone else who may not read that Datanet."""
    from ledgerlm.economy import receipt_settlement

    log = node.serving.receipts
    receipt = log.consumer_copy(receipt_id, grant)
    return {"receipt": shown(receipt, records_shown=records_shown(node, grant, receipt)),
            "checks": log.verify(receipt), "settlement": receipt_settlement(node.db, receipt_id)}
