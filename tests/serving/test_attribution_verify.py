"""`ledgerlm attribute --verify` on a served receipt: the consumer's copy (the receipt `receipts show
--json` prints, with the messages they sent and the completion they got back) recomputes bit for
bit, and an edited copy fails with the edited field named."""

from __future__ import annotations

import json

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
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test",
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
    assert [line.split(":")[0] for line in outcome["mismatches"]] == ["evidence_bps", "pool_bps"]
    text = verify(home, path)
    assert text.exit_code == 1 and "differs" in text.stdout and "evidence_bps: receipt" in text.stdout
