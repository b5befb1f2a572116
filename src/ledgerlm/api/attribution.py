"""Attribution route: which contributions shaped an answer of a fine-tuned model."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ledgerlm.api.deps import get_node, is_operator
from ledgerlm.errors import AuthError, LedgerError, NotFoundError
from ledgerlm.identity import SignedAction
from ledgerlm.node import Node
from ledgerlm.serving.context import check_text_fits
from ledgerlm.serving.receipts import public_attribution

router = APIRouter(tags=["attribution"])

# The turns training reads (serving renders a developer turn as a system one before it reaches a receipt).
ROLES = ("system", "user", "assistant")
# Attribution requests admitted at once, running or waiting for their model: each holds one of the worker threads
# every synchronous route shares (40), and a request waits for the one before it on the same model, so a flood of
# signed requests from throwaway keys would otherwise stall the whole API. Past it: 429, nonce unspent.
ATTRIBUTIONS_AT_ONCE = 8
ATTRIBUTION_RETRY_SECONDS = 5


@contextmanager
def admitted(node: Node) -> Iterator[None]:
    """Hold one of the node's attribution slots for the request, or refuse it (429) while all are taken."""
    slots = node.__dict__.setdefault("_attribution_slots", threading.BoundedSemaphore(ATTRIBUTIONS_AT_ONCE))
    if not slots.acquire(blocking=False):
        raise LedgerError(f"{ATTRIBUTIONS_AT_ONCE} attributions are running or waiting on this node; send it again "
                          "shortly (the signature's nonce was not spent)", field="model", status=429,
                          retry_after=ATTRIBUTION_RETRY_SECONDS)
    try:
        yield
    finally:
        slots.release()


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
        # The signature must cover this request, with a fresh nonce, before the model is loaded for it.
        signer = node.check_action(body.action, "RequestAttribution",
                                   {"model": body.model, "requestHash": body.request_hash()})
        records_shown = node.factory.datanets.may_read(record.datanet, signer)
        if not records_shown and node.factory.shown_to(record, signer) is None:
            raise NotFoundError(f"no fine-tuned model {body.model!r}", field="model")
        if not records_shown and body.answer is not None and not node.serving.receipts.answered(
                signer, body.model, body.prompt, body.answer):
            # an answer of one's own choosing, matched word for word against records one may not read, would
            # tell whether a guessed sentence is in them; the model's own answers (generated here, or served to
            # the signer, as when a consumer verifies a receipt) tell only what the model says anyway
            raise AuthError(f"model {body.model!r} is trained on a private Datanet you may not read: give no answer "
                            "(the model's own is attributed), or the prompt and answer of a receipt of yours",
                            field="answer", status=403)
    with admitted(node):
        return _attributed(body, node, operator, records_shown)


def _attributed(body: AttributeRequest, node: Node, operator: bool, records_shown: bool) -> dict:
    attributor, lock = node.attributor(body.model)
    check_fits(body, attributor)  # before the nonce is spent: a refused request may be sent again, fixed
    if not operator:
        node.accept_action(body.action, "RequestAttribution", {"model": body.model, "requestHash": body.request_hash()})
    with lock:  # attribution toggles the adapter's gradients: one request per model at a time
        answer = body.answer
        generated = answer is None
        if generated:
            answer = attributor.generate(body.prompt, max_new_tokens=body.max_new_tokens)
        result = attributor.attribute(body.prompt, answer)
    found = result.to_dict()
    return {"model": body.model, "prompt": body.prompt, "answer": answer, "generated": generated,
            **(found if records_shown else public_attribution(found))}


def check_fits(body: AttributeRequest, attributor) -> None:
    """Refuse what the model's context cannot hold before any compute: any key may sign a RequestAttribution, and
    a gradient pass over a text costs the square of its length (a 4 MiB prompt would hold the model for hours)."""
    messages = chat_messages(body.prompt)
    context = int(getattr(attributor.model.config, "max_position_embeddings", 2048))
    tokenizer = attributor.tokenizer
    check_text_fits(tokenizer, context, [m["content"] for m in messages], "prompt", messages=True)
    if body.answer is not None:
        if not body.answer.strip():  # refused here, before the nonce is spent, not by attribute after it
            raise LedgerError("answer must be non-empty text to be attributed", field="answer")
        check_text_fits(tokenizer, context, [body.answer], "answer", what="answer")
    prompt = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=False))
    if prompt >= context:
        raise LedgerError(f"the prompt is {prompt} tokens; model {body.model!r} reads at most {context} (prompt "
                          "and answer together)", field="prompt")
    if body.answer is None:
        if prompt + body.max_new_tokens > context:
            raise LedgerError(f"the prompt is {prompt} tokens, so at most {context - prompt} new tokens fit model "
                              f"{body.model!r}'s context of {context}, not {body.max_new_tokens}",
                              field="max_new_tokens")
        return
    answer = len(tokenizer(body.answer, add_special_tokens=False)["input_ids"])
    if prompt + answer >= context:  # the end-of-turn marker follows the answer
        raise LedgerError(f"the prompt is {prompt} tokens and the answer {answer}; model {body.model!r} reads at "
                          f"most {context} (prompt and answer together)", field="answer")


def chat_messages(prompt: str | list[dict]) -> list[dict]:
    """The prompt as the chat turns attribution renders, each a role training reads with text content."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not prompt:
        raise LedgerError("the prompt holds no messages", field="prompt")
    for i, message in enumerate(prompt):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise LedgerError(f"prompt message {i} must have a role ({', '.join(ROLES)}) and text content, not "
                              f"{str(message)[:200]}", field="prompt")
    if prompt[0]["role"] == "assistant":  # training cuts a conversation before each assistant turn: nothing is left
        raise LedgerError("the conversation must not open with an assistant message: start it with a system or "
                          "user message", field="prompt")
    return prompt
