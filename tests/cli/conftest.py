"""The real `ledgerlm` command, run in-process over a home and through `--node URL` against a served node.

`cli` is parametrised over both ways a user runs the CLI; each test runs once per way. The served
node is the real FastAPI app under uvicorn on a loopback port, in a thread of the test process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledgerlm.api import create_app
from ledgerlm.cli import app
from ledgerlm.cli.session import record_running
from ledgerlm.config import Home
from ledgerlm.node import Node

PASSPHRASE = "pw"


@dataclass
class Cli:
    """Runs `ledgerlm ARGS` and checks the exit code; `json()` parses `--json` output."""

    home: Home
    mode: str
    url: str | None = None
    server_app: object | None = None

    def __call__(self, *args: str, ok: bool = True):
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"ledgerlm {' '.join(map(str, args))}:\n{result.output}"
        return result

    def json(self, *args: str):
        return json.loads(self("--json", *args).stdout)

    def fails(self, *args: str, match: str) -> str:
        """The command exits 1 with one error line holding `match`, in text and in --json."""
        result = self(*args, ok=False)
        assert result.exit_code == 1, f"ledgerlm {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
        assert match in result.stderr and result.stderr.count("\n") == 1, result.stderr
        result = self("--json", *args, ok=False)
        assert result.exit_code == 1 and match in json.loads(result.stdout)["error"]["message"]
        return result.stdout

    @contextmanager
    def node(self):
        """The node behind the CLI, to move clocks the way time would: the served one, or the home opened."""
        if self.server_app is not None:
            yield self.server_app.state.node
            return
        node = Node.open(self.home)
        try:
            yield node
        finally:
            node.close()

    def address(self, key: str) -> str:
        return self.json("keys", "show", key)["address"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(home: Home):
    import uvicorn

    api = create_app(lambda: Node.open(home))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the node did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    record = record_running(home, url)  # as `ledgerlm serve` does: the home's own node, sent its operator token
    try:
        yield url, api
    finally:
        record.unlink(missing_ok=True)
        server.should_exit = True
        thread.join(timeout=30)


def make_home(root: Path, config: dict | None = None) -> Home:
    """An initialised home with keys alice, bob and carol, and optional config.toml overrides."""
    home = Home(root)
    Node.init(home).close()
    if config:
        current = home.load_config()
        for key, value in config.items():
            setattr(current, key, value)
        home.save_config(current)
    from ledgerlm.identity import Keyring

    for name in ("alice", "bob", "carol"):
        Keyring(home.keys).new(name, PASSPHRASE)
    return home


@pytest.fixture(params=["in-process", "served"])
def cli_mode(request) -> str:
    return request.param


@pytest.fixture
def cli_for(tmp_path, monkeypatch, cli_mode):
    """A factory: `cli_for(config)` gives a Cli over a fresh home with those config values."""
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    monkeypatch.chdir(tmp_path)
    stack = []

    def build(config: dict | None = None) -> Cli:
        home = make_home(tmp_path / "home", config)
        monkeypatch.setenv("LEDGERLM_HOME", str(home.root))
        if cli_mode == "in-process":
            return Cli(home, cli_mode)
        ctx = served(home)
        url, api = ctx.__enter__()
        stack.append(ctx)
        monkeypatch.setenv("LEDGERLM_NODE", url)
        return Cli(home, cli_mode, url, api)

    yield build
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def cli(cli_for) -> Cli:
    return cli_for()
