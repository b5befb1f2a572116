"""The home's operator credential goes only to the node this home runs: in-process, or a `ledgerlm serve` on it
reached by any of this machine's names; never to another `--node URL`, whose operator could use it here."""

from __future__ import annotations

import json
import os

from ledgerlm.cli.session import OPERATOR_TOKEN_ENV, Session, _same_node


def _session(home, monkeypatch, served: str | None = None) -> Session:
    monkeypatch.delenv(OPERATOR_TOKEN_ENV, raising=False)
    if served:
        home.running_dir.mkdir(parents=True, exist_ok=True)
        (home.running_dir / "1.json").write_text(json.dumps({"pid": os.getpid(), "url": served, "started": 1}))
    return Session(home=home, node_url=None, as_json=False)


def test_the_home_token_goes_in_process_and_to_its_own_node_only(home, monkeypatch):
    token = home.operator_token_path.read_text().strip()
    s = _session(home, monkeypatch, served="http://0.0.0.0:8547")
    assert s.operator_token() == token
    assert s.operator_token("http://127.0.0.1:8547") == token
    assert s.operator_token("http://localhost:8547/") == token
    assert s.operator_token("http://node.example.org:8547") is None  # another node's operator would hold it
    assert s.operator_token("http://127.0.0.1:9999") is None
    monkeypatch.setenv(OPERATOR_TOKEN_ENV, "lgr-operator-given")
    assert s.operator_token("http://node.example.org:8547") == "lgr-operator-given"
    assert s.operator_token() == token and s.operator_token("http://127.0.0.1:8547") == token  # the home's own


def test_no_served_node_no_token_for_any_url(home, monkeypatch):
    s = _session(home, monkeypatch)
    assert s.operator_token("http://127.0.0.1:8547") is None


def test_same_node_compares_scheme_port_and_host():
    assert _same_node("http://[::1]:8547", "http://127.0.0.1:8547")
    assert not _same_node("https://127.0.0.1:8547", "http://127.0.0.1:8547")
    assert not _same_node("http://127.0.0.1:notaport", "http://127.0.0.1:8547")
