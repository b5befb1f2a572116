"""Routes about the node itself: identity, chain id, limits."""

from fastapi import APIRouter, Depends

from ledgerlm.api.deps import get_node, is_operator
from ledgerlm.node import Node

router = APIRouter(prefix="/node", tags=["node"])


@router.get("/info")
def info(node: Node = Depends(get_node), operator: bool = Depends(is_operator)) -> dict:
    """Version, chain id (for signing), the node's address and upload limit; where its home and a local
    blob store lie on the server's disk only for the operator."""
    return node.info(operator=operator)
