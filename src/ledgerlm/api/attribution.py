"""Attribution route: which contributions shaped an answer of a fine-tuned model."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ledgerlm.api.deps import get_node
from ledgerlm.node import Node

router = APIRouter(tags=["attribution"])


class AttributeRequest(BaseModel):
    model: str
    prompt: str | list[dict]
    answer: str | None = Field(None, description="Omit to have the model generate the answer first.")
    max_new_tokens: int = Field(64, ge=1, le=1024)


@router.post("/attribution")
def attribute(body: AttributeRequest, node: Node = Depends(get_node)) -> dict:
    """Top training examples with gradient and span evidence, rolled up to contributions and
    contributors as integer basis points summing to `evidence_bps`; the remaining `pool_bps`
    of the contributor share go to the Datanet's data pool (all of it when `unattributed`)."""
    attributor, lock = node.attributor(body.model)
    with lock:  # attribution toggles the adapter's gradients: one request per model at a time
        answer = body.answer
        generated = answer is None
        if generated:
            answer = attributor.generate(body.prompt, max_new_tokens=body.max_new_tokens)
        result = attributor.attribute(body.prompt, answer)
    return {"model": body.model, "prompt": body.prompt, "answer": answer, "generated": generated,
            **result.to_dict()}
