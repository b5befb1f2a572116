"""Compute provider routes: offers, jobs and reports; every write is a signed action."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ledgerlm.api.deps import address_in, get_node, is_operator, read_grant
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node

router = APIRouter(tags=["providers"])


class OfferBody(BaseModel):
    action: SignedAction  # OfferCompute (or WithdrawOffer)


class AcceptBody(BaseModel):
    action: SignedAction  # AcceptOffer
    kind: str
    spec: dict


class ReportBody(BaseModel):
    action: SignedAction  # ReportJob
    result: dict
    files: dict[str, str] = Field(default_factory=dict)  # training checkpoints: sha256 -> base64


@router.post("/providers/offers", status_code=201)
def offer(body: OfferBody, node: Node = Depends(get_node)) -> dict:
    """A provider's signed offer of hardware for train or serve jobs at a price per job (needs provider stake)."""
    return node.providers.offer(body.action).model_dump()


@router.post("/providers/offers/{offer_id}/withdraw")
def withdraw(offer_id: int, body: OfferBody, node: Node = Depends(get_node)) -> dict:
    """The provider's signed WithdrawOffer: the offer takes no new jobs."""
    return node.providers.withdraw(offer_id, body.action).model_dump()


@router.get("/providers/offers")
def offers(kind: str | None = None, provider: str | None = None, node: Node = Depends(get_node)) -> list[dict]:
    """Open offers, cheapest first, with each provider's stake."""
    return [o.model_dump() for o in node.providers.offers(kind=kind, provider=address_in(provider, "provider"))]


@router.post("/providers/jobs", status_code=201)
def accept(body: AcceptBody, node: Node = Depends(get_node)) -> dict:
    """A requester's signed AcceptOffer: one job, paid at once from escrow (402 when the escrow cannot pay)."""
    return node.providers.accept(body.action, body.kind, body.spec).visible_to(None, operator=True)


def _reader(grant: ReadGrant | None) -> str | None:
    return grant.reader if grant is not None and grant.covers("*") else None


@router.get("/providers/jobs")
def jobs(provider: str | None = None, requester: str | None = None, node: Node = Depends(get_node),
         grant: ReadGrant | None = Depends(read_grant), operator: bool = Depends(is_operator)) -> list[dict]:
    """Jobs; spec, result and spot-check details only for their requester and provider (a signed read request)
    and the operator."""
    return [j.visible_to(_reader(grant), operator=operator)
            for j in node.providers.jobs(provider=address_in(provider, "provider"),
                                         requester=address_in(requester, "requester"))]


@router.get("/providers/jobs/{job_id}")
def job(job_id: int, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant),
        operator: bool = Depends(is_operator)) -> dict:
    return node.providers.job(job_id).visible_to(_reader(grant), operator=operator)


@router.post("/providers/jobs/{job_id}/report")
def report(job_id: int, body: ReportBody, node: Node = Depends(get_node)) -> dict:
    """The provider's signed result; the node spot-checks it before answering (verified or rejected + slashed)."""
    return node.providers.report(job_id, body.action, body.result, body.files).visible_to(None, operator=True)
