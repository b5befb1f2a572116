"""Writes on an OP Stack-style L2 (anvil, chain id 901, EIP-1559): confirmation depth, stuck and
dropped transactions, re-orgs before finality, and several processes sending with one key."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3.exceptions import TransactionNotFound

from ledgerlm.chain import open_rpc

pytestmark = pytest.mark.anvil

ROOT = Path(__file__).resolve().parents[2]


def rpc(chain, method, *params):
    response = chain.w3.provider.make_request(method, list(params))
    assert "error" not in response, response
    return response.get("result")


def pool_hashes(chain) -> list[str]:
    content = rpc(chain, "txpool_content")["pending"]
    return [tx["hash"] for by_nonce in content.values() for tx in by_nonce.values()]


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


class Sending(threading.Thread):
    """One send_eth in the background, so the test can play the miner meanwhile."""

    def __init__(self, chain, sender, to):
        super().__init__(daemon=True)
        self.chain, self.sender, self.to = chain, sender, to
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.chain.send_eth(self.sender, self.to, 1)
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            self.error = exc


def send_with_the_miner_stopped(chain, sender, to) -> tuple[Sending, str]:
    """Stop mining, start one transfer in the background; returns it and its transaction's hash in the pool."""
    rpc(chain, "evm_setAutomine", False)
    sending = Sending(chain, sender, to)
    sending.start()
    wait_until(lambda: pool_hashes(chain))
    return sending, pool_hashes(chain)[0]


def mine_until_done(chain, sending) -> None:
    while sending.is_alive():  # the L2's sequencer keeps producing blocks
        rpc(chain, "evm_mine")
        time.sleep(0.05)


@pytest.fixture
def funded(anvil_funder):
    """anvil's prefunded account, and a fresh recipient that counts how often a transfer ran."""
    return anvil_funder, Account.create().address


def test_the_l2_speaks_eip1559_on_its_own_chain_id(l2_url, funded):
    chain = open_rpc(l2_url, expected_chain_id=901)
    funder, recipient = funded
    result = chain.send_eth(funder, recipient, 1)
    tx = chain.w3.eth.get_transaction(result.tx_hash)

    assert chain.chain_id == 901
    assert tx["type"] == 2 and tx["chainId"] == 901
    assert result.effective_gas_price >= chain.w3.eth.get_block(result.block_number)["baseFeePerGas"]


def test_a_write_returns_only_once_it_is_the_configured_depth(l2_url, funded):
    chain = open_rpc(l2_url, confirmations=3, poll_latency=0.02)
    funder, recipient = funded
    sending, _ = send_with_the_miner_stopped(chain, funder, recipient)

    depth = []
    for _ in range(3):
        time.sleep(0.2)
        depth.append(sending.is_alive())
        rpc(chain, "evm_mine")
    sending.join(10)

    assert depth == [True, True, True]  # unmined, 1 deep, 2 deep: still waiting
    assert sending.error is None and not sending.is_alive()
    assert chain.block_number() - sending.result.block_number + 1 == 3
    assert chain.eth_balance(recipient) == 1


def test_a_transaction_priced_out_by_a_base_fee_spike_is_repriced_and_lands_once(l2_url, funded):
    chain = open_rpc(l2_url, bump_after=0.3, poll_latency=0.02)
    funder, recipient = funded
    sending, first = send_with_the_miner_stopped(chain, funder, recipient)
    first_max_fee = chain.w3.eth.get_transaction(first)["maxFeePerGas"]
    spike = first_max_fee * 20
    rpc(chain, "anvil_setNextBlockBaseFeePerGas", hex(spike))

    mine_until_done(chain, sending)

    result = sending.result
    assert sending.error is None
    assert result.tx_hash != first  # a replacement, same nonce, higher fees
    assert chain.w3.eth.get_transaction(result.tx_hash)["maxFeePerGas"] > first_max_fee
    with pytest.raises(TransactionNotFound):
        chain.w3.eth.get_transaction_receipt(first)
    assert chain.nonce(funder.address) == 1  # exactly one of the versions ran
    assert chain.eth_balance(recipient) == 1


def test_a_transaction_the_node_dropped_is_sent_again(l2_url, funded):
    chain = open_rpc(l2_url, bump_after=0.3, poll_latency=0.02)
    funder, recipient = funded
    sending, first = send_with_the_miner_stopped(chain, funder, recipient)
    rpc(chain, "anvil_dropTransaction", first)
    rpc(chain, "evm_mine")
    assert chain.nonce(funder.address) == 0  # it is gone: nothing was mined

    rpc(chain, "evm_setAutomine", True)
    sending.join(15)

    assert sending.error is None and sending.result.status == 1
    assert chain.nonce(funder.address) == 1
    assert chain.eth_balance(recipient) == 1


def test_a_write_reorged_out_before_it_was_final_is_sent_again_and_runs_once(l2_url, funded):
    chain = open_rpc(l2_url, confirmations=3, bump_after=0.3, poll_latency=0.02)
    funder, recipient = funded
    sending = Sending(chain, funder, recipient)
    sending.start()
    wait_until(lambda: chain.nonce(funder.address) == 1)
    mined_in = chain.block_number()
    rpc(chain, "anvil_reorg", 1, [])  # the block that held it is replaced by one without it
    assert chain.nonce(funder.address) == 0

    mine_until_done(chain, sending)

    result = sending.result
    assert sending.error is None
    assert result.block_number > mined_in
    assert bytes(chain.w3.eth.get_block(result.block_number)["hash"]) == bytes(result.receipt["blockHash"])
    assert chain.nonce(funder.address) == 1
    assert chain.eth_balance(recipient) == 1


SENDER_SCRIPT = """
import sys
from pathlib import Path
from eth_account import Account
from ledgerlm.chain import open_rpc
url, key, recipient, count, nonce_dir = sys.argv[1:]
chain = open_rpc(url, nonce_dir=Path(nonce_dir), poll_latency=0.02)
for _ in range(int(count)):
    print(chain.send_eth(Account.from_key(key), recipient, 1).tx_hash, flush=True)
"""


def test_processes_sending_with_one_hot_key_share_its_nonces(l2_url, funded, tmp_path):
    funder, recipient = funded
    hot = Account.create()
    chain = open_rpc(l2_url)
    chain.send_eth(funder, hot.address, 10**18)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    processes = [
        subprocess.Popen([sys.executable, "-c", SENDER_SCRIPT, l2_url, hot.key.hex(), recipient, "4",
                          str(tmp_path / "nonces")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]

    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    hashes = [h for out, _ in outputs for h in out.split()]
    nonces = sorted(chain.w3.eth.get_transaction(h)["nonce"] for h in hashes)
    assert nonces == list(range(8))  # distinct, no gaps
    assert chain.eth_balance(recipient) == 8


def test_nodes_that_share_a_hot_key_but_nothing_else_never_surface_a_nonce_error(l2_url, funded):
    # Four connections, four nonce books: what four nodes on four machines with one hot key see.
    funder, recipient = funded
    hot = Account.create()
    open_rpc(l2_url).send_eth(funder, hot.address, 10**18)
    nodes = [open_rpc(l2_url, poll_latency=0.02) for _ in range(4)]
    hashes, errors = [], []

    def relay(chain):
        try:
            for _ in range(5):
                hashes.append(chain.send_eth(hot, recipient, 1).tx_hash)
        except Exception as exc:  # noqa: BLE001 - the assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=relay, args=(chain,)) for chain in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    nonces = sorted(nodes[0].w3.eth.get_transaction(h)["nonce"] for h in hashes)
    assert nonces == list(range(20))
    assert nodes[0].eth_balance(recipient) == 20


def test_a_write_after_a_reorg_removed_earlier_writes_of_the_key_still_lands(l2_url, funded):
    chain = open_rpc(l2_url, bump_after=0.3, poll_latency=0.02)
    funder, recipient = funded
    snapshot = rpc(chain, "evm_snapshot")
    for _ in range(3):
        chain.send_eth(funder, recipient, 1)
    rpc(chain, "evm_revert", snapshot)  # the three are gone; the sender's book still counts them

    result = chain.send_eth(funder, recipient, 1)

    assert result.status == 1
    assert chain.eth_balance(recipient) == 1  # the gap was filled with no-ops, not with the lost writes
    assert chain.nonce(funder.address) == 4
