"""Attribution route: which contributions shaped an answer of a fine-tuned model."""

from __future__ import annotations

import hashlib

import orjson
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ledgerlm.api.deps import get_node, is_operator
from ledgerlm.errors import AuthError, NotFoundError
from ledgerlm.identity import SignedAction, verify_action
from ledgerlm.node import Node
from ledgerlm.serving.receipts import public_attribution

router = APIRouter(tags=["attribution"])


class AttributeRequest(BaseModel):
    model: str
    prompt: str | list[dict]
    answer: str | None = Field(None, description="Omit to have the model generate the answer first.")
    max_new_tokens: int = Field(64, ge=1, le=1024)
    action: SignedAction | None = Field(
        None, description="A signed RequestAttribution over request_hash(); not needed with the operator token."
    )

    def request_hash(self) -> str:
        """sha256 of the canonical JSON of model, prompt, answer and max_new_tokens: what the caller signs."""
        body = self.model_dump(exclude={"action"})
        return "0x" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@router.post("/attribution")
def attribute(body: AttributeRequest, node: Node = Depends(get_node), operator: bool = Depends(is_operator)) -> dict:
    """Top training examples with gradient and span evidence, rolled up to contributions and
    contributors as integer basis points summing to `evidence_bps`; the remaining `pool_bps`
    of the contributor share go to the Datanet's data pool (all of it when `unattributed`).

    Compute-heavy: the caller sends a signed RequestAttribution (recorded, so a nonce works
    once) or the node operator's bearer token."""
    records_shown = True
    if not operator:
        record = node.factory.model(body.model, verify=False)  # an unknown model fails before a nonce is spent
        if body.action is None:
            raise AuthError(
                "attribution needs a signed RequestAttribution action or the node operator's credential",
                field="action",
            )
        # A model of a private Datanet is attributed for others only once published, and then without the
        # examples and contributions that name or fingerprint the Datanet's records (as its public receipts).
        signer = verify_action(body.action, expected="RequestAttribution", domain=node.domain)
        records_shown = node.factory.datanets.may_read(record.datanet, signer)
        if not records_shown and node.factory.shown_to(record, signer) is None:
            raise NotFoundError(f"no fine-tuned model {body.model!r}", field="model")
        node.accept_action(body.action, "RequestAttribution", {"model": body.model, "requestHash": body.request_hash()})
    attributor, lock = node.attributor(body.model)
    with lock:  # attribution toggles the adapter's gradients: one request per model at a time
        answer = body.answer
        generated = answer is None
        if generated:
            answer = attributor.generate(body.prompt, max_new_tokens=body.max_new_tokens)
        result = attributor.attribute(body.prompt, answer)
    found = result.to_dict()
    return {"model": body.model, "prompt": body.prompt, "answer": answer, "generated": generated,
            **(found if records_shown else public_attribution(found))}
