"""A node on an OP Stack-style L2 (anvil, chain id 901): a version whose anchor a re-org removed is anchored again."""

import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledgerlm.api import create_app
from ledgerlm.cli import app
from ledgerlm.client import NodeClient
from ledgerlm.config import Home
from ledgerlm.node import Node

from ..chain.conftest import (
    ANVIL_FUNDER_KEY,
    l2_url,  # noqa: F401 - the fixture that starts a fresh L2 node
)
from .test_chain_wiring import _publish_one

pytestmark = pytest.mark.anvil


def test_a_version_a_reorg_took_off_the_chain_is_indexed_away_and_anchored_again(
        l2_url, tmp_path, monkeypatch, alice, bob):  # noqa: F811 - the fixture
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pw")
    for args, env in ((["init", "--chain-url", l2_url, "--chain-id", "901"], None),
                      (["keys", "import", "deployer"], {"LEDGERLM_PRIVATE_KEY": ANVIL_FUNDER_KEY}),
                      (["chain", "deploy", "--chain-url", l2_url, "--key", "deployer"], None)):
        result = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    home = Home(tmp_path / "home")
    config = home.load_config()
    config.chain_fee_bump_seconds = 1  # after the re-org the hot key's nonces run ahead of the chain
    home.save_config(config)
    node = Node.open(home)
    rpc = node.chain.w3.provider.make_request
    with TestClient(create_app(lambda: node)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        assert client.chain.index()["reanchored"] == {"datanets": 0, "versions": 0}
        fork = rpc("evm_snapshot", [])["result"]
        version = _publish_one(client, alice, bob, tmp_path)
        first_tx = node.datanets.version("qa", 1).chain_tx
        assert client.chain.index()["derived"]["anchored_versions"] == 1

        rpc("evm_revert", [fork])  # a re-org deeper than the confirmations: the anchors are gone
        rpc("anvil_mine", ["0x5"])
        assert not node.contracts.registry.datanet_exists(keccak(text="qa"))
        recovered = client.chain.index()
        again = client.chain.index()
        record = node.contracts.registry.get_version(keccak(text="qa"), 1)
        new_tx = node.datanets.version("qa", 1).chain_tx

    assert recovered["reorgs"] == 1
    assert recovered["reanchored"] == {"datanets": 1, "versions": 1}
    assert record.root == version.root
    assert new_tx not in (None, first_tx)
    assert again["derived"]["anchored_versions"] == 1 and again["reanchored"] == {"datanets": 0, "versions": 0}
