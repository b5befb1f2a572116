"""The vLLM engine variant: the same interface as `Engine`, with vLLM's paged attention and LoRA batching.

Chosen by `serving_engine = "vllm"` (or `"auto"` on a host where vLLM imports and CUDA is present). The
node's tokenizer and chat template make the prompt ids, so both engines see the same tokens and
receipts count the same prompt; vLLM generates from those ids, each request with its adapter's
`LoRARequest` (adapters load into vLLM's own GPU slots, `serving_device_adapters` of them at once,
`serving_host_adapters` kept in CPU memory). A worker thread steps the engine and turns vLLM's
cumulative outputs into the text events `Serving` expects.
"""

from __future__ import annotations

import importlib.util
import itertools
import queue
import threading
import time
import traceback
from dataclasses import dataclass

from ledgerlm.serving.catalog import AdapterRef
from ledgerlm.serving.engine import Generation, GenerationEvent, PromptTokens
from ledgerlm.serving.errors import ServingError
from ledgerlm.serving.sampling import CANCELLED, SamplingParams

ENGINES = ("builtin", "vllm", "auto")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def select_engine(configured: str, *, vllm: bool, cuda: bool) -> str:
    """`builtin` or `vllm` for the configured `serving_engine`; a clear error when vLLM is asked for and cannot run."""
    if configured not in ENGINES:
        raise ServingError(f"serving_engine must be one of {', '.join(ENGINES)}, not {configured!r}",
                           field="serving_engine")
    if configured == "builtin":
        return "builtin"
    if configured == "auto":
        return "vllm" if vllm and cuda else "builtin"
    if not vllm:
        raise ServingError("serving_engine = \"vllm\" needs the vllm package (pip install vllm, on a host with a "
                           "CUDA GPU); it is not installed here. Use \"builtin\" or \"auto\"", field="serving_engine",
                           status=503)
    if not cuda:
        raise ServingError("serving_engine = \"vllm\" needs a CUDA GPU and none is visible to this process. Use "
                           "\"builtin\" or \"auto\"", field="serving_engine", status=503)
    return "vllm"


def serving_engine_kind(configured: str) -> str:
    """The engine this host runs for the configured `serving_engine`."""
    return select_engine(configured, vllm=vllm_available(), cuda=cuda_available())


@dataclass
class VllmSettings:
    max_batch: int = 32
    device_adapters: int = 16  # vLLM's max_loras: adapters in one batch
    host_adapters: int = 64  # vLLM's max_cpu_loras
    max_lora_rank: int = 64
    gpu_memory_utilization: float = 0.85


_request_ids = itertools.count(1)


class VllmEngine(PromptTokens):
    """Serves one base model and its LoRA adapters through vLLM; same methods and events as `Engine`."""

    kind = "vllm"
    ignore_eos = False  # benchmarks make every request generate exactly max_tokens

    def __init__(self, base, settings: VllmSettings | None = None):
        from vllm import EngineArgs, LLMEngine

        from ledgerlm.factory import load_tokenizer

        self.settings = settings or VllmSettings()
        self.tokenizer = load_tokenizer(base)
        args = EngineArgs(model=str(base.path), tokenizer=str(base.path), enable_lora=True,
                          max_loras=self.settings.device_adapters, max_cpu_loras=self.settings.host_adapters,
                          max_lora_rank=self.settings.max_lora_rank, max_num_seqs=self.settings.max_batch,
                          gpu_memory_utilization=self.settings.gpu_memory_utilization)
        self.engine = LLMEngine.from_engine_args(args)
        self.context = int(self.engine.model_config.max_model_len)
        self._lora_ids: dict[str, int] = {}
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        # vLLM request id -> (Generation, text sent so far, whether a step has answered for it yet)
        self._running: dict[str, tuple] = {}
        self._wake = threading.Event()
        self._closing = False
        self._worker = threading.Thread(target=self._run, name="ledgerlm-vllm", daemon=True)
        self._worker.start()

    @classmethod
    def load(cls, base, settings: VllmSettings | None = None) -> VllmEngine:
        return cls(base, settings)

    def submit(self, prompt_ids: list[int], adapter: AdapterRef | None, params: SamplingParams,
               sink=None) -> Generation:
        self.check_prompt(prompt_ids)
        if self._closing:
            raise ServingError("the engine is shutting down", field="model", status=503)
        generation = Generation(prompt_ids, adapter, params, sink)
        self._incoming.put(generation)
        self._wake.set()
        return generation

    def generate(self, prompt_ids: list[int], adapter: AdapterRef | None = None, params: SamplingParams | None = None):
        return self.submit(prompt_ids, adapter, params or SamplingParams(temperature=0.0)).result()

    def warm_adapters(self) -> dict[str, list[str]]:
        loaded = set(self.engine.list_loras())
        return {"device": [m for m, i in list(self._lora_ids.items()) if i in loaded], "host": []}

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._worker.join(timeout=30)

    # ------------------------------------------------------------------ the worker

    def _lora(self, adapter: AdapterRef | None):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        number = self._lora_ids.setdefault(adapter.model_id, len(self._lora_ids) + 1)
        return LoRARequest(adapter.model_id, number, str(adapter.path))

    def _sampling(self, params: SamplingParams):
        from vllm import SamplingParams as VllmSampling

        return VllmSampling(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                            seed=params.seed, stop=list(params.stop) or None, ignore_eos=self.ignore_eos)

    def _run(self) -> None:
        while not self._closing:
            while True:
                try:
                    generation = self._incoming.get_nowait()
                except queue.Empty:
                    break
                if generation.cancelled:  # its caller left while it waited: nothing ran, nothing to charge
                    generation.emit(GenerationEvent("done", finish_reason=CANCELLED, ran=False))
                    continue
                request_id = f"lgr-{next(_request_ids)}"
                try:
                    self.engine.add_request(request_id, {"prompt_token_ids": generation.prompt_ids},
                                            self._sampling(generation.params),
                                            lora_request=self._lora(generation.adapter))
                except Exception as exc:  # an adapter vLLM cannot take fails its request alone
                    generation.emit(GenerationEvent("done", finish_reason="error", error=ServingError(
                        f"vLLM refused the request: {type(exc).__name__}: {exc}", field="model", status=503)))
                    continue
                self._running[request_id] = (generation, 0, False)
            if not self._running:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            for request_id, (generation, _, answered) in list(self._running.items()):
                if generation.cancelled:
                    self.engine.abort_request([request_id])
                    del self._running[request_id]
                    # vLLM answers for a request only once it has scheduled it: one never answered for was still
                    # waiting in vLLM's queue, its prompt unread, and is charged nothing (as the built-in engine)
                    generation.emit(GenerationEvent("done", finish_reason=CANCELLED,
                                                    completion_tokens=len(generation.token_ids), ran=answered))
            try:
                outputs = self.engine.step()
            except Exception as exc:
                traceback.print_exc()
                error = ServingError(f"generation failed: {type(exc).__name__}: {exc}", field="model", status=500)
                for generation, *_ in self._running.values():
                    generation.emit(GenerationEvent("done", finish_reason="error",
                                                    completion_tokens=len(generation.token_ids), error=error))
                self._running.clear()
                continue
            for output in outputs:
                entry = self._running.get(output.request_id)
                if entry is None:
                    continue
                generation, sent, _ = entry
                completion = output.outputs[0]
                generation.token_ids = list(completion.token_ids)
                if completion.text[sent:]:
                    if generation.first_token_at is None:
                        generation.first_token_at = time.perf_counter()
                    generation.emit(GenerationEvent("text", completion.text[sent:]))
                self._running[output.request_id] = (generation, len(completion.text), True)
                if output.finished:
                    del self._running[output.request_id]
                    generation.finished_at = time.perf_counter()
                    reason = "length" if completion.finish_reason == "length" else "stop"
                    generation.emit(GenerationEvent("done", finish_reason=reason,
                                                    completion_tokens=len(completion.token_ids)))
        error = ServingError("the engine shut down", field="model", status=503)
        for generation, *_ in self._running.values():
            generation.emit(GenerationEvent("done", finish_reason="error", error=error))
