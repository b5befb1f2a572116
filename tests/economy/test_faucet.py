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
