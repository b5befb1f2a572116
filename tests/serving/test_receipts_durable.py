"""Receipts are durable: one written before the response survives a kill -9 of the server right after
it, a receipt left `attributing` by a crash is finished at the next start, and the CLI reads both."""

from __future__ import annotations

import json
import shutil
import signal

import httpx
from typer.testing import CliRunner

from ledgerlm.cli.main import app
from ledgerlm.config import Home
from ledgerlm.node import Node

from .conftest import free_port, start_node, wait_until_up


def copy_home(world, tmp_path) -> Home:
    home = Home(tmp_path / "home")
    shutil.copytree(world.spare, home.root)
    return home


def cli(home: Home, *args: str) -> dict:
    result = CliRunner().invoke(app, ["--home", str(home.root), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_receipt_survives_kill_9_right_after_the_response(world, tmp_path):
    home = copy_home(world, tmp_path)
    port = free_port()
    server = start_node(home, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server, timeout=120)
        response = httpx.post(f"{url}/v1/chat/completions", timeout=120, headers={
            "Authorization": f"Bearer {world.key}"}, json={
            "model": "facts-a", "messages": [{"role": "user", "content": "What colour is the gull?"}],
            "max_tokens": 10, "temperature": 0})
        server.send_signal(signal.SIGKILL)
        assert response.status_code == 200, response.text
        receipt_id = response.headers["x-ledgerlm-receipt"]
    finally:
        server.kill()
        server.wait(timeout=30)

    shown = cli(home, "receipts", "show", receipt_id)  # in-process over the home: the node restarted
    assert shown["receipt"]["id"] == receipt_id
    assert shown["receipt"]["completion_tokens"] == response.json()["usage"]["completion_tokens"]
    assert shown["checks"]["signature_valid"] and shown["checks"]["split_sums_to_fee"]
    listed = cli(home, "receipts", "list", "--model", "facts-a")
    assert receipt_id in [r["id"] for r in listed]


def test_a_receipt_left_attributing_by_a_crash_is_finished_at_the_next_start(world, tmp_path):
    from ledgerlm.cli.main import _open_serving
    from ledgerlm.serving.receipts import Completed

    home = copy_home(world, tmp_path)
    node = Node.open(home)
    try:  # what a node that dies after the response and before attribution leaves behind
        model = node.serving.catalog.get("facts-a")
        written = node.serving.receipts.write(Completed(
            "lgr-crashed", world.consumer.address, model, 20, 7,
            {"messages": [{"role": "user", "content": "What colour is the kelp?"}],
             "completion": "The kelp is brown.", "finish_reason": "stop"}), attributing=True)
    finally:
        node.close()
    assert written.state == "attributing"

    node = _open_serving(home)  # what `ledgerlm serve` does at start
    try:
        node.serving.attribution.drain()
        receipt = node.serving.receipts.get("lgr-crashed")
        assert receipt.state == "final" and receipt.finalized_at is not None
        assert receipt.attribution is not None and "evidence_bps" in receipt.attribution
        checks = node.serving.receipts.verify(receipt)
        assert all(checks[k] for k in ("fee_recomputed", "split_sums_to_fee", "split_recomputed", "body_matches",
                                       "signature_valid", "signed_by_this_node"))
        assert receipt.fee == written.fee and receipt.payouts != [] and receipt.signature != written.signature
    finally:
        node.close()


def test_a_tampered_receipt_does_not_verify(world, tmp_path):
    from ledgerlm.serving.receipts import Completed

    home = copy_home(world, tmp_path)
    node = Node.open(home)
    try:
        model = node.serving.catalog.get("facts-b")
        receipt = node.serving.receipts.write(Completed("lgr-tamper", world.consumer.address, model, 30, 5,
                                                        {"prompt": "x", "completion": "y", "finish_reason": "stop"}),
                                              attributing=False)
        richer = [dict(p) for p in receipt.payouts]
        richer[0]["amount"] = str(int(richer[0]["amount"]) + 1)
        assert not node.serving.receipts.verify(receipt.model_copy(update={"payouts": richer}))["split_sums_to_fee"]
        moved = [dict(p) for p in receipt.payouts]
        moved[0]["account"], moved[1]["account"] = moved[1]["account"], moved[0]["account"]
        checks = node.serving.receipts.verify(receipt.model_copy(update={"payouts": moved}))
        assert not checks["split_recomputed"] and not checks["body_matches"]
        forged = receipt.model_copy(update={"body": {**receipt.body, "fee": int(receipt.fee) // 2}})
        assert not node.serving.receipts.verify(forged)["signed_by_this_node"]
        assert node.serving.receipts.verify(receipt)["fee_recomputed"]
        # a fee its tokens and price do not make fails even when the node signs it and splits it to the unit
        inflated = receipt.model_copy(update={"fee": str(int(receipt.fee) * 2)})
        assert not node.serving.receipts.verify(inflated)["fee_recomputed"]
    finally:
        node.close()


def test_apikey_commands_make_list_budget_and_revoke_a_key(world, tmp_path, monkeypatch):
    home = copy_home(world, tmp_path)
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pass")
    monkeypatch.setenv("LEDGERLM_PRIVATE_KEY", "0x" + "05" * 32)  # the funded consumer of the fixture
    cli(home, "keys", "import", "consumer")

    made = cli(home, "apikey", "create", "--as", "consumer", "--cap", "2.5")
    assert made["api_key"].startswith("sk-lgr-") and made["cap"] == str(25 * 10**17)
    assert made["consumer"] == world.consumer.address
    listed = cli(home, "apikey", "list", "--consumer", "consumer")
    assert made["id"] in [k["id"] for k in listed]
    assert all(made["api_key"] not in json.dumps(k) for k in listed)  # only the hash is kept
    budget = cli(home, "apikey", "budget", "--key", made["api_key"])
    assert budget["cap"] == str(25 * 10**17) and int(budget["remaining"]) > 0

    revoked = cli(home, "apikey", "revoke", str(made["id"]), "--as", "consumer")
    assert revoked["revoked_at"] is not None
    result = CliRunner().invoke(app, ["--home", str(home.root), "apikey", "budget", "--key", made["api_key"]])
    assert result.exit_code == 1 and "revoked" in result.output
    for group in ("apikey", "receipts"):
        assert CliRunner().invoke(app, [group, "--help"]).exit_code == 0
