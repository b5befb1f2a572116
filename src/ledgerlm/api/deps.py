"""Request-scoped access to the running node, and who is asking: the operator or a signed reader."""

from eth_utils import is_address, to_checksum_address
from fastapi import Depends, Request

from ledgerlm.errors import AuthError, LedgerError
from ledgerlm.identity import READ_HEADER, ReadGrant, verify_read_request
from ledgerlm.node import Node
from ledgerlm.serving.keys import bearer


def get_node(request: Request) -> Node:
    return request.app.state.node


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    return bearer(request.headers.get("authorization"))


def is_operator(request: Request, node: Node = Depends(get_node)) -> bool:
    return node.is_operator(bearer_token(request))


def require_operator(request: Request, node: Node = Depends(get_node)) -> None:
    """Routes that read server files or start heavy work: only the node operator may call them."""
    if not node.is_operator(bearer_token(request)):
        given = "a wrong token" if bearer_token(request) else "no token"
        raise AuthError(
            f"this route needs the node operator's credential ({given} given): send `Authorization: Bearer"
            " <token>` with the token in <home>/operator_token",
            field="authorization",
        )


def read_grant(request: Request, node: Node = Depends(get_node)) -> ReadGrant | None:
    """The signed read request in the X-Ledgerlm-Read header, verified for this node; None without one."""
    value = request.headers.get(READ_HEADER)
    return verify_read_request(value, node.domain, node=node.account.address) if value else None


def reader_of(grant: ReadGrant | None, datanet: str) -> str | None:
    """Who is reading `datanet`: the grant's reader when the grant covers that Datanet."""
    return grant.reader if grant is not None and grant.covers(datanet) else None


def address_in(value: str | None, field: str = "address") -> str | None:
    """An address a route was given in its path or query, checksummed; a 400 naming `field` when it is none."""
    if value is None:
        return None
    if not is_address(value):
        raise LedgerError(f"{field} {value!r} is not an Ethereum address", field=field)
    return to_checksum_address(value)


def caller_address(request: Request, node: Node) -> str | None:
    """The address a call comes from: the connection's, or, when that is a gateway this node trusts
    (`trusted_proxies`), the last address in X-Forwarded-For that is not one of them."""
    host = request.client.host if request.client else None
    proxies = {p.strip() for p in node.config.trusted_proxies.split(",") if p.strip()}
    if host not in proxies:
        return host
    forwarded = [p.strip() for p in request.headers.get("x-forwarded-for", "").split(",") if p.strip()]
    for address in reversed(forwarded):
        if address not in proxies:
            return address
    return host
