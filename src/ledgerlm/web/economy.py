"""Economy pages: epochs, payout files, an account's earnings as a chart over epochs and by source, claims."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ledgerlm.economy import list_epochs, published_files
from ledgerlm.economy.disclosure import (
    datanets_named,
    earnings_datanets,
    earnings_for,
    epoch_record_for,
    hidden_from,
    payout_file_for,
)
from ledgerlm.economy.earnings import earnings
from ledgerlm.errors import LedgerError
from ledgerlm.web.access import page_reader
from ledgerlm.web.render import page
from ledgerlm.web.validation import _address

router = APIRouter()

# One colour per payee role, readable on white and told apart without colour by the legend's order.
ROLE_COLOURS = {"contributor": "#1b6ac9", "data_pool": "#6a3fb5", "developer": "#b8580f", "validator": "#16794a",
                "node": "#5a5a5a"}
CHART_W, CHART_H, BAR_GAP, BAR_MAX = 600, 200, 8, 60


def earnings_chart(epochs: list[dict]) -> dict:
    """Stacked bars, one per epoch, one segment per role: coordinates the template draws as SVG."""
    totals = [int(e["amount"]) for e in epochs]
    top = max(totals, default=0) or 1
    width = min(BAR_MAX, (CHART_W - BAR_GAP * (len(epochs) + 1)) / max(1, len(epochs)))
    bars, roles = [], []
    for i, e in enumerate(epochs):
        x = BAR_GAP + i * (width + BAR_GAP)
        y = CHART_H
        segments = []
        for role, amount in sorted((e.get("sources") or {}).get("roles", {}).items()):
            height = CHART_H * int(amount) / top
            y -= height
            segments.append({"role": role, "amount": amount, "x": round(x, 2), "y": round(y, 2),
                             "w": round(width, 2), "h": round(height, 2), "colour": ROLE_COLOURS.get(role, "#333")})
            if role not in roles:
                roles.append(role)
        bars.append({"epoch": e["epoch"], "amount": e["amount"], "x": round(x + width / 2, 2), "segments": segments})
    return {"bars": bars, "legend": [(r, ROLE_COLOURS.get(r, "#333")) for r in roles], "width": CHART_W,
            "height": CHART_H, "top": top}


def by_source(epochs: list[dict]) -> dict[str, dict[str, int]]:
    """Totals over all epochs per role (the source of each amount)."""
    roles: dict[str, int] = {}
    for e in epochs:
        for role, amount in (e.get("sources") or {}).get("roles", {}).items():
            roles[role] = roles.get(role, 0) + int(amount)
    return roles


@router.get("/web/economy")
def economy_home(request: Request):
    node = request.app.state.node
    epochs = [_disclosed(request, node, e) for e in list_epochs(node.db)]
    return page(request, "economy.html", epochs=list(reversed(epochs)))


def _disclosed(request: Request, node, record: dict) -> dict:
    """An epoch's record with paid access to a private Datanet the page's reader may not read by amount only."""
    return epoch_record_for(record, lambda d: node.datanets.may_read(d, page_reader(request, d)))


@router.get("/web/economy/epochs/{number}")
def epoch_detail(request: Request, number: int):
    node = request.app.state.node
    found = [_disclosed(request, node, e) for e in list_epochs(node.db) if e["epoch"] == number]
    if not found:
        raise LedgerError(f"there is no epoch {number}", field="epoch", status=404)
    files, funding = None, None
    if found[0]["root"]:
        files = published_files(node.db, number, node.contracts if node.on_chain else None)
        # a private Datanet's pools by their amount only, unless the page's signed read names a member
        hidden = hidden_from(datanets_named(files["payouts"]),
                             lambda d: node.datanets.may_read(d, page_reader(request, d)))
        files = {**files, "payouts": payout_file_for(files["payouts"], hidden)}
    if node.on_chain:
        funding = node.contracts.distributor.epoch(node.economy.chain_epoch(number))
    return page(request, "epoch.html", e=found[0], files=files, funding=funding)


@router.get("/web/economy/earnings")
def earnings_lookup(request: Request, address: str = ""):
    if not address:
        return page(request, "earnings.html", address="", owed=None, chart=None, sources={})
    return earnings_page(request, address)


@router.get("/web/economy/earnings/{address}")
def earnings_page(request: Request, address: str):
    node = request.app.state.node
    address = _address(address)
    if not node.on_chain:
        raise LedgerError("this node has no contracts deployed, so nobody has earnings yet", field="chain", status=409)
    owed = earnings(node.db, node.contracts.distributor, address)
    owed = earnings_for(owed, hidden_from(earnings_datanets(owed),
                                          lambda d: node.datanets.may_read(d, page_reader(request, d))))
    return page(request, "earnings.html", address=address, owed=owed, chart=earnings_chart(owed["epochs"]),
                sources=by_source(owed["epochs"]))
