"""OpenAI-compatible routes: /v1/models, /v1/chat/completions and /v1/completions, streamed or not,
each answer carrying its signed receipt (`x_ledgerlm_receipt`, header `X-Ledgerlm-Receipt`)."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from ledgerlm.api.deps import caller_address, get_node
from ledgerlm.node import Node
from ledgerlm.serving import CallEvent, Receipt, ServingError
from ledgerlm.serving.receipts import receipt_datanet, shown
from ledgerlm.serving.schemas import ChatCompletionRequest, CompletionRequest

router = APIRouter(prefix="/v1", tags=["openai"])

RECEIPT_HEADER = "X-Ledgerlm-Receipt"
# A repeat of a call (same key, same request) answers with the first call's answer and receipt.
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DISCONNECT_POLL_SECONDS = 0.1  # how soon a whole answer whose client left stops being generated


@router.get("/models")
def list_models(node: Node = Depends(get_node)) -> dict:
    """The resident base model and every published adapter on it, with price, the fee split in force and any
    change announced for a later epoch."""
    return {"object": "list", "data": node.serving.catalog.listed(node.serving.models())}


@router.get("/models/{model_id}")
def get_model(model_id: str, node: Node = Depends(get_node)) -> dict:
    return node.serving.catalog.listed([node.serving.catalog.get(model_id)])[0]


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, node: Node = Depends(get_node)):
    """Chat completion from a published adapter or the base model; 402 when the key cannot pay."""
    try:
        messages = body.plain_messages()
    except ValueError as exc:
        raise ServingError(str(exc), field="messages") from None
    return await _serve(node, request, body, chat=True, messages=messages,
                        max_tokens=body.max_completion_tokens or body.max_tokens)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request, node: Node = Depends(get_node)):
    """Text completion of a raw prompt (no chat template)."""
    return await _serve(node, request, body, chat=False, prompt=body.prompt, max_tokens=body.max_tokens)


async def _serve(node: Node, request: Request, body, *, chat: bool, **inputs):
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[CallEvent] = asyncio.Queue()

    def deliver(event: CallEvent) -> None:  # called from the engine's threads
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the request's loop is gone; the receipt is written regardless
            pass

    call = await run_in_threadpool(
        node.serving.start, model=body.model, authorization=request.headers.get("authorization"),
        deliver=deliver, temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stops(),
        idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        client=caller_address(request, node), **inputs)
    reader = call.key.consumer if call.key else None

    def receipt_shown(receipt: Receipt) -> dict:
        # the caller is the receipt's consumer, not necessarily a member of the model's private Datanet: which
        # of its records the answer was attributed to is shown as on `GET /receipts/{id}` (an idempotent
        # repeat answers after attribution has run)
        datanet = receipt_datanet(receipt)
        return shown(receipt, records_shown=datanet is None or node.datanets.may_read(datanet, reader))

    shape = _Shape(call.id, body.model, call.created, chat)
    headers = {RECEIPT_HEADER: call.id}
    if call.replayed:
        headers[REPLAYED_HEADER] = "true"
    if not body.stream:
        watcher = asyncio.create_task(_cancel_when_gone(request, call))
        try:
            text = []
            while True:
                event = await events.get()
                if event.kind == "error":
                    raise event.error
                if event.kind == "done":
                    receipt = await run_in_threadpool(receipt_shown, event.receipt)
                    return JSONResponse(shape.whole("".join(text), event, receipt), headers=headers)
                text.append(event.text)
        finally:
            watcher.cancel()
    watcher = asyncio.create_task(_cancel_when_gone(request, call))  # a caller may leave before the first token
    try:
        first = await events.get()
    finally:
        watcher.cancel()
    if first.kind == "error":  # failed before the first token: a plain HTTP error
        raise first.error

    async def stream():
        event, finished = first, False
        try:
            yield shape.sse(shape.chunk("", role=True))
            while True:
                if event.kind == "error":
                    yield shape.sse({"error": event.error.to_dict()})
                    finished = True
                    return
                if event.kind == "done":
                    yield shape.sse(shape.last(event, await run_in_threadpool(receipt_shown, event.receipt)))
                    if body.usage_chunk():
                        yield shape.sse(shape.usage_only(event))
                    yield "data: [DONE]\n\n"
                    finished = True
                    return
                yield shape.sse(shape.chunk(event.text))
                event = await events.get()
        finally:
            if not finished:  # the client went away: stop now, it pays only for what was generated
                call.cancel()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _cancel_when_gone(request: Request, call) -> None:
    """Stop a whole (not streamed) answer once its client has gone: it pays only for what was generated, as a
    stream left mid-way does, instead of for every token of an answer nobody will read."""
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_SECONDS)
    call.cancel()


class _Shape:
    """OpenAI's response objects for one call: chat or text completion, whole or in chunks."""

    def __init__(self, call_id: str, model: str, created: int, chat: bool):
        self.id, self.model, self.created, self.chat = call_id, model, created, chat

    def _envelope(self, kind: str, choice: dict, **extra) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "choices": [choice], **extra}

    @staticmethod
    def _usage(event: CallEvent) -> dict:
        r = event.receipt
        return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "total_tokens": r.prompt_tokens + r.completion_tokens}

    def whole(self, text: str, event: CallEvent, receipt: dict) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": event.finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "finish_reason": event.finish_reason, "logprobs": None}
        return self._envelope("chat.completion" if self.chat else "text_completion", choice,
                              usage=self._usage(event), x_ledgerlm_receipt=receipt)

    def chunk(self, text: str, *, role: bool = False, finish_reason: str | None = None) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": text} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return self._envelope("chat.completion.chunk", choice)
        return self._envelope("text_completion", {"index": 0, "text": text, "finish_reason": finish_reason,
                                                  "logprobs": None})

    def last(self, event: CallEvent, receipt: dict) -> dict:
        return {**self.chunk("", finish_reason=event.finish_reason), "usage": self._usage(event),
                "x_ledgerlm_receipt": receipt}

    def usage_only(self, event: CallEvent) -> dict:
        """The chunk `stream_options: {"include_usage": true}` asks for: no choices, the whole call's usage."""
        return {**self._envelope("chat.completion.chunk" if self.chat else "text_completion", {}), "choices": [],
                "usage": self._usage(event)}

    @staticmethod
    def sse(data: dict) -> str:
        return f"data: {json.dumps(data)}\n\n"
