"""Connecting to a JSON-RPC node fails early and clearly when the node is wrong."""

from __future__ import annotations

import socket

import pytest

from ledgerlm.chain import ChainError, open_rpc


def test_an_unreachable_node_is_named_in_the_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound but not listening: refused

    with pytest.raises(ChainError) as refused:
        open_rpc(url)

    assert url in refused.value.message
    assert refused.value.field == "chain_url"


@pytest.mark.anvil
def test_a_node_on_another_chain_id_is_refused(anvil_url):
    with pytest.raises(ChainError) as wrong:
        open_rpc(anvil_url, expected_chain_id=10)

    assert "31337" in wrong.value.message and "10" in wrong.value.message
    assert wrong.value.field == "chain_id"


@pytest.mark.anvil
def test_the_node_is_asked_for_eip1559_fees(anvil_chain, payer, other):
    result = anvil_chain.send_eth(payer, other.address, 1)
    tx = anvil_chain.w3.eth.get_transaction(result.tx_hash)

    assert tx["type"] == 2
    assert tx["maxFeePerGas"] >= tx["maxPriorityFeePerGas"] > 0
