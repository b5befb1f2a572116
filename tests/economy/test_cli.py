"""`ledgerlm epoch close | list | verify`, `earnings` and `claim` as users script them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ledgerlm.cli import app
from ledgerlm.config import Home
from ledgerlm.node import Node
from tests.economy.helpers import fund_consumer, key, write_receipt

UNIT = 10**18


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pw")
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return run


def test_close_verify_earnings_and_claim_from_the_command_line(cli, tmp_path):
    cli("init")
    developer = json.loads(cli("--json", "keys", "new", "dev").stdout)["address"]
    assert json.loads(cli("--json", "epoch", "close").stdout)["state"] == "empty"
    node = Node.open(Home(tmp_path / "home"))
    try:
        consumer = key("cli-consumer")
        fund_consumer(node, consumer, 10 * UNIT, 5 * UNIT)
        write_receipt(node, consumer.address, 3 * UNIT, developer)
    finally:
        node.close()
    cli("chain", "faucet", "dev", "--eth", "1", "--tokens", "2")
    deposited = json.loads(cli("--json", "deposit", "1.5", "--as", "dev").stdout)
    assert deposited["escrow"] == str(3 * UNIT // 2)

    closed = json.loads(cli("--json", "epoch", "close").stdout)
    listed = json.loads(cli("--json", "epoch", "list").stdout)
    verified = json.loads(cli("--json", "epoch", "verify", "1").stdout)
    owed = json.loads(cli("--json", "earnings", "dev").stdout)
    claimed = json.loads(cli("--json", "claim", "--as", "dev", "--all").stdout)
    node_address = json.loads(cli("--json", "info").stdout)["node_address"]
    for_node = json.loads(cli("--json", "claim", "--as", "dev", "--all", "--account", node_address).stdout)
    assert for_node["account"] == node_address and for_node["claimed"][0]["amount"] == str(3 * UNIT - 3 * UNIT * 4000 // 10_000)
    after = json.loads(cli("--json", "earnings", developer).stdout)

    assert closed["state"] == "published" and int(closed["total"]) == 3 * UNIT
    shown = json.loads(cli("--json", "epoch", "show", "1").stdout)
    assert (shown["state"], shown["shortfall"], shown["short"]) == ("published", "0", {})
    assert [(d["state"], d["amount"], d["owed"]) for d in shown["debits"]] == [("planned", str(3 * UNIT), str(3 * UNIT))]
    assert [e["state"] for e in listed] == ["published", "open"]
    assert verified["ok"] and verified["problems"] == [] and verified["receipts_unchecked"] == []
    assert owed["epochs"][0]["amount"] == str(3 * UNIT * 4000 // 10_000)
    assert owed["epochs"][0]["sources"]["models"] == ["m1"]
    assert claimed["claimed"][0]["amount"] == owed["epochs"][0]["amount"]
    assert after["unclaimed"] == "0" and after["epochs"][0]["claimed"]
    assert json.loads(cli("--json", "balance", "dev").stdout)["tokens"] == UNIT // 2 + 3 * UNIT * 4000 // 10_000
    assert json.loads(cli("--json", "claim", "--as", "dev", "--all").stdout)["claimed"] == []

    payouts = json.loads((tmp_path / "home" / "epochs" / "1" / "payouts.json").read_text())
    payouts["payouts"][0]["amount"] = str(int(payouts["payouts"][0]["amount"]) + 1)
    (tmp_path / "tampered.json").write_text(json.dumps(payouts))
    refused = cli("--json", "epoch", "verify", "1", "--payouts", str(tmp_path / "tampered.json"), code=1)
    assert not json.loads(refused.stdout)["ok"]
    # a receipts file as published before receipts carried their signature still verifies, saying so
    receipts = json.loads((tmp_path / "home" / "epochs" / "1" / "receipts.json").read_text())
    for receipt in receipts["receipts"]:
        del receipt["body"], receipt["signature"]
    (tmp_path / "unsigned.json").write_text(json.dumps(receipts))
    unsigned = cli("epoch", "verify", "1", "--receipts", str(tmp_path / "unsigned.json"))
    assert "epoch 1 verified" in unsigned.stdout and "1 receipt(s) unsigned, not checked" in unsigned.stdout

    early = cli("epoch", "sweep", "1", code=1)  # the claim window (90 days) is still open
    assert "ClaimWindowOpen" in early.stderr
    node = Node.open(Home(tmp_path / "home"))
    try:
        node.chain.advance_time(node.contracts.distributor.claim_window_seconds() + 1)
        treasury = node.faucet_account.address
    finally:
        node.close()
    swept = json.loads(cli("--json", "epoch", "sweep", "1").stdout)
    # both payees claimed, so the sweep closes the epoch with nothing left in it
    assert swept["treasury"] == treasury and int(swept["amount"]) == 0
    unposted = cli("epoch", "sweep", "2", code=1)  # still open here: its payees could never claim
    assert "is open on this node" in unposted.stderr and "--force" in unposted.stderr


def test_every_economy_command_has_help(cli):
    for command in (["epoch", "close"], ["epoch", "list"], ["epoch", "show"], ["epoch", "verify"], ["epoch", "sweep"],
                    ["claim"],
                    ["earnings"], ["deposit"], ["demo"]):
        assert "Usage" in cli(*command, "--help").stdout
