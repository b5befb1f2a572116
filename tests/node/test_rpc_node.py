"""A node on a real JSON-RPC chain (anvil): deploy from the CLI, then anchor Datanets there."""

import json

import pytest
from eth_utils import keccak
from typer.testing import CliRunner

from ledgerlm.chain import Deployment, open_rpc
from ledgerlm.cli import app

from ..chain.conftest import ANVIL_FUNDER_KEY as ANVIL_KEY
from ..chain.conftest import anvil_url  # noqa: F401 - the fixture that starts the session's anvil node

pytestmark = pytest.mark.anvil


def test_cli_deploys_on_anvil_and_anchors_there(anvil_url, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pw")
    runner = CliRunner()

    def run(*args, env=None):
        result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("init", "--chain-url", anvil_url, "--chain-id", "31337")
    run("keys", "import", "deployer", env={"LEDGERLM_PRIVATE_KEY": ANVIL_KEY})
    run("keys", "new", "alice")
    deployed = json.loads(run("--json", "chain", "deploy", "--chain-url", anvil_url, "--key", "deployer"))
    assert deployed["chain_id"] == 31337
    status = json.loads(run("--json", "chain", "status"))
    assert status["kind"] == "rpc" and status["contracts"] == deployed["contracts"]
    assert deployed["treasury"] == deployed["admin"] != status["node_address"]
    # No development faucet on a real chain: accounts are funded from the treasury.
    refused = runner.invoke(app, ["chain", "faucet", "alice"])
    assert refused.exit_code == 1 and "only on the embedded development chain" in refused.stderr

    run("datanet", "create", "anvil-notes", "--as", "alice")
    shown = json.loads(run("--json", "datanet", "show", "anvil-notes"))
    assert shown["chain_tx"]
    chain = open_rpc(anvil_url, expected_chain_id=31337)
    try:
        from ledgerlm.chain import Contracts

        deployment = Deployment.load(tmp_path / "home" / "deployment.json")
        record = Contracts(chain, deployment).registry.get_datanet(keccak(text="anvil-notes"))
        assert record.name == "anvil-notes"
    finally:
        chain.close()


def test_wrong_chain_id_is_refused(anvil_url, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    result = runner.invoke(app, ["init", "--chain-url", anvil_url, "--chain-id", "5"])
    assert result.exit_code == 1 and "chain id 31337, not 5" in result.stderr
    assert not (tmp_path / "home").exists()  # nothing written for a chain the home cannot use
