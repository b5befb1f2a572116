"""Validation pages: rounds with their countdowns and tally, a validator's queue, reputation."""

from __future__ import annotations

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Request

from ledgerlm.errors import LedgerError
from ledgerlm.web.access import page_grant, page_reader
from ledgerlm.web.render import page

router = APIRouter()

# Reputation chart: basis points (0..10,000) over changes, one line per role.
CHART_W, CHART_H, BPS_TOP = 600, 160, 10_000
ROLE_COLOURS = {"validator": "#16794a", "contributor": "#1b6ac9"}


def reputation_chart(history: dict[str, list[dict]]) -> dict | None:
    """One polyline per role over its changes in order, with 5,000 (neutral) marked: coordinates for SVG."""
    steps = max((len(h) for h in history.values()), default=0)
    if steps == 0:
        return None
    dx = CHART_W / max(1, steps)
    lines = []
    for role, changes in sorted(history.items()):
        if not changes:
            continue
        # Each line starts from neutral, the reputation everyone has before their first outcome.
        values = [5_000] + [c["bps"] for c in changes]
        points = " ".join(f"{round(i * dx, 2)},{round(CHART_H * (1 - v / BPS_TOP), 2)}" for i, v in enumerate(values))
        lines.append({"role": role, "points": points, "colour": ROLE_COLOURS.get(role, "#333"),
                      "last": values[-1], "changes": len(changes)})
    return {"lines": lines, "width": CHART_W, "height": CHART_H, "neutral_y": CHART_H / 2}


def _address(value: str) -> str:
    if not is_address(value):
        raise LedgerError(f"address {value!r} is not an Ethereum address (0x and 40 hex digits)", field="address")
    return to_checksum_address(value)


def _may_see(request: Request, node, r) -> bool:
    try:
        node.validation.require_round_reader(r, page_reader(request, r.datanet))
    except LedgerError:
        return False
    return True


def _text(payload) -> str | None:
    return payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else payload


@router.get("/web/validation")
def validation_home(request: Request, address: str = ""):
    node = request.app.state.node
    queue, reputation, chart = None, None, None
    if address:
        address = _address(address)
        # as the API shows it: what of a private Datanet the page's signed reader may see
        queue = [{**item, "payload": _text(item["payload"])}
                 for item in node.validation.queue(address, page_grant(request))]
        reputation = {"contributor": node.validation.reputation(address, "contributor"),
                      "validator": node.validation.reputation(address, "validator")}
        chart = reputation_chart({role: node.validation.reputation_history(address, role)
                                  for role in ("contributor", "validator")})
    by_round: dict[int, list[dict]] = {}
    for item in queue or []:
        by_round.setdefault(item["round_id"], []).append(item)
    rounds = [r for r in node.validation.rounds(limit=50) if _may_see(request, node, r)]
    return page(request, "validation.html", rounds=rounds, address=address, queue=queue,
                by_round=by_round, reputation=reputation, chart=chart)


@router.get("/web/validation/rounds/{round_id}")
def round_detail(request: Request, round_id: int):
    node = request.app.state.node
    r = node.validation.round(round_id)
    node.validation.require_round_reader(r, page_reader(request, r.datanet))
    reputation = {v: node.validation.reputation(v, "validator") for v in r.stakes}
    can_tally = r.state == "open" and node.validation.now() > r.reveal_deadline
    return page(request, "round.html", r=r, reputation=reputation, can_tally=can_tally)
