"""A policy needs only two signatures from keys that cost nothing, so what the node stores for them is bounded:
new agents per hour (per owner and in all), the names a policy lists, and the agents one listing returns."""

from __future__ import annotations

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from ledgerlm.agents import make_policy, policy_message
from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node


@pytest.fixture
def limited(home):
    config = home.load_config()
    config.agents_per_hour, config.agents_per_owner_per_hour = 3, 2
    home.save_config(config)
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost") as http:
        yield NodeClient(http)


def _register(client, owner, agent=None, **policy):
    agent = agent or Account.create()
    return client.agents.set_policy(owner, agent.address, policy_message(make_policy(budget=10**18, **policy)),
                                    bind=agent)


def test_fresh_keys_cannot_make_the_node_store_agents_without_end(limited):
    owners = [Account.create() for _ in range(3)]
    first = Account.create()
    _register(limited, owners[0], first)
    _register(limited, owners[0])
    with pytest.raises(LedgerError) as refused:
        _register(limited, owners[0])
    assert refused.value.status == 429 and refused.value.field == "owner"
    _register(limited, owners[0], first, allow_models=["tiny"])  # changing a policy stores no new agent
    _register(limited, owners[1])  # another owner still may: the node's third of the hour
    with pytest.raises(LedgerError) as refused:
        _register(limited, owners[2])
    assert refused.value.status == 429 and refused.value.field == "agent"
    assert len(limited.agents.list()) == 3  # the refused ones are nowhere


def test_a_policy_names_a_bounded_list_of_short_names(client):
    owner = Account.create()
    for field, signed_as, names in (("allow_models", "allowModels", ["m"] * 257),
                                    ("allow_datanets", "allowDatanets", ["d" * 129])):
        # signed as sent, past the client's own check: the node checks the signed message itself
        message = {**policy_message(make_policy(budget=10**18)), signed_as: names}
        agent = Account.create()
        with pytest.raises(LedgerError) as refused:
            client.agents.set_policy(owner, agent.address, message, bind=agent)
        assert refused.value.status in (400, 422) and refused.value.field.startswith(field), refused.value.to_dict()
    assert client.agents.list() == []


def test_agents_are_listed_in_pages(client):
    owner = Account.create()
    for _ in range(3):
        _register(client, owner)
    every = [a["agent"] for a in client.agents.list()]
    page = client._request("GET", "/agents", params={"offset": 1, "limit": 1})
    assert [a["agent"] for a in page] == every[1:2] and every == sorted(every)
    too_many = client.http.get("/agents", params={"limit": 1001})
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "limit"
