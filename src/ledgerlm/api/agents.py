"""Agent routes: the policy an owner signs for an agent, the kill switch, and what the node enforces."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ledgerlm.agents import AgentStanding
from ledgerlm.api.deps import get_node, read_grant, reader_of
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node

router = APIRouter(prefix="/agents", tags=["agents"])


class PolicyBody(BaseModel):
    action: SignedAction  # the owner's SetAgentPolicy
    binding: SignedAction | None = None  # the agent's BindAgent naming that owner; needed the first time only


class PauseBody(BaseModel):
    action: SignedAction  # the owner's PauseAgent (paused: true to pause, false to resume)


MAX_LISTED = 1000  # agents one listing returns at most; the next page starts at `offset`
# what a policy shows in place of a private Datanet's name to one who may not read that Datanet (no name has
# brackets, so it matches none)
HIDDEN_DATANET = "(private)"


def _shown(standing: AgentStanding, node: Node, grant: ReadGrant | None) -> dict:
    """The standing as `grant`'s reader may see it: the agent and its owner see the whole policy; anyone else sees
    the private Datanets it allows only if they may read them (a policy must not name a private Datanet)."""
    data = standing.to_dict()
    reader = grant.reader.lower() if grant is not None else None
    if reader in (standing.agent.lower(), standing.owner.lower()):
        return data
    data["policy"]["allow_datanets"] = [
        name if node.datanets.may_read(name, reader_of(grant, name)) else HIDDEN_DATANET
        for name in data["policy"]["allow_datanets"]]
    return data


@router.get("")
def list_agents(owner: str | None = None, offset: int = Query(0, ge=0),
                limit: int = Query(MAX_LISTED, ge=1, le=MAX_LISTED), node: Node = Depends(get_node),
                grant: ReadGrant | None = Depends(read_grant)) -> list[dict]:
    """The agents with a policy on this node (or one owner's), by address, with what each spent under it: at most
    `limit` (up to 1,000) from `offset` on. A private Datanet a policy allows is named only to those who may read
    it (with `X-Ledgerlm-Read`), and to the agent and its owner."""
    return [_shown(s, node, grant) for s in node.agent_policies.list(owner, offset=offset, limit=limit)]


@router.get("/{address}")
def show_agent(address: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """The policy the node enforces for this agent, its owner, and what it spent in the budget's scope (private
    Datanets named as in the listing)."""
    return _shown(node.agent_policies.standing(address), node, grant)


@router.put("/{address}/policy")
def set_policy(address: str, body: PolicyBody, node: Node = Depends(get_node)) -> dict:
    """Register or replace an agent's policy, signed by its owner; checked before its next action."""
    return node.agent_policies.register(address, body.action, body.binding).to_dict()


@router.post("/{address}/pause")
def pause(address: str, body: PauseBody, node: Node = Depends(get_node)) -> dict:
    """The owner's kill switch: refuse (or allow again) the agent's next spend, contribution or vote."""
    return node.agent_policies.set_paused(address, body.action).to_dict()
