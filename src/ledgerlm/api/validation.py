"""Validation routes: gate policy, validator rounds (open, commit, reveal, tally), reputation."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ledgerlm.api.deps import address_in, get_node, is_operator, read_grant, reader_of
from ledgerlm.datanets.schemas import AccessDenied
from ledgerlm.errors import AuthError
from ledgerlm.identity import ReadGrant, SignedAction
from ledgerlm.node import Node

router = APIRouter(tags=["validation"])


class ActionBody(BaseModel):
    action: SignedAction


class PolicyBody(BaseModel):
    policy: dict
    action: SignedAction


class RevealBody(BaseModel):
    votes: dict[int, int]
    salt: str
    action: SignedAction


@router.get("/datanets/{name}/gate-policy")
def get_policy(name: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant)) -> dict:
    """Which gates reject, which only flag, and their thresholds (a private Datanet's: its owner and members)."""
    node.datanets.require_access(name, reader_of(grant, name))
    return node.validation.policy(name).to_dict()


@router.put("/datanets/{name}/gate-policy")
def set_policy(name: str, body: PolicyBody, node: Node = Depends(get_node)) -> dict:
    """The owner configures the gates (signed SetGatePolicy over the policy's hash)."""
    return node.validation.set_policy(name, body.policy, body.action)


@router.post("/datanets/{name}/rounds", status_code=201)
def open_round(name: str, body: ActionBody, node: Node = Depends(get_node)) -> dict:
    """Run the gates on pending data, then assign what passed to validators sampled by stake."""
    return node.validation.open_round(name, body.action).model_dump()


@router.get("/validation/queue/{address}")
def queue(address: str, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant),
          operator: bool = Depends(is_operator)) -> list[dict]:
    """What a validator has to score in open rounds, with the data and any gate flags.

    A private Datanet's data is shown only to the validator itself, through a signed read request
    (X-Ledgerlm-Read), while it may read that Datanet; its name and contribution ids only to the
    validator and the Datanet's readers (`ValidationRounds.queue`).
    """
    return node.validation.queue(address_in(address), grant, everything=operator)


@router.get("/validation/rounds/{round_id}")
def show_round(round_id: int, node: Node = Depends(get_node), grant: ReadGrant | None = Depends(read_grant),
               operator: bool = Depends(is_operator)) -> dict:
    """One round: assignments, commits, reveals and tally (a private Datanet's: its readers and the round's validators)."""
    view = node.validation.round(round_id)
    if not operator:
        node.validation.require_round_reader(view, reader_of(grant, view.datanet))
    return view.model_dump()


@router.post("/validation/rounds/{round_id}/commit")
def commit(round_id: int, body: ActionBody, node: Node = Depends(get_node)) -> dict:
    """Post the hash of your votes (signed CommitVotes); nobody can read them until the reveal."""
    return node.validation.commit(round_id, body.action).model_dump()


@router.post("/validation/rounds/{round_id}/reveal")
def reveal(round_id: int, body: RevealBody, node: Node = Depends(get_node)) -> dict:
    """Reveal the votes and salt that hash to your commit (signed RevealVotes)."""
    return node.validation.reveal(round_id, body.votes, body.salt, body.action).model_dump()


@router.post("/validation/rounds/{round_id}/tally")
def tally(round_id: int, body: ActionBody, node: Node = Depends(get_node),
          operator: bool = Depends(is_operator)) -> dict:
    """Close the round after its reveal deadline: consensus, decisions, reputation, slashing. Anyone may; a
    private Datanet's round is shown only to those who may read it (others learn that it is tallied)."""
    view = node.validation.tally(round_id, body.action)
    if not operator:
        try:
            node.validation.require_round_reader(view, str(body.action.message.get("caller") or ""))
        except (AuthError, AccessDenied):
            return {"id": view.id, "state": view.state}
    return view.model_dump()


@router.get("/reputation/{address}")
def reputation(address: str, node: Node = Depends(get_node)) -> dict:
    address = address_in(address)
    v = node.validation
    return {"address": address, "contributor_bps": v.reputation(address, "contributor"),
            "validator_bps": v.reputation(address, "validator"),
            "history": {role: v.reputation_history(address, role) for role in ("contributor", "validator")}}
