"""`ledgerlm --node URL ... --as KEY` pins the node's key at that URL, and signs no read for it once it changes."""

from __future__ import annotations

import json

from ledgerlm.config import Home
from ledgerlm.identity import Keyring

from .conftest import PASSPHRASE, Cli, make_home, served


def test_a_node_url_whose_key_changed_gets_no_read_until_forgotten(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", PASSPHRASE)
    user = Home(tmp_path / "user")  # a member's own home: keys only, the node is someone else's
    Keyring(user.keys).new("alice", PASSPHRASE)
    monkeypatch.setenv("LEDGERLM_HOME", str(user.root))
    with served(make_home(tmp_path / "node")) as (url, api):
        monkeypatch.setenv("LEDGERLM_NODE", url)
        cli = Cli(user, "served", url, api)
        key = api.state.node.account.address
        assert cli.json("datanet", "list", "--as", "alice") == []
        known = cli.json("node", "known")
        assert [(n["url"], n["node_address"]) for n in known] == [(url.replace("127.0.0.1", "localhost"), key)]

        pins = json.loads(user.known_nodes_path.read_text())
        pinned = next(iter(pins.values()))
        pinned["node_address"] = "0x" + "b0" * 20  # as if the node at that URL had been replaced
        user.known_nodes_path.write_text(json.dumps(pins))
        cli.fails("datanet", "list", "--as", "alice", match="now reports key " + key)
        assert cli.json("datanet", "list") == []  # an unsigned read asks for no grant and still works

        assert cli.json("node", "forget", url)["node_address"] == "0x" + "b0" * 20
        cli.fails("node", "forget", url, match="has no pin for")
        assert cli.json("datanet", "list", "--as", "alice") == []
        assert cli.json("node", "trust", url)["node_address"] == key
