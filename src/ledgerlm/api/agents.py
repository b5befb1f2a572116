"""Agent routes: the policy an owner signs for an agent, the kill switch, and what the node enforces."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ledgerlm.api.deps import get_node
from ledgerlm.identity import SignedAction
from ledgerlm.node import Node

router = APIRouter(prefix="/agents", tags=["agents"])


class PolicyBody(BaseModel):
    action: SignedAction  # the owner's SetAgentPolicy
    binding: SignedAction | None = None  # the agent's BindAgent naming that owner; needed the first time only


class PauseBody(BaseModel):
    action: SignedAction  # the owner's PauseAgent (paused: true to pause, false to resume)


MAX_LISTED = 1000  # agents one listing returns at most; the next page starts at `offset`


@router.get("")
def list_agents(owner: str | None = None, offset: int = Query(0, ge=0),
                limit: int = Query(MAX_LISTED, ge=1, le=MAX_LISTED), node: Node = Depends(get_node)) -> list[dict]:
    """The agents with a policy on this node (or one owner's), by address, with what each spent under it: at most
    `limit` (up to 1,000) from `offset` on."""
    return [s.to_dict() for s in node.agent_policies.list(owner, offset=offset, limit=limit)]


@router.get("/{address}")
def show_agent(address: str, node: Node = Depends(get_node)) -> dict:
    """The policy the node enforces for this agent, its owner, and what it spent in the budget's scope."""
    return node.agent_policies.standing(address).to_dict()


@router.put("/{address}/policy")
def set_policy(address: str, body: PolicyBody, node: Node = Depends(get_node)) -> dict:
    """Register or replace an agent's policy, signed by its owner; checked before its next action."""
    return node.agent_policies.register(address, body.action, body.binding).to_dict()


@router.post("/{address}/pause")
def pause(address: str, body: PauseBody, node: Node = Depends(get_node)) -> dict:
    """The owner's kill switch: refuse (or allow again) the agent's next spend, contribution or vote."""
    return node.agent_policies.set_paused(address, body.action).to_dict()
