"""Datanet pages: browse and search, create, detail with contributions, gate findings, votes and versions."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from ledgerlm.datanets import DOCUMENTS
from ledgerlm.errors import LedgerError
from ledgerlm.web.access import page_reader
from ledgerlm.web.render import page

router = APIRouter()

STATES = ("pending", "accepted", "rejected", "withdrawn")
PAGE_SIZE = 50
VERSIONS_SHOWN = 20  # the newest versions a Datanet's page lists and checks against the chain (a call each)


@router.get("/web/datanets")
def datanet_list(request: Request, q: str = "", offset: int = Query(0, ge=0)):
    node = request.app.state.node
    reader = page_reader(request)
    # a read signed for one Datanet shows that private one, not every other the reader belongs to; the matching
    # names are read light, and only one page of Datanets is loaded
    names = node.datanets.listed_names(reader, query=q,
                                       shows_private=lambda name: page_reader(request, name) is not None)
    found = [node.datanets.get(name) for name in names[offset:offset + PAGE_SIZE]]
    return page(request, "datanets.html", datanets=found, q=q, reader=reader, offset=offset, page_size=PAGE_SIZE,
                total=len(names))


@router.get("/web/datanets/new")
def datanet_new(request: Request):
    return page(request, "datanet_new.html")


def round_outcomes(rounds) -> dict[int, dict]:
    """Per contribution: the round that scored it, its votes, consensus and decision (newest round wins)."""
    outcomes: dict[int, dict] = {}
    for r in sorted(rounds, key=lambda r: r.id):
        for cid, validators in r.assignments.items():
            scored = (r.tally or {}).get("contributions", {}).get(str(cid))
            outcomes[int(cid)] = {"round": r.id, "state": r.state, "validators": validators,
                                  "votes": (scored or {}).get("votes", {}), "consensus": (scored or {}).get("consensus"),
                                  "decision": (scored or {}).get("decision")}
    return outcomes


def gate_findings(contribution) -> list[dict]:
    """The gates' findings recorded on a contribution's history (each event may carry a gate report)."""
    found = []
    for event in contribution.events:
        for finding in (event.get("details") or {}).get("findings", []) or []:
            found.append(finding)
    return found


def _chain_roots(node, datanet, shown) -> dict[int, str | None]:
    """Each shown version's root as the Registry holds it, so the page can show both sides."""
    if not node.on_chain:
        return {}
    from ledgerlm.node import datanet_chain_id

    roots: dict[int, str | None] = {}
    for v in shown:
        try:
            roots[v.number] = node.contracts.registry.get_version(datanet_chain_id(datanet.name), v.number).root
        except LedgerError:
            roots[v.number] = None
    return roots


@router.get("/web/datanets/{name}")
def datanet_detail(request: Request, name: str, state: str | None = None, offset: int = Query(0, ge=0)):
    node = request.app.state.node
    node.datanets.require_access(name, page_reader(request, name))
    datanet = node.datanets.get(name)
    contributions = node.datanets.contributions(name, state=state, limit=PAGE_SIZE, offset=offset,
                                                with_payload=False, with_events=True)
    rounds = node.validation.rounds(name, limit=20)
    shown = datanet.versions[::-1][:VERSIONS_SHOWN]  # newest first, a bounded number of chain calls per view
    return page(request, "datanet.html", datanet=datanet, versions=shown, contributions=contributions, state=state, states=STATES,
                offset=offset, page_size=PAGE_SIZE, findings={c.id: gate_findings(c) for c in contributions},
                outcomes=round_outcomes(node.validation.latest_rounds_of([c.id for c in contributions])), rounds=rounds, chain_roots=_chain_roots(node, datanet, shown),
                documents=datanet.kind == DOCUMENTS, policy=node.validation.policy(name).to_dict())


@router.get("/web/contributions/{contribution_id}")
def contribution_detail(request: Request, contribution_id: int):
    node = request.app.state.node
    brief = node.datanets.contribution(contribution_id, with_payload=False)
    node.datanets.require_access(brief.datanet, page_reader(request, brief.datanet), named=False)
    contribution = node.datanets.contribution(contribution_id)
    # the round that last scored it, not every round of the Datanet (each read whole) to find it among them
    outcome = round_outcomes(node.validation.latest_rounds_of([contribution_id])).get(contribution_id)
    return page(request, "contribution.html", c=contribution, findings=gate_findings(contribution), outcome=outcome)
