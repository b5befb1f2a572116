"""The inference engine: one resident base model, many adapters, continuous batching on a worker thread.

Requests wait in a queue; the worker admits them between decode steps (up to `max_batch` rows),
prefills each one alone, then joins its KV cache to the running batch by left-padding the shorter
side, so a sequence enters and leaves the batch at any step. Every decode step is one forward pass
for all rows, whatever adapter each row uses (see lora.py). Rows that finish, hit a stop string,
run out of tokens or are cancelled leave at once and free their adapter slot's pin.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from jinja2 import TemplateError
from torch.nn import functional as F

from ledgerlm.errors import LedgerError
from ledgerlm.serving.adapters import AdapterCache, AdapterRef
from ledgerlm.serving.context import check_text_fits
from ledgerlm.serving.detokenize import TextStream
from ledgerlm.serving.errors import ServingError
from ledgerlm.serving.lora import install
from ledgerlm.serving.sampling import CANCELLED, SamplingParams, new_generator, next_token


@dataclass(frozen=True)
class GenerationEvent:
    """What the worker reports: a piece of text, or the end (with why, and the tokens spent)."""

    kind: str  # "text" | "done"
    text: str = ""
    finish_reason: str | None = None  # stop | length | cancelled | error
    completion_tokens: int = 0
    error: LedgerError | None = None
    ran: bool = True  # False: ended before the prompt was processed (cancelled in the queue), so nothing to charge


@dataclass
class GenerationResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]


_ids = itertools.count(1)


class Generation:
    """One request in the engine: its inputs, its progress, and where its events go."""

    def __init__(self, prompt_ids: list[int], adapter: AdapterRef | None, params: SamplingParams,
                 sink: Callable[[GenerationEvent], None] | None = None):
        self.id = next(_ids)
        self.prompt_ids = list(prompt_ids)
        self.adapter = adapter
        self.params = params
        self._queue: queue.SimpleQueue[GenerationEvent] = queue.SimpleQueue()
        self._sink = sink or self._queue.put
        self._cancelled = threading.Event()
        self.token_ids: list[int] = []
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None

    def cancel(self) -> None:
        """Stop at the next step (a client went away); only the tokens made so far count."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, event: GenerationEvent) -> None:
        self._sink(event)

    def events(self, timeout: float | None = None) -> Iterator[GenerationEvent]:
        """The events of a generation submitted without a sink, until it is done."""
        while True:
            event = self._queue.get(timeout=timeout)
            yield event
            if event.kind == "done":
                return

    def result(self, timeout: float | None = None) -> GenerationResult:
        text, done = [], None
        for event in self.events(timeout):
            text.append(event.text)
            done = event
        if done.error is not None:
            raise done.error
        return GenerationResult("".join(text), done.finish_reason, len(self.prompt_ids),
                                done.completion_tokens, list(self.token_ids))


@dataclass
class _Row:
    generation: Generation
    slot: int
    stream: TextStream
    generator: torch.Generator
    length: int  # tokens in the KV cache for this row
    last: int = -1  # the sampled token not yet fed to the model
    done: bool = False


@dataclass
class EngineSettings:
    """Sizes of the batch and of the adapter tiers."""

    max_batch: int = 32
    device_adapters: int = 16
    host_adapters: int = 64
    context: int | None = None  # None: the model's max_position_embeddings


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    kv: object = None
    mask: torch.Tensor | None = None


class PromptTokens:
    """The prompt side every engine shares: the node's tokenizer and chat template make the ids, so each
    engine sees the same tokens and receipts count the same prompt. Needs `tokenizer` and `context`."""

    def chat_ids(self, messages: list[dict]) -> list[int]:
        try:
            ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                                     return_dict=False)
        except TemplateError as exc:  # a model's own template may refuse a conversation (turns that do not alternate)
            raise ServingError(f"this model's chat template refuses these messages: {exc}", field="messages") from None
        return list(ids)

    def prompt_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def check_prompt_text(self, texts: list[str], field: str) -> None:
        """Refuse text that cannot fit the context before tokenizing it (`context.check_text_fits`), and chat turns
        that spell the tokenizer's special tokens: the template's text is tokenized with them parsed as markers, so
        "<|im_end|>\n<|im_start|>system" inside a user turn would forge a system (assistant, tool) turn."""
        check_text_fits(self.tokenizer, self.context, texts, field, messages=field == "messages")
        if field == "messages":
            specials = {t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values() if t.special}
            specials |= set(self.tokenizer.all_special_tokens)
            for i, text in enumerate(texts):
                found = next((s for s in specials if s and s in text), None)
                if found is not None:
                    raise ServingError(f"message {i} holds the special token {found!r} of this model's chat "
                                       "template; send it as separate messages", field="messages")

    def check_prompt(self, prompt_ids: list[int], field: str = "messages") -> None:
        """Refuse an empty prompt, or one that leaves no room in the context; `field` names it (chat: `messages`)."""
        if not prompt_ids:
            raise ServingError("the prompt is empty", field=field)
        if len(prompt_ids) >= self.context:
            raise ServingError(
                f"the prompt is {len(prompt_ids)} tokens; this model's context is {self.context} tokens "
                f"(prompt and completion together)", field=field)


class Engine(PromptTokens):
    """Serves one base model and any number of LoRA adapters on it, continuously batched."""

    kind = "builtin"

    def __init__(self, model, tokenizer, settings: EngineSettings | None = None):
        self.settings = settings or EngineSettings()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.context = self.settings.context or int(getattr(model.config, "max_position_embeddings", 2048))
        self.bank = install(self.model, self.settings.device_adapters)
        self.adapters = AdapterCache(self.bank, host_capacity=self.settings.host_adapters)
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._waiting: deque[Generation] = deque()
        self._cv = threading.Condition()
        self._batch = _Batch()
        self._closing = False
        self._worker: threading.Thread | None = None

    @classmethod
    def load(cls, base, device=None, settings: EngineSettings | None = None) -> Engine:
        """The engine for a registered base model, on CUDA when present, else CPU."""
        from ledgerlm.factory import load_base_model, load_tokenizer
        from ledgerlm.factory.loading import pick_device

        return cls(load_base_model(base, pick_device(device)), load_tokenizer(base), settings)

    # ------------------------------------------------------------------ requests

    def submit(self, prompt_ids: list[int], adapter: AdapterRef | None, params: SamplingParams,
               sink: Callable[[GenerationEvent], None] | None = None) -> Generation:
        """Queue a request; its events go to `sink` (called on the worker thread) or to `events()`."""
        self.check_prompt(prompt_ids)
        generation = Generation(prompt_ids, adapter, params, sink)
        with self._cv:
            if self._closing:
                raise ServingError("the engine is shutting down", field="model", status=503)
            self._waiting.append(generation)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="ledgerlm-serving", daemon=True)
                self._worker.start()
            self._cv.notify()
        return generation

    def generate(self, prompt_ids: list[int], adapter: AdapterRef | None = None,
                 params: SamplingParams | None = None) -> GenerationResult:
        """Blocking convenience: submit and wait for the whole answer."""
        return self.submit(prompt_ids, adapter, params or SamplingParams(temperature=0.0)).result()

    def warm_adapters(self) -> dict[str, list[str]]:
        """Adapter model ids in device slots and in host memory, most recently used last (read from any thread)."""
        for _ in range(5):  # the worker may reorder the LRU while we copy it: copy again
            try:
                return {"device": list(self.adapters.slots), "host": list(self.adapters.host)}
            except RuntimeError:
                continue
        return {"device": [], "host": []}

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._worker is not None:
            self._worker.join(timeout=30)

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closing and not self._waiting and not self._batch.rows:
                    self._cv.wait()
                if self._closing:
                    self._fail_all(ServingError("the engine shut down", field="model", status=503))
                    return
                admitted = self._admit()
            try:
                with torch.inference_mode():
                    while admitted:
                        self._prefill(*admitted[0])
                        admitted.pop(0)
                    if self._batch.rows:
                        self._step()
            except Exception as exc:  # a failed forward ends the batch's requests, not the worker
                traceback.print_exc()
                error = ServingError(f"generation failed: {type(exc).__name__}: {exc}", field="model", status=500)
                joined = {id(row.generation) for row in self._batch.rows}
                self._fail_all(error)
                # taken from the queue but not in the batch: nothing else ends them; ended last, so a caller that
                # sees the error finds the engine clean
                for generation, slot in admitted:
                    if id(generation) not in joined:
                        self.adapters.release(slot)
                        generation.emit(GenerationEvent("done", finish_reason="error", error=error))

    def _admit(self) -> list[tuple[Generation, int]]:
        """Take waiting requests into the batch, pinning each one's adapter slot as it is admitted."""
        admitted, skipped = [], deque()
        room = self.settings.max_batch - len(self._batch.rows)
        while self._waiting and len(admitted) < room:
            generation = self._waiting.popleft()
            if generation.cancelled:
                generation.emit(GenerationEvent("done", finish_reason=CANCELLED, ran=False))
            elif not self.adapters.can_acquire(generation.adapter):
                skipped.append(generation)  # its adapter needs a slot that running rows still pin: later
            else:
                try:
                    admitted.append((generation, self.adapters.acquire(generation.adapter)))
                except LedgerError as exc:
                    generation.emit(GenerationEvent("done", finish_reason="error", error=exc))
        self._waiting.extendleft(reversed(skipped))
        return admitted

    def _prefill(self, generation: Generation, slot: int) -> None:
        ids = torch.tensor([generation.prompt_ids], device=self.device)
        self.bank.rows = torch.tensor([slot], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        row = _Row(generation, slot, TextStream(self.tokenizer, generation.params.stop),
                   new_generator(generation.params.seed), length=len(generation.prompt_ids))
        self._accept(row, out.logits[0, -1])
        if row.done:
            self.adapters.release(slot)
            return
        self._join(row, out.cache)

    def _join(self, row: _Row, kv) -> None:
        """Add a prefilled row to the batch, left-padding the KV caches to one length."""
        batch = self._batch
        new_mask = torch.ones(1, row.length, dtype=torch.long, device=self.device)
        if batch.kv is None:
            batch.kv, batch.mask, batch.rows = kv, new_mask, [row]
            return
        width = max(batch.mask.shape[1], row.length)
        pad_old, pad_new = width - batch.mask.shape[1], width - row.length
        for layer, new in zip(batch.kv.layers, kv.layers):
            layer.keys = torch.cat([F.pad(layer.keys, (0, 0, pad_old, 0)), F.pad(new.keys, (0, 0, pad_new, 0))])
            layer.values = torch.cat([F.pad(layer.values, (0, 0, pad_old, 0)),
                                      F.pad(new.values, (0, 0, pad_new, 0))])
        batch.mask = torch.cat([F.pad(batch.mask, (pad_old, 0)), F.pad(new_mask, (pad_new, 0))])
        batch.rows.append(row)

    def _step(self) -> None:
        batch = self._batch
        for row in batch.rows:
            if row.generation.cancelled:
                self._finish(row, CANCELLED)
        self._drop_finished()
        if not batch.rows:
            return
        ids = torch.tensor([[row.last] for row in batch.rows], device=self.device)
        positions = torch.tensor([[row.length] for row in batch.rows], device=self.device)
        batch.mask = F.pad(batch.mask, (0, 1), value=1)
        self.bank.rows = torch.tensor([row.slot for row in batch.rows], device=self.device)
        out = self.model(input_ids=ids, attention_mask=batch.mask, position_ids=positions,
                         cache=batch.kv, use_cache=True)
        for i, row in enumerate(batch.rows):
            row.length += 1
            self._accept(row, out.logits[i, -1])
        self._drop_finished()

    def _accept(self, row: _Row, logits: torch.Tensor) -> None:
        """Sample the row's next token and report it; mark the row done when it should stop."""
        generation, params = row.generation, row.generation.params
        token = next_token(logits, params, row.generator)
        generation.token_ids.append(token)
        if generation.first_token_at is None:
            generation.first_token_at = time.perf_counter()
        row.last = token
        if token in self.eos:
            return self._finish(row, "stop")
        delta = row.stream.push(token)
        if delta:
            generation.emit(GenerationEvent("text", delta))
        if row.stream.stopped:
            self._finish(row, "stop")
        elif len(generation.token_ids) >= params.max_tokens or row.length + 1 >= self.context:
            self._finish(row, "length")

    def _finish(self, row: _Row, reason: str) -> None:
        rest = row.stream.flush()
        if rest:
            row.generation.emit(GenerationEvent("text", rest))
        row.done = True
        row.generation.finished_at = time.perf_counter()
        row.generation.emit(GenerationEvent("done", finish_reason=reason,
                                            completion_tokens=len(row.generation.token_ids)))

    def _drop_finished(self) -> None:
        batch = self._batch
        keep = [i for i, row in enumerate(batch.rows) if not row.done]
        if len(keep) == len(batch.rows):
            return
        for row in batch.rows:
            if row.done:
                self.adapters.release(row.slot)
        if not keep:
            self._batch = _Batch()
            return
        index = torch.tensor(keep, device=self.device)
        batch.mask = batch.mask.index_select(0, index)
        start = int(batch.mask.any(dim=0).nonzero()[0])  # columns that are padding for every row left
        batch.mask = batch.mask[:, start:]
        for layer in batch.kv.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        batch.rows = [batch.rows[i] for i in keep]

    def _fail_all(self, error: LedgerError) -> None:
        for row in self._batch.rows:
            if not row.done:
                self.adapters.release(row.slot)
                row.generation.emit(GenerationEvent("done", finish_reason="error",
                                                    completion_tokens=len(row.generation.token_ids), error=error))
        self._batch = _Batch()
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for generation in waiting:
            generation.emit(GenerationEvent("done", finish_reason="error", error=error))
