"""The embedded chain survives restarts and crashes, and lets one process own it at a time."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ledgerlm.chain import ChainError, open_embedded

ETHER = 10**18


def test_restart_resumes_head_balances_storage_and_old_receipts(
    tmp_path, payer, other, probe_artifact
):
    chain = open_embedded(tmp_path / "chain", prefund={payer.address: 100 * ETHER})
    transfer = chain.send_eth(payer, other.address, 5 * ETHER)
    address = chain.deploy(probe_artifact, 100, sender=payer)
    stored = chain.transact(chain.contract(probe_artifact, address).functions.store(77), payer)
    head, payer_balance = chain.head(), chain.eth_balance(payer.address)
    chain.close()

    chain = open_embedded(tmp_path / "chain", prefund={other.address: 999 * ETHER})
    try:
        probe = chain.contract(probe_artifact, address)
        assert chain.head() == head
        assert chain.eth_balance(payer.address) == payer_balance
        assert chain.eth_balance(other.address) == 5 * ETHER  # prefund only applies at genesis
        assert chain.nonce(payer.address) == 3
        assert chain.call(probe.functions.value()) == 77
        old = chain.receipt(transfer.tx_hash)
        assert (old.block_number, old.status, old.gas_used) == (transfer.block_number, 1, 21000)
        assert chain.receipt(stored.tx_hash).logs[0].args == {"by": payer.address, "value": 77}
        assert chain.logs(probe, "Stored") == [{"by": payer.address, "value": 77}]

        chain.transact(probe.functions.store(78), payer)
        assert chain.call(probe.functions.value()) == 78
        assert chain.head().number == head.number + 1
    finally:
        chain.close()


def test_timestamps_keep_increasing_across_restarts_and_time_jumps(tmp_path, payer, other):
    chain = open_embedded(tmp_path / "chain", prefund={payer.address: ETHER})
    stamps = [chain.head().timestamp]
    for _ in range(3):
        chain.send_eth(payer, other.address, 1)
        stamps.append(chain.head().timestamp)
    jumped = chain.advance_time(86_400).timestamp
    chain.close()

    chain = open_embedded(tmp_path / "chain")
    try:
        chain.send_eth(payer, other.address, 1)
        after_restart = chain.head().timestamp
    finally:
        chain.close()

    assert stamps == sorted(set(stamps))
    assert jumped >= stamps[-1] + 86_400
    assert after_restart > jumped


def test_second_opener_is_told_who_owns_the_chain(tmp_path, payer):
    chain = open_embedded(tmp_path / "chain", prefund={payer.address: ETHER})
    with pytest.raises(ChainError) as refused:
        open_embedded(tmp_path / "chain")
    chain.close()
    reopened = open_embedded(tmp_path / "chain")
    reopened.close()

    assert f"in use by process {os.getpid()}" in refused.value.message
    assert "--node URL" in refused.value.message


def test_chain_id_is_fixed_at_genesis(tmp_path, payer):
    chain = open_embedded(tmp_path / "chain", chain_id=4242, prefund={payer.address: ETHER})
    assert chain.chain_id == chain.w3.eth.chain_id == 4242
    chain.close()

    with pytest.raises(ChainError) as mismatch:
        open_embedded(tmp_path / "chain", chain_id=1337)
    assert mismatch.value.field == "chain_id"


def test_the_node_holds_no_keys(embedded_chain):
    # Every write must be signed by its sender's own key, never by the chain.
    assert embedded_chain.w3.eth.accounts == []


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from eth_account import Account
    from ledgerlm.chain import open_embedded

    payer = Account.from_key(bytes.fromhex(sys.argv[2]))
    chain = open_embedded(Path(sys.argv[1]))
    start = chain.nonce(payer.address)
    for i in range(start, start + 10_000):
        chain.send_eth(payer, sys.argv[3], i + 1)
        print(i, flush=True)
    """
)


def _write_until_killed(path, payer, recipient, writes: int) -> list[int]:
    """Run a writer process, SIGKILL it at a random moment after `writes` acknowledged writes."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), payer.key.hex().removeprefix("0x"),
         recipient],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acknowledged = []
    try:
        while len(acknowledged) < writes:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"writer died on its own: {child.stderr.read()[-2000:]}")
            acknowledged.append(int(line))
        time.sleep(random.uniform(0, 0.05))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    return acknowledged


def test_killed_writer_leaves_a_consistent_chain_that_lost_nothing_acknowledged(
    tmp_path, payer, other
):
    path = tmp_path / "chain"
    open_embedded(path, prefund={payer.address: 100 * ETHER}).close()

    acknowledged = []
    for _ in range(2):
        acknowledged += _write_until_killed(path, payer, other.address, writes=8)

    chain = open_embedded(path)
    try:
        head = chain.head().number
        values, count = 0, 0
        for number in range(1, head + 1):
            block = chain.w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                assert chain.receipt("0x" + bytes(tx["hash"]).hex()).status == 1
                values += tx["value"]
                count += 1
        assert chain.eth_balance(other.address) == values
        assert chain.nonce(payer.address) == count == head
        # Every write the writer saw succeed is on chain, with the amount it sent.
        assert count >= len(acknowledged)
        assert values == sum(i + 1 for i in range(count))
        chain.send_eth(payer, other.address, 1)
        assert chain.head().number == head + 1
    finally:
        chain.close()
