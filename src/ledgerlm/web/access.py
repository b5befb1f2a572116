"""Who is reading a page: a signed read request the page's wallet made, kept for minutes in a cookie."""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import Request

from ledgerlm.errors import LedgerError
from ledgerlm.identity import ReadGrant, verify_read_request

# The cookie holds the same `reader:node:datanet:expiry:signature` value as the API's X-Ledgerlm-Read header:
# reads only, never an action, and it expires within the node's read-request limit.
READ_COOKIE = "ledgerlm_read"


def page_grant(request: Request) -> ReadGrant | None:
    """The page's signed read request, verified; None without one or when it expired."""
    value = unquote(request.cookies.get(READ_COOKIE) or "")
    if not value:
        return None
    try:
        node = request.app.state.node
        return verify_read_request(value, node.domain, node=node.account.address)
    except LedgerError:
        return None


def page_reader(request: Request, datanet: str | None = None) -> str | None:
    """The reader a valid signed read names (for `datanet`, when given); None without one or when it expired."""
    grant = page_grant(request)
    if grant is None:
        return None
    return grant.reader if datanet is None or grant.covers(datanet) else None
