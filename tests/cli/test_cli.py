"""The real `ledgerlm` command: exit codes, messages and --json output users script against."""

import json

import pytest
from typer.testing import CliRunner

from ledgerlm.cli import app

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string"}}, "required": ["q", "a"]}


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pw")
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_story_with_json_output(cli, tmp_path):
    assert json.loads(cli("--json", "init").stdout)["chain_id"] == 1337
    for who in ("alice", "bob"):
        cli("keys", "new", who)
    keys = json.loads(cli("--json", "keys", "list").stdout)
    assert [k["name"] for k in keys] == ["alice", "bob"]
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    cli("datanet", "create", "facts", "--as", "alice", "--schema", str(tmp_path / "s.json"))
    (tmp_path / "d.jsonl").write_text('{"q": "1", "a": "one"}\n{"q": "2", "a": "two"}\n')
    receipt = json.loads(cli("--json", "datanet", "contribute", "facts", str(tmp_path / "d.jsonl"), "--as", "bob").stdout)
    assert receipt["contribution_count"] == 2
    cli("datanet", "accept", "1", "--as", "alice")
    cli("datanet", "reject", "2", "--as", "alice", "--reason", "wrong")
    rejected = json.loads(cli("--json", "datanet", "contributions", "facts", "--state", "rejected").stdout)
    assert rejected[0]["reason"] == "wrong" and rejected[0]["events"][-1]["state"] == "rejected"
    version = json.loads(cli("--json", "datanet", "publish", "facts", "--as", "alice").stdout)
    shown = json.loads(cli("--json", "datanet", "show", "facts").stdout)
    assert shown["versions"][0]["root"] == version["root"]
    out = tmp_path / "v1.jsonl"
    cli("datanet", "export", "facts", "--version", "1", "--out", str(out))
    assert json.loads(out.read_text())["q"] == "1"


def test_errors_exit_nonzero_with_the_message(cli, tmp_path):
    cli("init")
    cli("keys", "new", "alice")
    result = cli("datanet", "show", "missing", ok=False)
    assert result.exit_code == 1 and "no Datanet named 'missing'" in result.stderr
    result = cli("--json", "datanet", "show", "missing", ok=False)
    assert result.exit_code == 1 and json.loads(result.stdout)["error"]["field"] == "datanet"
    result = cli("datanet", "create", "Bad_Name", "--as", "alice", ok=False)
    assert result.exit_code == 1 and "name" in result.stderr
    result = cli("keys", "new", "alice", ok=False)
    assert "already exists" in result.stderr


def test_wrong_passphrase(cli, monkeypatch):
    cli("init")
    cli("keys", "new", "alice")
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "nope")
    result = cli("datanet", "create", "x1", "--as", "alice", ok=False)
    assert result.exit_code == 1 and "wrong passphrase" in result.stderr


def test_commands_before_init_say_what_to_do(cli):
    result = cli("datanet", "list", ok=False)
    assert result.exit_code == 1 and "ledgerlm init" in result.stderr
