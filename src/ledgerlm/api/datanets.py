"""Datanet routes: the same signed actions the CLI sends, over HTTP."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from ledgerlm.api.deps import get_node, read_grant, reader_of
from ledgerlm.api.multipart import FORM_OVERHEAD_BYTES, in_upload_thread, receive_upload
from ledgerlm.datanets import (
    NEXT_OFFSET_HEADER,
    Contribution,
    Datanet,
    DatanetError,
    DatanetSpec,
    DatanetVersion,
    ReviewBatch,
    UploadInProgress,
    UploadReceipt,
)
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node

router = APIRouter(tags=["datanets"])


MAX_LISTED = 1000  # Datanets one listing returns at most; the next page starts at `offset`
LISTING_BYTES = 4 * 1024 * 1024  # a listing page ends once its Datanets' JSON passes this


class CreateDatanetRequest(BaseModel):
    spec: DatanetSpec
    action: SignedAction


class ActionRequest(BaseModel):
    action: SignedAction


@router.post("/datanets", response_model=Datanet, status_code=201)
def create_datanet(body: CreateDatanetRequest, node: Node = Depends(get_node)):
    """Create a Datanet; `action` is the owner's signed CreateDatanet over the spec's hash."""
    return node.datanets.create(body.spec, body.action)


@router.get("/datanets", response_model=list[Datanet])
def list_datanets(response: Response, offset: int = Query(0, ge=0),
                  limit: int = Query(MAX_LISTED, ge=1, le=MAX_LISTED),
                  node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)):
    """Public Datanets, and the private ones the signed reader (X-Ledgerlm-Read) belongs to, in creation order:
    at most `limit` (up to 1,000) from `offset` on, and fewer once the page's JSON passes 4 MiB; while more
    follow, X-Ledgerlm-Next-Offset says where the next page starts."""
    found, following = node.datanets.page(grant.reader if grant else None, offset=offset, limit=limit,
                                          shows_private=grant.covers if grant else (lambda _name: False),
                                          budget_bytes=LISTING_BYTES)
    if following is not None:
        response.headers[NEXT_OFFSET_HEADER] = str(following)
    return found


@router.get("/datanets/{name}", response_model=Datanet)
def show_datanet(name: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)):
    node.datanets.require_access(name, reader_of(grant, name))
    return node.datanets.get(name)


@router.get("/datanets/{name}/members")
def members(name: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> list[str]:
    """Who besides the owner may use a private Datanet."""
    return node.datanets.members(name, reader_of(grant, name))


@router.post("/datanets/{name}/members")
def change_member(name: str, body: ActionRequest, node: Node = Depends(get_node)) -> list[str]:
    """The owner adds (signed AddMember) or removes (signed RemoveMember) a member; returns the members."""
    return node.datanets.change_member(name, body.action)


@router.get("/datanets/{name}/price")
def access_prices(name: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """What a member pays to train on (or export) a private Datanet's versions (default and per version, base units)."""
    return node.datanets.access_prices(name, reader_of(grant, name))


@router.post("/datanets/{name}/price")
def set_access_price(name: str, body: ActionRequest, node: Node = Depends(get_node)) -> dict:
    """The owner prices training on and exporting a private Datanet (signed SetAccessPrice; version 0: every
    version)."""
    return node.datanets.set_access_price(name, body.action)


@router.post("/datanets/{name}/owner-share")
def set_owner_share(name: str, body: ActionRequest, node: Node = Depends(get_node)) -> dict:
    """The owner names their share of the Datanet's revenue shares (signed SetOwnerShare, basis points) in its
    policy, until the shares are issued (409 after)."""
    return node.set_owner_share(name, body.action)


@router.post(
    "/datanets/{name}/contributions", response_model=UploadReceipt, status_code=201,
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["action", "files"],
        "properties": {
            "action": {"type": "string", "description": "the signed Contribute action, as JSON; first"},
            "manifest": {"type": "string", "description": "JSON [[name, sha256, size], ...] that was signed"},
            "skip_duplicates": {"type": "boolean"},
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
        },
    }}}}},
)
async def contribute(name: str, request: Request, node: Node = Depends(get_node)):
    """Upload files as one signed batch: every contribution in it is stored, or none.

    Read as it arrives: the signature (the `action` field, sent first) and the signed manifest's
    sizes are checked before any file byte; each file stops at its limit and leaves nothing."""
    upload = UploadInProgress(node.datanets, name)
    await receive_upload(request, upload, max_body=node.config.storage_quota_bytes + FORM_OVERHEAD_BYTES,
                         max_files=node.config.max_upload_files)
    return await in_upload_thread(upload.finish)


@router.get("/datanets/{name}/contributions", response_model=list[Contribution])
def list_contributions(
    name: str,
    response: Response,
    state: str | None = None,
    limit: int = 100,  # bounded by the room: a 400 naming limit, with the maximum
    offset: int = 0,
    payload: bool = False,
    events: bool = False,
    node: Node = Depends(get_node),
    grant: ReadGrant | None = Depends(read_grant),
):
    """One page of contributions (at most 1,000, or 100 with `payload`, whose data stop at 8 MiB a page);
    the X-Ledgerlm-Next-Offset header says where the next page starts while more follow."""
    node.datanets.require_access(name, reader_of(grant, name))
    page = node.datanets.contribution_page(
        name, state=state, limit=limit, offset=offset, with_payload=payload, with_events=events
    )
    if page.next_offset is not None:
        response.headers[NEXT_OFFSET_HEADER] = str(page.next_offset)
    return page.contributions


@router.get("/contributions/{contribution_id}", response_model=Contribution)
def show_contribution(contribution_id: int, node: Node = Depends(get_node),
                      grant: ReadGrant | None = Depends(read_grant)):
    contribution = node.datanets.contribution(contribution_id, with_payload=False)
    node.datanets.require_access(contribution.datanet, reader_of(grant, contribution.datanet), named=False)
    return node.datanets.contribution(contribution_id)


@router.post("/contributions/{contribution_id}/withdraw", response_model=Contribution)
def withdraw(contribution_id: int, body: ActionRequest, node: Node = Depends(get_node)):
    """The contributor removes their data from every future version (signed WithdrawContribution)."""
    return node.datanets.withdraw(contribution_id, body.action)


@router.post("/contributions/{contribution_id}/review", response_model=Contribution)
def review(contribution_id: int, body: ActionRequest, node: Node = Depends(get_node)):
    """The Datanet owner accepts or rejects a pending contribution (signed ReviewContribution)."""
    return node.datanets.review(contribution_id, body.action)


@router.post("/datanets/{name}/reviews", response_model=ReviewBatch)
def review_many(name: str, body: ActionRequest, node: Node = Depends(get_node)):
    """The owner accepts or rejects many pending contributions at once (signed ReviewContributions)."""
    return node.datanets.review_many(name, body.action)


@router.post("/datanets/{name}/versions", response_model=DatanetVersion, status_code=201)
def publish(name: str, body: ActionRequest, node: Node = Depends(get_node)):
    """Publish the accepted contributions as a new immutable version with its Merkle root."""
    return node.datanets.publish(name, body.action)


@router.get("/datanets/{name}/versions/{number}", response_model=DatanetVersion)
def show_version(name: str, number: int, node: Node = Depends(get_node),
                 grant: ReadGrant | None = Depends(read_grant)):
    node.datanets.require_access(name, reader_of(grant, name))
    return node.datanets.version(name, number)


@router.get("/datanets/{name}/versions/{number}/manifest")
def version_manifest(name: str, number: int, node: Node = Depends(get_node),
                     grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """The version's leaves (contribution id, content hash, contributor) and root."""
    node.datanets.require_access(name, reader_of(grant, name))
    return node.datanets.manifest(name, number)


@router.get("/datanets/{name}/versions/{number}/export")
def export_version(name: str, number: int, format: str = "jsonl", node: Node = Depends(get_node),
                   grant: ReadGrant | None = Depends(read_grant)):
    """Download exactly the data of one version as JSONL or Parquet."""
    node.export_licence(name, number, reader_of(grant, name))  # a priced private version: paid licence or 402
    if format not in ("jsonl", "parquet"):
        raise DatanetError("the API exports jsonl or parquet; the CLI turns parquet into hf", field="format")
    workdir = Path(tempfile.mkdtemp(prefix="ledgerlm-export-"))
    target = workdir / f"{name}-v{number}.{format}"
    try:
        node.datanets.export(name, number, format, target)
    except BaseException:
        # A file that is sent is removed by the response's background task, once sent; a refused export sends
        # nothing, so its directory goes now (each failed export had left one behind).
        _cleanup(workdir)
        raise
    return FileResponse(
        target,
        filename=target.name,
        background=BackgroundTask(_cleanup, workdir),
    )


@router.post("/datanets/{name}/versions/{number}/licence")
def export_licence(name: str, number: int, body: ActionRequest, node: Node = Depends(get_node)) -> dict | None:
    """Buy (signed PayAccess, purpose "export") the licence to export a priced private version, debited from the
    signer's escrow once: a licence already held is returned without paying again; null when it is free."""
    return node.export_licence(name, number, None, body.action)


def _cleanup(workdir: Path) -> None:
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
