"""Templates and the filters every dashboard page shares: amounts, times, hashes, addresses."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ledgerlm import __version__
from ledgerlm.times import format_time, iso
from ledgerlm.units import format_amount

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

NAV = [("/web/datanets", "Datanets"), ("/web/validation", "Validation"), ("/web/models", "Models"),
       ("/web/playground", "Playground"), ("/web/economy", "Economy"), ("/web/ledger", "Ledger")]


def _amount(value: Any) -> str:
    """Base units (int or decimal string) as LGR; anything else as it is."""
    try:
        return format_amount(int(value))
    except (TypeError, ValueError):
        return "—" if value is None else str(value)


def _when(ts: Any) -> Markup:
    if not ts:
        return Markup("—")
    return Markup('<time datetime="{}">{}</time>').format(iso(int(ts)), format_time(int(ts), time.time()))


def _short(value: Any, keep: int = 10) -> Markup:
    """A long hash or address shortened on screen, whole in its title and for screen readers' copy."""
    text = "" if value is None else str(value)
    if len(text) <= keep + 6:
        return Markup('<code>{}</code>').format(text)
    return Markup('<code title="{0}">{1}…{2}</code>').format(text, text[:keep], text[-4:])


def _address_link(value: Any) -> Markup:
    if not value:
        return Markup("—")
    return Markup('<a href="/web/ledger/address/{0}">{1}</a>').format(value, _short(value))


def _tx_link(value: Any) -> Markup:
    if not value:
        return Markup('<span class="muted">not on chain yet</span>')
    return Markup('<a href="/web/ledger/tx/{0}">{1}</a>').format(value, _short(value))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _evm(value: Any) -> str:
    """An event argument as a contract reads it: bytes (bytes32 ids, hashes) as 0x-hex, lists item by item."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_evm(v) for v in value) + "]"
    return str(value)


def _bps(value: Any) -> str:
    try:
        return f"{int(value) / 100:.2f} %"
    except (TypeError, ValueError):
        return "—"


environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                          undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
environment.filters.update(amount=_amount, when=_when, short=_short, address=_address_link, tx=_tx_link,
                           pretty=_pretty, bps=_bps, evm=_evm)
environment.globals.update(nav=NAV, ledgerlm_version=__version__)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render one page; `active` in the navigation is the section the path belongs to."""
    path = request.url.path
    active = next((href for href, _ in NAV if path == href or path.startswith(href + "/")), "/")
    html = environment.get_template(template).render(request=request, active=active, **context)
    return HTMLResponse(html, status_code=status_code)
