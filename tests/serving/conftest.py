"""A node serving a tiny random Llama with two adapters fine-tuned and published through the node,
a consumer with LGR in escrow and an API key, and a real HTTP server for the `openai` client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from fastapi import Request
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.config import Home
from ledgerlm.node import Node

from ..datanets.conftest import publish_qa

FACTS = [{"question": f"What colour is the {thing}?", "answer": f"The {thing} is {colour}."}
         for thing, colour in [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"),
                               ("kelp", "brown"), ("crab", "amber"), ("storm", "black"), ("sand", "gold")]]
PRICES = {"facts-a": 10**15, "facts-b": 2 * 10**15}  # base units per 1k tokens
BASE_PRICE = 10**12
DEPOSIT = 10 * 10**18
CAP = 10**18


@dataclass
class World:
    home: Home
    spare: Path  # a copy of the home taken before any server ran, for the crash tests
    consumer: object
    key: str
    node_address: str


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    root = tmp_path_factory.mktemp("serving")
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.serving_base_price = str(BASE_PRICE)
    config.torch_threads = 1
    home.save_config(config)
    consumer = Account.from_key(b"\x05" * 32)
    developer, owner, contributor = (Account.from_key(bytes([i]) * 32) for i in (6, 7, 8))
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:  # the faucet answers only on loopback
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        tiny = tiny_random_model(root / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
        client.factory.register_base("tiny", str(tiny))
        publish_qa(client, root, owner, [(contributor, FACTS)])
        node = http.app.state.node
        for model_id, rank in (("facts-a", 4), ("facts-b", 8)):
            job = client.factory.train(developer, {
                "model_id": model_id, "datanet": "colours", "version": 1, "base": "tiny",
                "config": {"epochs": 4, "lr": 1e-2, "batch_size": 2, "max_len": 64, "eval_split": 0.0,
                           "rank": rank, "seed": rank, "max_steps": 12},
            })
            done = node.factory.wait(job["id"], timeout=300)
            assert done.state == "done", done.error
            client.factory.publish(developer, model_id, price_per_1k=PRICES[model_id])
        client.chain.faucet(consumer.address, eth_wei=10**18, tokens=100 * 10**18)
        node.contracts.escrow.deposit(consumer, DEPOSIT)
        key, _ = client.serving.create_key(consumer, CAP)
        node_address = node.account.address
    spare = root / "spare"
    shutil.copytree(home.root, spare)
    return World(home, spare, consumer, key, node_address)


SRC = Path(__file__).resolve().parents[2] / "src"


def start_node(home: Home, port: int) -> subprocess.Popen:
    """`ledgerlm serve` on `home` in a process of its own (one torch thread), as an operator starts it."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "ledgerlm", "--home", str(home.root), "serve", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/serving/status", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.25)


def homes_sharing_one_database(world, root: Path, names, **settings) -> list[Home]:
    """Copies of the world's spare home (same key, same contracts), one per name, each serving on one torch thread
    without attribution, the later ones on the first one's database, as nodes sharing PostgreSQL are."""
    homes: list[Home] = []
    for name in names:
        home = Home(root / name)
        shutil.copytree(world.spare, home.root)
        config = home.load_config()
        config.torch_threads = 1
        config.serving_attribution = False
        for key, value in settings.items():
            setattr(config, key, value)
        config.database_url = f"sqlite:///{homes[0].database_path}" if homes else ""
        home.save_config(config)
        homes.append(home)
    return homes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(home: Home, app=None):
    """The node's app (or `app`) under uvicorn on a loopback port, in a thread of the test process; yields its URL."""
    import uvicorn

    port = free_port()
    app = app or create_app(lambda: Node.open(home))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    from ledgerlm.cli.session import record_running

    url = f"http://127.0.0.1:{port}"
    # as `ledgerlm serve` does: the CLI sends this home's operator token to it (a gateway has no home)
    record = record_running(home, url) if home is not None else None
    try:
        yield url
    finally:
        if record is not None:
            record.unlink(missing_ok=True)
        uv.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def server(world):
    with served(world.home) as url:
        yield url


@pytest.fixture
def node_client(server, world) -> NodeClient:
    client = NodeClient.connect(server)
    yield client
    client.close()


ASK = {"messages": [{"role": "user", "content": "What colour is the gull?"}], "max_tokens": 6, "temperature": 0}


def ask(url: str, key: str, model: str, idempotency: str | None = None, **extra) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency:
        headers["Idempotency-Key"] = idempotency
    return httpx.post(f"{url}/v1/chat/completions", headers=headers, json={"model": model, **ASK, **extra},
                      timeout=120)


def tiny_node(name: str, answers: dict[str, int], warm: tuple[str, ...] = (), chain_id: int = 1,
              status: dict | None = None):
    """A stand-in serving node on loopback: its status says what it has warm (or is `status` as given), it signs
    for chain `chain_id`, and each model gets the status `answers` names (200 for an answer); `hits` counts the
    completions it received."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    app.state.hits = []

    @app.get("/serving/status")
    def node_status():
        if status is not None:
            return status
        return {"signing_domain": {"name": "ledgerlm", "chainId": chain_id}, "instance": name, "base_model": "tiny",
                "engine_loaded": True, "warm": {"device": list(warm), "host": []}, "in_flight": 0}

    app.state.forwarded_for = []

    @app.post("/v1/chat/completions")
    async def complete(body: dict, request: Request):
        app.state.hits.append(body["model"])
        app.state.forwarded_for.append(request.headers.get("x-forwarded-for"))
        code = answers.get(body["model"], 200)
        if code == 200:
            return {"id": f"{name}-answer", "choices": [{"message": {"role": "assistant", "content": name}}]}
        return JSONResponse(status_code=code, content={"error": {"message": f"{name} says {code}", "field": "model"}})

    return app
