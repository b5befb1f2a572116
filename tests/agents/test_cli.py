"""`ledgerlm agent create|list|show|pause|resume|audit` over a real home, as a user types them."""

from __future__ import annotations

import pytest

from ..cli.conftest import PASSPHRASE, Cli, make_home

UNIT = 10**18


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Cli:
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    home = make_home(tmp_path / "home")
    monkeypatch.setenv("LEDGERLM_HOME", str(home.root))
    return Cli(home, "in-process")


def test_create_funds_the_agent_from_its_owner_and_pause_shows_everywhere(cli):
    cli("chain", "faucet", "alice", "--tokens", "100")
    created = cli.json("agent", "create", "scout", "--owner", "alice", "--budget", "5", "--stake", "3",
                       "--allow-models", "m1,m2", "--max-price", "0.01", "--per-epoch")
    assert created["owner"] == cli.address("alice") and created["address"] != created["owner"]
    assert created["policy"]["allow_models"] == ["m1", "m2"] and created["policy"]["max_price_per_1k"] == 10**16
    assert "api_key" not in created and created["state"] == "ready"  # the key is never printed
    stored = "".join(p.read_text() for p in (cli.home.root / "agents").glob("scout*"))
    assert "sk-lgr-" not in stored  # nor kept in the clear: it sits in an encrypted keystore

    shown = cli.json("agent", "show", "scout")
    assert shown["chain"]["escrow"] == 5 * UNIT and shown["chain"]["stake"]["validator"] == 3 * UNIT
    assert cli.json("balance", "alice")["tokens"] == 92 * UNIT  # budget and stake left the owner's account
    assert cli.json("keys", "show", "agent-scout")["address"] == created["address"]  # its own encrypted key

    cli("agent", "pause", "scout")  # signed by the owner's key, found in the home by its address
    assert cli.json("agent", "list")[0]["policy"]["paused"] is True
    assert "PAUSED" in cli("agent", "show", "scout").stdout
    assert cli.json("agent", "show", "scout")["node_policy"]["policy"]["paused"] is True  # the node's copy
    cli.fails("agent", "resume", "scout", "--owner", "agent-scout", match="is not agent 'scout'")
    cli("agent", "resume", "scout", "--owner", "alice")
    assert cli.json("agent", "list")[0]["policy"]["paused"] is False
    assert cli.json("agent", "show", "scout")["node_policy"]["policy"]["paused"] is False
    changed = cli.json("agent", "policy", "scout", "--budget", "4", "--allow-models", "any", "--max-price", "none")
    enforced = cli.json("agent", "show", "scout")["node_policy"]["policy"]
    assert changed["policy"]["budget"] == str(4 * UNIT) and enforced["budget"] == str(4 * UNIT)
    assert enforced["allow_models"] == [] and enforced["max_price_per_1k"] is None and enforced["per_epoch"] is True
    cli.fails("agent", "policy", "scout", "--actions", "steal", match="unknown actions steal")

    # paused elsewhere (this home's copy still says running): a budget change keeps the node's pause
    from ledgerlm.agents import AgentRegistry

    cli("agent", "pause", "scout")
    homes_copy = AgentRegistry(cli.home.root / "agents")
    stale = homes_copy.get("scout")
    stale.policy.paused, stale.policy.allow_models = False, ["m1"]
    homes_copy.save(stale)
    cli("agent", "policy", "scout", "--budget", "3")
    enforced = cli.json("agent", "show", "scout")["node_policy"]["policy"]
    assert enforced["paused"] is True and enforced["allow_models"] == [] and enforced["budget"] == str(3 * UNIT)
    cli("agent", "resume", "scout")

    trail = cli.json("agent", "audit", "scout")
    assert [e["tool"] for e in trail] == ["fund_gas", "fund_tokens", "escrow_deposit", "stake", "register_policy",
                                          "spending_cap"]
    assert all(e["ok"] for e in trail) and all(e["tx_hashes"] for e in trail[:4])


def test_a_create_that_failed_part_way_finishes_when_run_again_without_funding_twice(cli):
    cli("chain", "faucet", "bob", "--tokens", "2")  # gas, but less LGR than the budget
    cli.fails("agent", "create", "late", "--owner", "bob", "--budget", "5", "--stake", "1",
              match="run the same `agent create` again")
    assert cli.json("agent", "show", "late")["state"] == "funding"
    cli.fails("agent", "run", "late", "--task", "t", "--script", "x.json", match="was not fully created")
    cli.fails("agent", "create", "late", "--owner", "bob", "--budget", "4", "--stake", "1",
              match="options it began with")
    cli("chain", "faucet", "bob", "--tokens", "10")
    done = cli.json("agent", "create", "late", "--owner", "bob", "--budget", "5", "--stake", "1")
    assert done["state"] == "ready"
    shown = cli.json("agent", "show", "late")
    assert shown["chain"]["escrow"] == 5 * UNIT and shown["chain"]["stake"]["validator"] == UNIT
    assert cli.json("balance", "bob")["tokens"] == 6 * UNIT  # 12 received, 6 moved once
    tools = [e["tool"] for e in cli.json("agent", "audit", "late")]
    assert tools == ["fund_gas", "fund_tokens", "escrow_deposit", "stake", "register_policy", "spending_cap"]
    cli.fails("agent", "create", "late", "--owner", "bob", "--budget", "5", match="already exists")


def test_bad_input_names_the_field(cli):
    cli("chain", "faucet", "alice", "--tokens", "10")
    cli.fails("agent", "create", "x", "--owner", "alice", "--budget", "1", "--actions", "steal",
              match="unknown actions steal")
    cli.fails("agent", "create", "x", "--owner", "alice", "--budget", "0", match="greater than 0")
    cli.fails("agent", "show", "nobody", match="no agent named 'nobody'")
    cli.fails("agent", "audit", "nobody", match="no agent named 'nobody'")
    assert cli.json("agent", "list") == []


def test_run_follows_a_script_as_the_agent_and_audits_each_step(cli, tmp_path):
    cli("chain", "faucet", "alice", "--tokens", "10")
    cli("agent", "create", "runner", "--owner", "alice", "--budget", "1", "--actions", "balance,earnings")
    script = tmp_path / "steps.json"
    script.write_text('[{"tool": "balance"}, {"tool": "claim"}, {"tool": "earnings"}]')
    result = cli.json("agent", "run", "runner", "--task", "check my money", "--script", script)
    assert result["stopped"] == "finished" and [s["ok"] for s in result["steps"]] == [True, False, True]
    assert result["steps"][0]["result"]["chain"]["escrow"] == 10**18
    assert result["steps"][1]["field"] == "actions"  # claim is not among the allowed actions
    assert [e["tool"] for e in cli.json("agent", "audit", "runner")][-3:] == ["balance", "claim", "earnings"]
    cli.fails("agent", "run", "runner", "--task", "t", match="give exactly one driver")
