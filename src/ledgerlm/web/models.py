"""ModelFactory pages: base models, fine-tuned models with lineage and metrics, jobs with a live loss curve."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request

from ledgerlm.errors import LedgerError
from ledgerlm.factory import list_models, read_training
from ledgerlm.web.access import page_grant, page_reader
from ledgerlm.web.render import page

router = APIRouter()

LINEAGE_PAGE = 200  # contributions listed under a model's Datanet version


def _history(path: str) -> list[dict]:
    """(step, loss) points of a finished run, from the run's own record; none when it left no record."""
    try:
        return [{"step": r["step"], "loss": r["loss"]} for r in read_training(Path(path)).get("history", [])]
    except (LedgerError, OSError, ValueError):
        return []


@router.get("/web/models")
def model_list(request: Request):
    node = request.app.state.node
    versions = [(d.name, v.number) for d in node.datanets.list(None) for v in d.versions]
    # the newest jobs the reader may see (a page, not the node's whole history), oldest of them first
    jobs = [j for j in node.factory.jobs(limit=400)
            if node.datanets.may_read(j.datanet, page_reader(request, j.datanet))][:100][::-1]
    shown = (node.factory.shown_to(m, page_reader(request, m.datanet)) for m in node.factory.list())
    models = [m for m in shown if m is not None]
    return page(request, "models.html", models=models, jobs=jobs,
                bases=list_models(node.home.models), versions=versions)


@router.get("/web/models/{model_id}")
def model_detail(request: Request, model_id: str):
    node = request.app.state.node
    record = node.factory.model_for(model_id, page_grant(request), verify=True)
    version = node.datanets.version(record.datanet, record.version)
    try:  # a private Datanet's contributions are listed only to its owner and members
        node.datanets.require_access(record.datanet, page_reader(request, record.datanet))
        leaves, withheld = node.datanets.manifest(record.datanet, record.version)["contributions"], None
    except LedgerError as exc:
        leaves, withheld = [], exc.message
    job = node.factory.job(record.job_id) if record.job_id is not None else None
    return page(request, "model.html", m=record, fees=node.fee_policies([record])[record.id], version=version, leaves=leaves[:LINEAGE_PAGE],
                leaf_count=len(leaves) if withheld is None else version.contribution_count, withheld=withheld,
                job=job, history=_history(record.path))


@router.get("/web/jobs/{job_id}")
def job_detail(request: Request, job_id: int):
    node = request.app.state.node
    job = node.factory.job(job_id)
    node.datanets.require_reader(job.datanet, page_reader(request, job.datanet))
    history = []
    if job.state == "done":
        try:
            history = _history(node.factory.model(job.model_id).path)
        except LedgerError:
            history = []
    return page(request, "job.html", job=job, history=history)
