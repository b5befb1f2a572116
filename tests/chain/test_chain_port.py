"""The Chain port keeps its promises on every backend: local signing, exact balances, decoded reverts."""

from __future__ import annotations

import pytest
from tests.loops import at_once

from ledgerlm.chain import ChainError

ETHER = 10**18


def test_transfer_moves_exact_wei_and_sender_pays_the_fee(chain, payer, other):
    before_payer = chain.eth_balance(payer.address)
    before_other = chain.eth_balance(other.address)

    result = chain.send_eth(payer, other.address, 123_456_789)

    assert result.status == 1
    assert result.block_number == chain.block_number()
    assert chain.eth_balance(other.address) == before_other + 123_456_789
    assert chain.eth_balance(payer.address) == before_payer - 123_456_789 - result.fee_paid
    assert result.fee_paid > 0


def test_deployed_contract_stores_value_and_reports_decoded_event(chain, payer, probe_artifact):
    address = chain.deploy(probe_artifact, 100, sender=payer)
    probe = chain.contract(probe_artifact, address)

    result = chain.transact(probe.functions.store(42), payer)

    assert chain.call(probe.functions.value()) == 42
    assert [(e.name, e.args) for e in result.logs] == [
        ("Stored", {"by": payer.address, "value": 42})
    ]
    assert result.events(probe, "Stored") == [{"by": payer.address, "value": 42}]
    assert chain.logs(probe, "Stored") == [{"by": payer.address, "value": 42}]


def test_custom_error_revert_is_named_with_its_arguments(chain, payer, probe_artifact):
    probe = chain.contract(probe_artifact, chain.deploy(probe_artifact, 100, sender=payer))

    with pytest.raises(ChainError) as write:
        chain.transact(probe.functions.store(150), payer)
    with pytest.raises(ChainError) as read:
        chain.call(probe.functions.store(150))

    for error in (write.value, read.value):
        assert error.reason == "ExceedsCap(cap=100, requested=150)"
        assert error.error_name == "ExceedsCap"
        assert error.error_args == {"cap": 100, "requested": 150}
        assert "Probe.store" in error.message


def test_require_message_and_panic_are_readable(chain, payer, probe_artifact):
    probe = chain.contract(probe_artifact, chain.deploy(probe_artifact, 100, sender=payer))

    with pytest.raises(ChainError) as required:
        chain.transact(probe.functions.fail("not allowed today"), payer)
    with pytest.raises(ChainError) as panic:
        chain.call(probe.functions.ratio(1, 0))

    assert required.value.reason == "not allowed today"
    assert panic.value.reason.startswith("Panic(0x12")


def test_a_rejected_write_costs_nothing_and_the_next_write_goes_through(
    chain, payer, probe_artifact
):
    probe = chain.contract(probe_artifact, chain.deploy(probe_artifact, 100, sender=payer))
    nonce = chain.nonce(payer.address)
    balance = chain.eth_balance(payer.address)

    with pytest.raises(ChainError):
        chain.transact(probe.functions.store(1_000), payer)

    assert chain.nonce(payer.address) == nonce
    assert chain.eth_balance(payer.address) == balance
    chain.transact(probe.functions.store(7), payer)
    assert chain.call(probe.functions.value()) == 7


def test_a_deadline_passes_once_the_chain_clock_moves(chain, payer, probe_artifact):
    probe = chain.contract(probe_artifact, chain.deploy(probe_artifact, 100, sender=payer))
    chain.transact(probe.functions.lockFor(3600), payer)

    with pytest.raises(ChainError) as early:
        chain.transact(probe.functions.unlock(), payer)
    before = chain.head()
    after = chain.advance_time(3600)
    chain.transact(probe.functions.unlock(), payer)

    assert early.value.error_name == "TooEarly"
    assert after.number == before.number + 1
    assert after.timestamp >= before.timestamp + 3600
    assert chain.call(probe.functions.unlockAt()) == 0



def test_concurrent_writes_from_one_sender_all_land(chain, payer, other):
    before = chain.eth_balance(other.address)
    nonce = chain.nonce(payer.address)

    def send_three():
        for _ in range(3):
            chain.send_eth(payer, other.address, 1)

    failures = at_once(send_three, [()] * 4)
    assert failures == []
    assert chain.nonce(payer.address) == nonce + 12
    assert chain.eth_balance(other.address) == before + 12
