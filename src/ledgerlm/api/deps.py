"""Request-scoped access to the running node for the routers."""

from fastapi import Request

from ledgerlm.node import Node


def get_node(request: Request) -> Node:
    return request.app.state.node
