"""The SDK any Python program (an agent included) uses to talk to a node: one client that signs locally and
speaks the node's HTTP API, the same API the CLI uses."""

from __future__ import annotations

from ledgerlm.client import AgentActions, ChainActions, FactoryActions, NodeClient, ServingActions, ValidationActions
from ledgerlm.errors import AuthError, ConflictError, LedgerError, NotFoundError


def connect(url: str, *, operator_token: str | None = None, timeout: float = 600.0) -> NodeClient:
    """A client of the node at `url` (e.g. `http://127.0.0.1:8547`)."""
    return NodeClient.connect(url, timeout=timeout, operator_token=operator_token)


__all__ = [
    "AgentActions", "AuthError", "ChainActions", "ConflictError", "FactoryActions", "LedgerError", "NodeClient", "NotFoundError",
    "ServingActions", "ValidationActions", "connect",
]
