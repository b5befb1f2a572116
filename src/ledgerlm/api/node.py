"""Routes about the node itself: identity, chain id, limits."""

from fastapi import APIRouter, Depends

from ledgerlm.api.deps import get_node
from ledgerlm.node import Node

router = APIRouter(prefix="/node", tags=["node"])


@router.get("/info")
def info(node: Node = Depends(get_node)) -> dict:
    """Version, chain id (for signing), the node's address and upload limit."""
    return node.info()
