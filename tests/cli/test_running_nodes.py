"""Several `ledgerlm serve` processes on one home each keep their own running record: CLI calls find a node
still alive, and the records of nodes that ended are dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ledgerlm
from ledgerlm.cli.session import record_running, running_node_url, running_nodes
from ledgerlm.config import Home

SRC = str(Path(ledgerlm.__file__).resolve().parents[1])


def _serving(home: Home, url: str) -> subprocess.Popen:
    """A process that records itself the way `ledgerlm serve` does, then stays up until killed."""
    code = ("import sys, time\nfrom ledgerlm.cli.session import record_running\nfrom ledgerlm.config import Home\n"
            f"record_running(Home({str(home.root)!r}), {url!r})\nprint('up', flush=True)\ntime.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "up"
    return process


def test_two_nodes_on_one_home_keep_their_own_record(tmp_path):
    home = Home(tmp_path / "home")
    home.root.mkdir()
    assert running_node_url(home) is None
    first = _serving(home, "http://127.0.0.1:8547")
    time.sleep(0.01)
    second = _serving(home, "http://127.0.0.1:8548")
    try:
        nodes = running_nodes(home)
        assert [(n["url"], n["pid"]) for n in nodes] == [("http://127.0.0.1:8547", first.pid),
                                                         ("http://127.0.0.1:8548", second.pid)]
        assert running_node_url(home) == "http://127.0.0.1:8547"
        first.send_signal(signal.SIGKILL)  # ended without tidying up: its record is stale
        first.wait(timeout=10)
        assert running_node_url(home) == "http://127.0.0.1:8548"
        assert sorted(p.name for p in home.running_dir.iterdir()) == [f"{second.pid}.json"]
    finally:
        for process in (first, second):
            process.kill()
            process.wait(timeout=10)
    assert running_node_url(home) is None and not list(home.running_dir.iterdir())


def test_a_record_from_an_earlier_version_is_still_found_and_a_dead_one_dropped(tmp_path):
    home = Home(tmp_path / "home")
    home.root.mkdir()
    legacy = home.root / "node.json"
    legacy.write_text(f'{{"url": "http://127.0.0.1:9000", "pid": {os.getpid()}}}')
    assert running_node_url(home) == "http://127.0.0.1:9000"
    path = record_running(home, "http://127.0.0.1:9001")
    assert path.name == f"{os.getpid()}.json" and len(running_nodes(home)) == 2
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=10)
    legacy.write_text(f'{{"url": "http://127.0.0.1:9000", "pid": {dead.pid}}}')
    assert running_node_url(home) == "http://127.0.0.1:9001"
    assert not legacy.exists()
