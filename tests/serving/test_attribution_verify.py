"""`ledgerlm attribute --verify` on a served receipt: the consumer's copy (with the messages they sent
and the completion they got back, fetched from a served node with `receipts show ID --as KEY`, or
by id) recomputes bit for bit, an edited copy fails with the edited field named, and nobody but the
consumer reads the text."""

from __future__ import annotations

import json

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledgerlm.api import create_app
from ledgerlm.cli.main import app
from ledgerlm.node import Node

from .test_receipts_durable import cli, copy_home


def verify(home, path, *flags: str):
    return CliRunner().invoke(app, ["--home", str(home.root), *flags, "attribute", "--verify", str(path)])


def test_a_served_receipt_verifies_and_an_edited_one_names_the_field(world, tmp_path):
    home = copy_home(world, tmp_path)
    messages = [{"role": "user", "content": "What colour is the crab?"}]
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:
        response = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                             json={"model": "facts-a", "messages": messages, "max_tokens": 12,
                                   "temperature": 0})
        assert response.status_code == 200, response.text
        receipt_id = response.headers["x-ledgerlm-receipt"]
        completion = response.json()["choices"][0]["message"]["content"]
        http.app.state.node.serving.attribution.drain()

    shown = cli(home, "receipts", "show", receipt_id)["receipt"]
    assert shown["state"] == "final" and "contributions" in shown["attribution"]
    assert shown["attribution"]["examples"]  # scores to recompute, whether or not evidence pays
    assert "completion" not in shown["request"]  # the public copy: the text is the consumer's
    shown["request"].update(messages=messages, completion=completion)
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps({"receipt": shown}))

    result = verify(home, path, "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["verified"] and outcome["identical"] and outcome["differences"] == []
    assert outcome["evidence_bps"] == shown["attribution"]["evidence_bps"]
    assert "bit for bit" in verify(home, path).stdout

    edited = json.loads(path.read_text())
    attribution = edited["receipt"]["attribution"]
    attribution["evidence_bps"] += 1
    attribution["pool_bps"] -= 1
    path.write_text(json.dumps(edited))
    result = verify(home, path, "--json")
    assert result.exit_code == 1
    outcome = json.loads(result.stdout)
    assert not outcome["verified"] and not outcome["identical"]
    named = [line.split(":")[0] for line in outcome["mismatches"]]
    assert named[-2:] == ["evidence_bps", "pool_bps"]
    # and the edited receipt no longer adds up: its contributors' bps sum to the old evidence_bps
    assert any(line.startswith("receipt: contributors bps sum") for line in outcome["mismatches"])
    text = verify(home, path)
    assert text.exit_code == 1 and "differs" in text.stdout and "evidence_bps: receipt" in text.stdout

    # what the receipt pays by (contributor_bps) is held to the attribution verified: a node paying someone else
    # than the contributors it names, on an attribution that recomputes exactly, is caught
    paying = json.loads(json.dumps({"receipt": shown}))
    attribution = paying["receipt"]["attribution"]
    attribution["contributor_bps"] = {"0x" + "ee" * 20: max(1, attribution["evidence_bps"])}
    path.write_text(json.dumps(paying))
    outcome = json.loads(verify(home, path, "--json").stdout)
    assert not outcome["verified"] and any("contributor_bps" in line for line in outcome["mismatches"])


def test_a_consumer_fetches_their_own_receipt_from_a_served_node_and_verifies_it(world, tmp_path, monkeypatch):
    """The consumer of a call fetches their full receipt (prompt and answer) from the node over HTTP with a signed
    read request and verifies it with `--node URL`; nobody else, and no unsigned request, gets the text."""

    from ledgerlm.identity import Keyring

    from .conftest import ask, served

    home = copy_home(world, tmp_path)
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pass")
    keys = Keyring(home.keys)
    keys.new("consumer", "pass", private_key=b"\x05" * 32)  # the world's consumer, who holds the API key
    keys.new("stranger", "pass")
    assert keys.show("consumer").address == world.consumer.address
    app_ = create_app(lambda: Node.open(home))
    with served(home, app_) as url:
        response = ask(url, world.key, "facts-a")
        assert response.status_code == 200, response.text
        receipt_id = response.headers["x-ledgerlm-receipt"]
        completion = response.json()["choices"][0]["message"]["content"]
        app_.state.node.serving.attribution.drain()

        def run(*args: str):
            return CliRunner().invoke(app, ["--home", str(home.root), "--node", url, *args])

        own = run("--json", "receipts", "show", receipt_id, "--as", "consumer")
        assert own.exit_code == 0, own.output
        shown = json.loads(own.stdout)
        assert shown["receipt"]["state"] == "final"
        assert shown["receipt"]["request"]["completion"] == completion
        assert shown["checks"]["request_checked"] and shown["checks"]["body_matches"]
        assert shown["checks"]["signature_valid"] and shown["checks"]["signed_by_this_node"]
        path = tmp_path / "mine.json"
        path.write_text(own.stdout)

        checked = run("--json", "attribute", "--verify", str(path))
        assert checked.exit_code == 0, checked.output
        assert json.loads(checked.stdout)["identical"]
        by_id = run("--json", "attribute", "--verify", receipt_id, "--as", "consumer")
        assert by_id.exit_code == 0, by_id.output
        assert json.loads(by_id.stdout)["identical"]

        public = run("--json", "receipts", "show", receipt_id)
        assert public.exit_code == 0 and "completion" not in json.loads(public.stdout)["receipt"]["request"]
        other = run("--json", "receipts", "show", receipt_id, "--as", "stranger")
        assert other.exit_code == 1
        assert "only its consumer" in json.loads(other.stdout)["error"]["message"]
        unsigned = httpx.get(f"{url}/receipts/{receipt_id}/full")
        assert unsigned.status_code == 401 and "completion" not in unsigned.text
        assert httpx.get(f"{url}/receipts/{receipt_id}/full", headers={
            "X-Ledgerlm-Read": "not:a:read:request"}).status_code == 401
