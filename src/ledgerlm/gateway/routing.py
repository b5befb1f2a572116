"""Which serving node a request goes to: one warm with its model first, else rendezvous hashing on the model.

Rendezvous (highest random weight) hashing gives every model the same node order on every gateway
with the same node list, so an adapter's traffic gathers on one node and stays warm there; a node
that leaves moves only the models it ranked first (Thaler and Ravishankar, 1998).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass
class ServingNode:
    """One upstream node as the gateway last saw it."""

    url: str
    up: bool = False
    checked_at: float | None = None
    error: str | None = None  # why it is down, or why it is left out
    misses: int = 0  # status checks failed in a row
    instance: str | None = None
    base_model: str | None = None
    engine_loaded: bool = False
    device: tuple[str, ...] = ()  # adapters in device slots
    host: tuple[str, ...] = ()  # adapters read into host memory
    node_in_flight: int = 0  # calls running on the node, as it last said
    signing_domain: dict | None = None
    address: str | None = None  # the key it signs receipts with, as its status says
    in_flight: int = 0  # requests this gateway has open on it now
    routed: int = 0
    failures: int = 0
    failed_in_a_row: int = 0  # forwarded calls that failed since the node last answered one
    foreign: bool = False  # it signs for another deployment: never routed to
    held_until: float = 0.0  # a node taken out for failing stays down until a status check after this time
    holds: int = 0  # times taken out since it last answered; each hold is twice as long as the one before

    def warmth(self, model: str) -> int:
        """0: ready now (adapter in a device slot, or the loaded base model); 1: in host memory; 2: cold."""
        if model in self.device or (self.engine_loaded and model == self.base_model):
            return 0
        return 1 if model in self.host else 2

    def to_dict(self) -> dict:
        return {"url": self.url, "up": self.up, "error": self.error, "checked_at": self.checked_at,
                "instance": self.instance, "base_model": self.base_model, "engine_loaded": self.engine_loaded,
                "warm": {"device": list(self.device), "host": list(self.host)},
                "node_in_flight": self.node_in_flight, "in_flight": self.in_flight, "routed": self.routed,
                "failures": self.failures, "failed_in_a_row": self.failed_in_a_row,
                "held_until": self.held_until or None}


def rendezvous_weight(url: str, model: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{url}\n{model}".encode()).digest()[:8], "big")


@dataclass
class RoutingTable:
    """The gateway's nodes and the order in which to try them for a model."""

    nodes: list[ServingNode] = field(default_factory=list)

    def order(self, model: str) -> list[ServingNode]:
        """Nodes to try, best first: warm ones by warmth then load, cold ones by the model's hash order,
        and nodes believed down last (the belief may be stale; trying them costs one refused connection); never a
        node that signs for another deployment, which would take the caller's key and answer under its own."""
        up = [n for n in self.nodes if n.up]
        warm = sorted((n for n in up if n.warmth(model) < 2),
                      key=lambda n: (n.warmth(model), n.in_flight, -rendezvous_weight(n.url, model)))
        cold = sorted((n for n in up if n.warmth(model) == 2), key=lambda n: -rendezvous_weight(n.url, model))
        down = sorted((n for n in self.nodes if not n.up and not n.foreign),
                      key=lambda n: -rendezvous_weight(n.url, model))
        return warm + cold + down
