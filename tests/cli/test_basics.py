"""`ledgerlm init`, `keys`, `info` and what every command does before a home exists."""

import json

import pytest
from typer.testing import CliRunner

from ledgerlm.cli import app


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """The CLI over a home that does not exist yet."""
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


def test_init_keys_and_info(bare, tmp_path):
    assert json.loads(bare("--json", "init").stdout)["chain_id"] == 1337
    for who in ("alice", "bob"):
        bare("keys", "new", who)
    keys = json.loads(bare("--json", "keys", "list").stdout)
    assert [k["name"] for k in keys] == ["alice", "bob"]
    # the global options may also follow the command, as people write them
    assert json.loads(bare("keys", "list", "--json").stdout) == keys
    home = str(tmp_path / "home")
    assert json.loads(bare("keys", "list", "--home", home, "--json").stdout) == keys
    assert json.loads(bare("keys", "show", "alice", f"--home={home}", "--json").stdout)["name"] == "alice"
    shown = json.loads(bare("--json", "keys", "show", "alice").stdout)
    assert shown["address"] == keys[0]["address"] and shown["address"] in bare("keys", "list").stdout
    info = json.loads(bare("--json", "info").stdout)
    assert info["chain_id"] == 1337 and info["node_address"].startswith("0x")
    text = bare("info").stdout  # for people: lines, not the JSON
    assert f"node {info['node_address']}" in text and "chain embedded (id 1337)" in text and "{" not in text
    assert f"Registry {info['contracts']['Registry']}" in text
    result = bare("keys", "new", "alice", ok=False)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert "no base models yet: `ledgerlm models pull`" in bare("models", "list").stdout  # not an empty table


def test_init_again_refuses_a_setting_it_would_ignore(bare, tmp_path):
    """A second init changes nothing, and exited 0 for a --chain-url, --chain-id or --blobs it then ignored."""
    bare("init")
    config = (tmp_path / "home" / "config.toml").read_text()
    for args, field in ((["--chain-id", "5"], "chain_id"), (["--blobs", "s3://bucket/x"], "blobs"),
                        (["--chain-url", "http://127.0.0.1:9"], "chain")):
        result = bare("--json", "init", *args, ok=False)
        assert result.exit_code == 1 and json.loads(result.stdout or result.stderr)["error"]["field"] == field
    assert (tmp_path / "home" / "config.toml").read_text() == config
    bare("init", "--chain-id", "1337")  # the same setting again is no change


def test_import_a_private_key(bare, monkeypatch):
    bare("init")
    monkeypatch.setenv("LEDGERLM_PRIVATE_KEY", "0x" + "01" * 32)
    imported = json.loads(bare("--json", "keys", "import", "dev").stdout)
    assert imported["address"] == "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"
    monkeypatch.setenv("LEDGERLM_PRIVATE_KEY", "0x1234")
    result = bare("keys", "import", "short", ok=False)
    assert result.exit_code == 1 and "32 bytes of hex" in result.stderr


def test_wrong_passphrase(bare, monkeypatch):
    bare("init")
    bare("keys", "new", "alice")
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "nope")
    result = bare("datanet", "create", "x1", "--as", "alice", ok=False)
    assert result.exit_code == 1 and "wrong passphrase" in result.stderr


def test_commands_before_init_say_what_to_do(bare, tmp_path):
    result = bare("datanet", "list", ok=False)
    assert result.exit_code == 1 and f"ledgerlm init --home {tmp_path / 'home'}" in result.stderr


@pytest.mark.parametrize("missing", ["LEDGERLM_NODE_PASSPHRASE", "LEDGERLM_ADMIN_PASSPHRASE"])
def test_init_without_a_passphrase_says_which_to_set_and_writes_nothing(bare, tmp_path, monkeypatch, missing):
    monkeypatch.setenv("LEDGERLM_NODE_PASSPHRASE", "np")
    monkeypatch.setenv("LEDGERLM_ADMIN_PASSPHRASE", "ap")
    monkeypatch.delenv(missing)
    result = bare("init", ok=False)  # CliRunner's stdin is no terminal, so nobody is asked
    assert result.exit_code == 1
    assert f"set {missing} to the passphrase it should have" in result.stderr, result.stderr
    assert not (tmp_path / "home").exists()  # nothing half-made for the next init to trip over


@pytest.mark.parametrize("chain_id", ["0", "-5"])
def test_init_with_a_bad_chain_id_writes_nothing_and_init_then_works(bare, tmp_path, chain_id):
    result = bare("--json", "init", f"--chain-id={chain_id}", ok=False)
    assert result.exit_code == 1 and json.loads(result.stdout)["error"]["field"] == "chain_id"
    assert not (tmp_path / "home").exists()
    assert json.loads(bare("--json", "init").stdout)["chain_id"] == 1337


@pytest.mark.parametrize("args,field", [
    (["datanet", "contribution", "abc"], "contribution_id"),
    (["receipts", "list", "--limit", "0"], "limit"),
    (["datanet", "create"], "name"),
    (["nosuchcommand"], None),
    (["datanet", "contribution", "-1"], None),  # a negative number, read as an option
    (["datanet", "contribution", "-25"], None),
])
def test_usage_errors_are_json_with_json(bare, args, field):
    result = bare(*args, "--json", ok=False)
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["field"] == field and error["message"]
    if args[-1].startswith("-"):
        assert "negative number" in error["message"] and f"-- {args[-1]}`" in error["message"]


def test_global_options_after_the_command_move_before_it():
    from ledgerlm.cli.session import global_options_first

    assert global_options_first(["receipts", "list", "--json"]) == ["--json", "receipts", "list"]
    assert global_options_first(["--node", "http://n", "epoch", "show", "1", "--home", "h", "--json"]) == [
        "--node", "http://n", "--home", "h", "--json", "epoch", "show", "1"]
    # gateway's own --node, and anything after --, are left where they are
    assert global_options_first(["gateway", "--node", "http://a", "--node", "http://b"]) == [
        "gateway", "--node", "http://a", "--node", "http://b"]
    assert global_options_first(["attribute", "--prompt", "x", "--", "--json"]) == [
        "attribute", "--prompt", "x", "--", "--json"]


def test_counts_in_printed_lines_agree_with_their_noun():
    from ledgerlm.cli.session import counted

    assert counted(1, "consumer") == "1 consumer"
    assert counted(0, "receipt") == "0 receipts"
    assert counted(3, "settlement chunk") == "3 settlement chunks"


def test_a_redirected_log_gets_no_progress_bars_from_the_model_libraries(tmp_path):
    """transformers draws "Loading weights: 40%|..." with carriage returns; in a log file that is noise."""
    import subprocess
    import sys

    script = ("import os, sys; from ledgerlm.cli import app\n"
              "try: app(['--home', sys.argv[1], 'info'])\n"
              "except SystemExit: pass\n"
              "print(os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    with open(tmp_path / "err", "w") as err:
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "none")], stdout=subprocess.PIPE,
                             stderr=err, env=env, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "1"


def test_a_key_is_never_written_with_an_empty_passphrase(bare, monkeypatch):
    bare("init")
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "")
    result = bare("--json", "keys", "new", "alice", ok=False)
    assert result.exit_code == 1 and json.loads(result.stdout)["error"]["field"] == "passphrase"


def test_serve_on_a_port_in_use_says_so_before_loading_the_node(cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = cli.fails("serve", "--host", "127.0.0.1", "--port", port, match=f"port {port} on 127.0.0.1 is in use")
    assert "Traceback" not in error
