"""The vLLM engine variant: chosen by `serving_engine`, refused with a reason where it cannot run, and on a GPU
host answering like the built-in engine (greedy, base model and adapter) through the same API and receipts."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from ledgerlm.cli.main import app
from ledgerlm.config import ConfigError, Home
from ledgerlm.serving.errors import ServingError
from ledgerlm.serving.vllm_engine import cuda_available, select_engine, vllm_available


def test_the_builtin_engine_stays_the_default_and_auto_picks_vllm_only_where_it_can_run():
    assert select_engine("builtin", vllm=True, cuda=True) == "builtin"
    assert select_engine("auto", vllm=True, cuda=True) == "vllm"
    assert select_engine("auto", vllm=False, cuda=True) == "builtin"
    assert select_engine("auto", vllm=True, cuda=False) == "builtin"
    assert select_engine("vllm", vllm=True, cuda=True) == "vllm"


def test_asking_for_vllm_where_it_cannot_run_names_what_is_missing():
    with pytest.raises(ServingError, match="needs the vllm package") as missing:
        select_engine("vllm", vllm=False, cuda=True)
    assert missing.value.field == "serving_engine"
    with pytest.raises(ServingError, match="needs a CUDA GPU"):
        select_engine("vllm", vllm=True, cuda=False)
    with pytest.raises(ServingError, match="must be one of"):
        select_engine("tensorrt", vllm=True, cuda=True)


def test_serve_refuses_to_start_on_vllm_without_it_in_one_line(home: Home):
    if vllm_available() and cuda_available():
        pytest.skip("this host can run vLLM")
    config = home.load_config()
    config.serving_engine = "vllm"
    home.save_config(config)
    result = CliRunner().invoke(app, ["--home", str(home.root), "serve", "--port", "1"])
    assert result.exit_code == 1
    assert "serving_engine" in result.output and "vllm" in result.output
    assert not list(home.running_dir.glob("*.json"))


def test_an_unknown_engine_in_the_config_is_refused_when_read(home: Home):
    config = home.load_config()
    config.serving_engine = "fast"
    home.save_config(config)
    with pytest.raises(ConfigError, match="serving_engine"):
        home.load_config()


@pytest.mark.gpu
def test_vllm_answers_like_the_builtin_engine(world, tmp_path):
    """Greedy answers from the base model and from an adapter match the built-in engine's token for token
    (the same prompt ids go to both), and calls through the API still get signed receipts."""
    pytest.importorskip("vllm")
    if not cuda_available():
        pytest.skip("needs a CUDA GPU")
    from fastapi.testclient import TestClient

    from ledgerlm.api import create_app
    from ledgerlm.node import Node

    answers = {}
    for engine in ("builtin", "vllm"):
        home = Home(tmp_path / engine)
        shutil.copytree(world.spare, home.root)
        config = home.load_config()
        config.serving_engine = engine
        config.serving_attribution = False
        home.save_config(config)
        with TestClient(create_app(lambda h=home: Node.open(h))) as http:
            for model in ("tiny", "facts-a"):
                response = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}, json={
                    "model": model, "messages": [{"role": "user", "content": "What colour is the reef?"}],
                    "max_tokens": 12, "temperature": 0})
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["x_ledgerlm_receipt"]["signature"]
                answers[engine, model] = (body["choices"][0]["message"]["content"], body["usage"])
            status = http.get("/serving/status").json()
            assert status["engine"] == engine
            assert "facts-a" in status["warm"]["device"]
    for model in ("tiny", "facts-a"):
        assert answers["vllm", model] == answers["builtin", model], json.dumps(answers, default=str)


class _WaitingEngine:
    """Stands in for vLLM's LLMEngine where none is installed: it takes requests and never schedules them, as
    vLLM leaves a request waiting while its batch is full; `answer` makes it answer one token for each."""

    def __init__(self, answer: bool):
        self.answer, self.requests, self.aborted = answer, [], []

    def add_request(self, request_id, prompt, params, lora_request=None):
        self.requests.append(request_id)

    def abort_request(self, ids):
        self.aborted += ids
        self.requests = [r for r in self.requests if r not in ids]

    def step(self):
        from types import SimpleNamespace

        if not self.answer:
            return []
        return [SimpleNamespace(request_id=r, finished=False, outputs=[SimpleNamespace(
            token_ids=[7], text="x", finish_reason=None)]) for r in self.requests]


@pytest.mark.parametrize("answer", [False, True])
def test_a_call_left_before_vllm_scheduled_it_is_charged_nothing(answer):
    """The built-in engine charges nothing for a call whose caller left while it was queued; vLLM's worker
    reported every cancelled call as run, so its prompt was charged though vLLM never read it."""
    import queue
    import threading
    import time

    from ledgerlm.serving.engine import Generation
    from ledgerlm.serving.sampling import SamplingParams
    from ledgerlm.serving.vllm_engine import VllmEngine

    engine = VllmEngine.__new__(VllmEngine)  # the worker loop alone, over the stand-in
    engine.engine, engine._lora_ids, engine._running = _WaitingEngine(answer), {}, {}
    engine._incoming, engine._wake, engine._closing = queue.SimpleQueue(), threading.Event(), False
    engine._sampling = lambda params: params
    worker = threading.Thread(target=engine._run, daemon=True)
    worker.start()
    try:
        left_in_our_queue = Generation([1, 2, 3], None, SamplingParams(max_tokens=4))
        left_in_our_queue.cancel()
        waiting = Generation([1, 2, 3], None, SamplingParams(max_tokens=4))
        for generation in (left_in_our_queue, waiting):
            engine._incoming.put(generation)
        engine._wake.set()
        deadline = time.monotonic() + 10
        while not engine.engine.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # a few steps with the request in vLLM's hands
        waiting.cancel()
        done = [e for e in waiting.events(timeout=10) if e.kind == "done"]
        first = [e for e in left_in_our_queue.events(timeout=10) if e.kind == "done"]
    finally:
        engine._closing = True
        worker.join(timeout=10)
    assert first[0].ran is False and first[0].finish_reason == "cancelled"
    assert done[0].finish_reason == "cancelled" and done[0].ran is answer
    assert engine.engine.aborted and len(engine.engine.aborted) == 1
