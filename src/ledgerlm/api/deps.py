"""Request-scoped access to the running node, and who is asking: the operator or a signed reader."""

from fastapi import Depends, Request

from ledgerlm.errors import AuthError
from ledgerlm.node import Node


def get_node(request: Request) -> Node:
    return request.app.state.node


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


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
