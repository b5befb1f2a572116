"""The node pays the gas of the spending caps it relays: it relays none over an empty escrow, only a few per consumer
at once, and so many an hour in all."""

from __future__ import annotations

import pytest
from eth_account import Account

from ledgerlm.economy.earnings import CAP_RELAY_BURST
from ledgerlm.errors import LedgerError

UNIT = 10**18


def test_a_cap_over_an_empty_escrow_is_refused_before_the_node_spends_gas(client):
    node = client.http.app.state.node
    gas_before = node.contracts.chain.w3.eth.get_balance(node.account.address)
    for i in range(3):  # fresh addresses cost an attacker nothing to sign for
        stranger = Account.from_key(bytes([0x40 + i]) * 32)
        with pytest.raises(LedgerError, match="holds nothing of .* deposit first") as refused:
            client.sign_spending_cap(stranger, 5 * UNIT)
        assert refused.value.status == 402 and refused.value.field == "consumer"
    assert node.contracts.chain.w3.eth.get_balance(node.account.address) == gas_before


def test_a_funded_consumer_gets_a_few_caps_relayed_at_once_then_waits(client, carol):
    node = client.http.app.state.node
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [node.contracts.escrow.address, UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [UNIT])
    for i in range(CAP_RELAY_BURST):
        client.sign_spending_cap(carol, (i + 1) * UNIT)
    with pytest.raises(LedgerError, match="wait .* s, or submit the signed cap to the escrow yourself") as refused:
        client.sign_spending_cap(carol, UNIT)
    assert refused.value.status == 429 and refused.value.field == "consumer"
    assert client.spending_cap(carol.address)["cap"] == str(CAP_RELAY_BURST * UNIT)  # the last relayed stands


def test_the_node_relays_so_many_caps_an_hour_in_all():
    from ledgerlm.economy.earnings import CapRelays

    relays = CapRelays(per_hour=3)  # dust deposits make any number of fresh addresses consumers
    for consumer in ("0xa", "0xb", "0xc"):
        relays.take(consumer)
    with pytest.raises(LedgerError, match="within the hour") as refused:
        relays.take("0xd")
    assert refused.value.status == 429 and refused.value.field == "cap"
