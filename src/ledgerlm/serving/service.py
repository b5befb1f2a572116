"""One call from request to receipt: key, model, prompt limits, budget, generation, receipt, attribution.

`Serving.start` does every check that can refuse a call (unknown key 401, unknown model 404, prompt
too long 400, rate 429, payment 402) before the engine sees it. Events come back through the
caller's `deliver` function; when the generation ends, a single writer thread writes the receipt
(also when the client went away: it pays for the tokens generated until then), releases the
budget reservation, hands the receipt to attribution and delivers it as the last event.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledgerlm.economy import price_fee
from ledgerlm.errors import LedgerError
from ledgerlm.serving.budget import Budget, Reservation
from ledgerlm.serving.catalog import Catalog, ServedModel
from ledgerlm.serving.claims import Claim, IdempotencyClaims, check_key
from ledgerlm.serving.errors import ServingError
from ledgerlm.serving.keys import ApiKey, ApiKeys
from ledgerlm.serving.limits import KeyLimits
from ledgerlm.serving.receipts import AttributionWorker, Completed, Receipt, ReceiptLog
from ledgerlm.serving.sampling import CANCELLED, SamplingParams
from ledgerlm.units import format_amount

if TYPE_CHECKING:  # the engine imports torch; keys and receipts must not need it
    from ledgerlm.serving.engine import Engine, Generation, GenerationEvent


@dataclass(frozen=True)
class ServingSettings:
    """The node's serving knobs (config.toml keys prefixed `serving_`)."""

    base_model: str = ""
    base_price_per_1k: int = 0
    max_batch: int = 32
    device_adapters: int = 16
    host_adapters: int = 64
    default_max_tokens: int = 256
    requests_per_minute: int = 120
    max_concurrent_per_key: int = 8
    attribution: bool = True
    claim_lease_seconds: int = 30


@dataclass(frozen=True)
class CallEvent:
    """A piece of the answer, or the end: the receipt (with usage), or the error that ended the call."""

    kind: str  # "text" | "done" | "error"
    text: str = ""
    finish_reason: str | None = None
    receipt: Receipt | None = None
    error: LedgerError | None = None


@dataclass
class Call:
    id: str
    model: ServedModel
    key: ApiKey | None
    prompt_tokens: int
    request: dict
    reservation: Reservation
    deliver: Callable[[CallEvent], None]
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)
    generation: Generation | None = None
    claim: Claim | None = None
    replayed: bool = False  # the answer of an earlier call with the same Idempotency-Key
    limit_key: str | None = None  # whose rate and concurrency limits the call counts against

    def cancel(self) -> None:
        if self.generation is not None:
            self.generation.cancel()


class Serving:
    def __init__(self, catalog: Catalog, keys: ApiKeys, budget: Budget, receipts: ReceiptLog,
                 attribution: AttributionWorker | None, settings: ServingSettings,
                 load_engine: Callable[[str], Engine],
                 spend_guard: Callable[[str, str, int, int, int], None] | None = None,
                 claims: IdempotencyClaims | None = None):
        self.catalog = catalog
        self.claims = claims or IdempotencyClaims(receipts.db, lease_seconds=settings.claim_lease_seconds)
        self.in_flight = 0  # calls admitted and not yet settled, for the gateway's routing
        self._counting = threading.Lock()
        # the node's rule for an account before it spends (consumer, model, price per 1k, cost, reserved)
        self.spend_guard = spend_guard
        self.keys = keys
        self.budget = budget
        self.receipts = receipts
        self.attribution = attribution
        self.settings = settings
        self.limits = KeyLimits(requests_per_minute=settings.requests_per_minute,
                                max_concurrent=settings.max_concurrent_per_key)
        self._load_engine = load_engine
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledgerlm-receipts")

    @property
    def engine(self) -> Engine:
        """The resident base model, loaded on first use; the catalog is then pinned to it."""
        with self._engine_lock:
            if self._engine is None:
                base = self.catalog.base_name()
                self._engine = self._load_engine(base)
                self.catalog.configured_base = base
            return self._engine

    def models(self) -> list[ServedModel]:
        return self.catalog.list()

    def start(self, *, model: str, authorization: str | None, deliver: Callable[[CallEvent], None],
              messages: list[dict] | None = None, prompt: str | None = None, max_tokens: int | None = None,
              temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
              stop: tuple[str, ...] = (), idempotency_key: str | None = None, client: str | None = None) -> Call:
        """Check and queue one call; raises before any compute when it cannot be served or paid for.

        With an `idempotency_key` the call runs at most once on every node sharing the database: a
        repeat gets the first call's answer and receipt back (`Call.replayed`), nothing is charged again.
        A call without a key (a free model) counts against the limits of its `client` address instead."""
        idempotency_key = check_key(idempotency_key)
        # the sampling numbers are checked before anything is claimed or looked up, so a refusal names its field
        SamplingParams(max_tokens=1 if max_tokens is None else min(max_tokens, 2**31),
                       temperature=1.0 if temperature is None else temperature,
                       top_p=1.0 if top_p is None else top_p, seed=seed, stop=stop)
        key = self.keys.authenticate(authorization)
        served = self.catalog.get(model)
        request = {"messages": messages} if messages is not None else {"prompt": prompt}
        claim = None
        if idempotency_key is not None:  # before the engine: a replay needs no model loaded
            # without a key the caller is known only by its address: one client cannot spend another's key
            owner = key.consumer if key else (f"client:{client}" if client else None)
            claim = self.claims.claim(idempotency_key, owner, {
                "model": model, **request, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                "seed": seed, "stop": list(stop)})
            if claim.replay_of is not None:
                return self._replay(claim, served, key, request, deliver)
        try:
            engine = self.engine
            field = "messages" if messages is not None else "prompt"
            engine.check_prompt_text([m["content"] for m in messages] if messages is not None else [prompt or ""],
                                     field)
            ids = engine.chat_ids(messages) if messages is not None else engine.prompt_ids(prompt or "")
            engine.check_prompt(ids, field)
            room = engine.context - len(ids)
            wanted = max_tokens or (self.settings.default_max_tokens if messages is not None else 16)
            params = SamplingParams(max_tokens=min(wanted, room),
                                    temperature=1.0 if temperature is None else temperature,
                                    top_p=1.0 if top_p is None else top_p, seed=seed, stop=stop)
            return self._admit(served, key, model, ids, params, request, deliver, claim, client)
        except BaseException:
            if claim is not None:
                self.claims.finished(claim, failed=True)
            raise

    def _admit(self, served: ServedModel, key: ApiKey | None, model: str, ids: list[int], params: SamplingParams,
               request: dict, deliver: Callable[[CallEvent], None], claim: Claim | None,
               client: str | None = None) -> Call:
        engine = self.engine
        cost = price_fee(len(ids), params.max_tokens, served.price_per_1k)
        what = (f"this call to {model} ({len(ids)} prompt + up to {params.max_tokens} completion tokens at "
                f"{format_amount(served.price_per_1k)} LGR per 1k)")
        limit_key = key.prefix if key else (f"client:{client}" if client else None)
        if limit_key:
            self.limits.acquire(limit_key, "this key" if key else f"client {client} (calls without a key)")
        try:
            guard = None
            if self.spend_guard is not None and key is not None:
                def guard(reserved: int) -> None:
                    self.spend_guard(key.consumer, model, served.price_per_1k, cost, reserved)
            reservation = self.budget.reserve(key, cost, what, guard)
        except BaseException:  # a refusal, or a database error the API answers 503: the slot is free either way
            if limit_key:
                self.limits.release(limit_key)
            raise
        call = Call("lgr-" + uuid.uuid4().hex, served, key, len(ids), request, reservation, deliver, claim=claim,
                    limit_key=limit_key)
        with self._counting:
            self.in_flight += 1
        try:
            call.generation = engine.submit(ids, served.adapter, params, sink=lambda e: self._on_event(call, e))
        except BaseException:
            self._release(call)
            raise
        return call

    def _replay(self, claim: Claim, served: ServedModel, key: ApiKey | None, request: dict,
                deliver: Callable[[CallEvent], None]) -> Call:
        """The answer and receipt the key's first call produced, delivered at once; nothing runs or is charged."""
        receipt = self.receipts.get(claim.replay_of)
        stored = receipt.request or {}
        call = Call(receipt.id, served, key, receipt.prompt_tokens, request, Reservation(None, 0), deliver,
                    created=receipt.created_at, claim=claim, replayed=True)
        if stored.get("completion"):
            deliver(CallEvent("text", stored["completion"]))
        deliver(CallEvent("done", finish_reason=stored.get("finish_reason"), receipt=receipt))
        return call

    def complete(self, **kwargs) -> tuple[str, Receipt, str]:
        """Blocking call: (answer, receipt, finish_reason); raises the error that ended the call."""
        events: queue.SimpleQueue[CallEvent] = queue.SimpleQueue()
        self.start(deliver=events.put, **kwargs)
        text = []
        while True:
            event = events.get()
            if event.kind == "text":
                text.append(event.text)
            elif event.kind == "error":
                raise event.error
            else:
                return "".join(text), event.receipt, event.finish_reason

    def _on_event(self, call: Call, event: GenerationEvent) -> None:
        """On the engine's worker thread: pass text on; hand the end to the receipt writer."""
        if event.kind == "text":
            call.text.append(event.text)
            call.deliver(CallEvent("text", event.text))
        else:
            self._writer.submit(self._settle, call, event)

    def _settle(self, call: Call, event: GenerationEvent) -> None:
        outcome = None
        try:
            if event.error is not None:  # the node failed the call: no receipt, no charge
                outcome = CallEvent("error", error=event.error)
            elif not event.ran:  # its client left while it waited in the queue: the node did nothing to charge for
                outcome = CallEvent("error", error=ServingError(
                    "the call's client left before it ran: nothing was charged", field="model", status=499))
            else:
                attributing = self.settings.attribution and call.model.adapter is not None
                # A call its client left (cancelled) is charged for what it made but not bound to its key: the
                # retry a dropped connection brings runs again rather than replaying the cut-off answer.
                kept = call.claim is not None and event.finish_reason != CANCELLED
                bind = (lambda conn, receipt_id: self.claims.attach(conn, call.claim, receipt_id)) if kept else None
                receipt = self.receipts.write(Completed(
                    call.id, call.key.consumer if call.key else None, call.model, call.prompt_tokens,
                    event.completion_tokens,
                    {**call.request, "completion": "".join(call.text), "finish_reason": event.finish_reason},
                ), attributing=attributing, bind=bind)
                if attributing and self.attribution is not None:
                    self.attribution.submit(receipt.id)
                outcome = CallEvent("done", finish_reason=event.finish_reason, receipt=receipt)
        except Exception as exc:  # report, never leave the client waiting
            traceback.print_exc()
            error = exc if isinstance(exc, LedgerError) else ServingError(
                f"writing the receipt failed: {type(exc).__name__}: {exc}", field="receipt", status=500)
            outcome = CallEvent("error", error=error)
        finally:
            # before the client hears the end: its next call must find the budget and the slot free
            self._release(call)
            if call.claim is not None:  # a call that wrote no receipt, or was left, gives its key back for a retry
                self.claims.finished(call.claim, failed=outcome is None or outcome.kind == "error"
                                     or outcome.finish_reason == CANCELLED)
        call.deliver(outcome)

    def _release(self, call: Call) -> None:
        with self._counting:
            self.in_flight -= 1
        try:
            self.budget.release(call.reservation)  # a hold left by a database error expires with its lease
        finally:
            if call.limit_key is not None:
                self.limits.release(call.limit_key)

    def status(self) -> dict:
        """What a gateway routes by: the resident base model, the adapters warm in each tier, calls running."""
        engine = self._engine
        warm = engine.warm_adapters() if engine is not None else {"device": [], "host": []}
        return {"instance": self.claims.instance, "base_model": self.catalog.configured_base or None,
                "engine_loaded": engine is not None, "engine": getattr(engine, "kind", None), "warm": warm, "in_flight": self.in_flight,
                "max_batch": self.settings.max_batch}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._writer.shutdown(wait=True)
        self.claims.close()
        if self.attribution is not None:
            self.attribution.close()
