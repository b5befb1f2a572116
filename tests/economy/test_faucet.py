"""The development faucet pays from the treasury account, only on loopback, within a per-address limit."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node

UNIT = 10**18


def test_the_faucet_transfers_from_the_treasury_within_a_per_address_limit(client, bob):
    supply = client.chain.info()["token_supply"]

    client.chain.faucet(bob.address, eth_wei=UNIT, tokens=9_000 * UNIT)
    with pytest.raises(LedgerError, match="at most") as over:
        client.chain.faucet(bob.address, tokens=1_001 * UNIT)  # 10,000 LGR per address in all
    client.chain.faucet(bob.address, tokens=1_000 * UNIT)

    assert over.value.status == 429
    assert client.chain.account(bob.address)["tokens"] == 10_000 * UNIT
    assert client.chain.info()["token_supply"] == supply  # a transfer, never a mint


def test_the_faucet_refuses_a_client_that_is_not_on_loopback(home, bob):
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test",
                    client=("203.0.113.9", 40000)) as http:
        remote = NodeClient(http)
        with pytest.raises(LedgerError, match="only on loopback") as refused:
            remote.chain.faucet(bob.address, eth_wei=UNIT, tokens=UNIT)
        assert refused.value.status == 403
        assert remote.chain.account(bob.address)["tokens"] == 0


@pytest.mark.parametrize("host", ["evil.example:8547", "localhost.evil.example", "127.0.0.1.nip.io:8547", None])
def test_the_faucet_refuses_a_loopback_socket_addressed_by_another_name(home, bob, host):
    """A page whose own name was made to resolve to 127.0.0.1 (DNS rebinding) reaches the loopback
    socket, but its browser still sends that name as Host: nothing leaves the treasury."""
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:
        headers = {"host": host} if host else {"host": ""}
        refused = http.post("/chain/faucet", json={"address": bob.address, "eth_wei": UNIT, "tokens": UNIT},
                            headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["field"] == "host"
        assert NodeClient(http).chain.account(bob.address)["tokens"] == 0
        for name in ("localhost:8547", "127.0.0.1:8547", "[::1]:8547", "LOCALHOST"):
            granted = http.post("/chain/faucet", json={"address": bob.address, "tokens": UNIT}, headers={"host": name})
            assert granted.status_code == 200, (name, granted.text)
        assert NodeClient(http).chain.account(bob.address)["tokens"] == 4 * UNIT


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_the_faucet_refuses_a_request_a_proxy_on_this_machine_relayed(home, bob, header):
    """A reverse proxy on the node's machine connects from loopback and may send Host: 127.0.0.1: every remote
    caller behind it would pass as local; a request naming a hop it came through is refused."""
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://127.0.0.1:8547",
                    client=("127.0.0.1", 50000)) as http:
        refused = http.post("/chain/faucet", json={"address": bob.address, "tokens": UNIT},
                            headers={header: "203.0.113.9"})
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "client", refused.text
        assert NodeClient(http).chain.account(bob.address)["tokens"] == 0
