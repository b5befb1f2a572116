"""The gateway: one OpenAI-compatible endpoint in front of several serving nodes of one deployment."""

from ledgerlm.gateway.app import Gateway, GatewaySettings, create_gateway_app
from ledgerlm.gateway.routing import RoutingTable, ServingNode, rendezvous_weight

__all__ = ["Gateway", "GatewaySettings", "RoutingTable", "ServingNode", "create_gateway_app", "rendezvous_weight"]
