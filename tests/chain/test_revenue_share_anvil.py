"""A revenue share token on anvil, read and claimed with plain web3.py and OpenZeppelin's own Merkle tree: wallets
and tools that know ERC-20 and StandardMerkleTree need nothing from ledgerlm to use it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from ledgerlm.chain import Contracts, deploy_all, load_artifact, open_rpc
from ledgerlm.economy.payouts import payout_tree

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ETHER = 10**18
pytestmark = pytest.mark.anvil


def _openzeppelin_tree(values: list[list]) -> dict:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    done = subprocess.run(["node", "merkle.mjs"], input=json.dumps({"types": ["address", "uint256"], "values": [
        [a, str(v)] for a, v in values]}), capture_output=True, text=True, cwd=CONTRACTS, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _send(w3: Web3, account, fn) -> dict:
    tx = fn.build_transaction({"from": account.address, "nonce": w3.eth.get_transaction_count(account.address),
                               "chainId": w3.eth.chain_id})
    tx["gas"] = tx["gas"] * 5 // 4  # the margin wallets add: anvil's estimate for a first checkpoint runs short
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1
    return receipt


def test_plain_web3_reads_balances_and_claims_with_an_openzeppelin_proof(anvil_url):
    admin, node, holder, buyer = (Account.from_key(keccak(text=f"shares-anvil:{n}")) for n in
                                  ("admin", "node", "holder", "buyer"))
    chain = open_rpc(anvil_url, expected_chain_id=31337)
    for a in (admin, node, holder, buyer):
        chain.w3.provider.make_request("anvil_setBalance", [a.address, hex(100 * ETHER)])
    contracts = Contracts(chain, deploy_all(chain, admin, treasury=admin.address, node=node.address))
    datanet_id = keccak(text="anvil-datanet")
    contracts.registry.register_datanet(node, datanet_id, admin.address, "anvil-datanet", b"\x01" * 32, "CC0")
    allocation = [[holder.address, 700 * ETHER + 3], [admin.address, 300 * ETHER - 3]]
    reference = _openzeppelin_tree(allocation)
    assert reference["root"] == payout_tree(allocation).root  # our drop is OpenZeppelin's drop
    deadline = chain.head().timestamp + 600
    consent = contracts.share_factory.sign_share_issue(admin, 0, datanet_id, 1000 * ETHER, reference["root"], deadline,
                                                       name="ledgerlm datanet anvil", symbol="D-ANVIL")
    contracts.share_factory.issue(node, 0, datanet_id, "ledgerlm datanet anvil", "D-ANVIL", 1000 * ETHER,
                                  reference["root"], deadline, consent)  # admin owns the Datanet: it consents
    address = contracts.share_factory.share_of(0, datanet_id)
    chain.close()

    w3 = Web3(Web3.HTTPProvider(anvil_url))
    token = w3.eth.contract(address=address, abi=load_artifact("RevenueShare").abi)
    assert (token.functions.symbol().call(), token.functions.decimals().call()) == ("D-ANVIL", 18)
    assert token.functions.totalSupply().call() == 1000 * ETHER
    assert token.functions.balanceOf(holder.address).call() == 0  # not claimed yet
    claim = token.functions.claimAllocation(holder.address, 700 * ETHER + 3, reference["proofs"][0])
    _send(w3, buyer, claim)
    assert token.functions.balanceOf(holder.address).call() == 700 * ETHER + 3  # anyone claims for the leaf
    claimed_at = w3.eth.block_number
    _send(w3, holder, token.functions.transfer(buyer.address, 200 * ETHER))
    assert token.functions.balanceOf(buyer.address).call() == 200 * ETHER
    assert token.functions.balanceAt(holder.address, claimed_at).call() == 700 * ETHER + 3  # the checkpoint
    assert token.functions.balanceAt(holder.address, w3.eth.block_number).call() == 500 * ETHER + 3
    already_claimed = "0x" + keccak(text="AllocationAlreadyClaimed(address)")[:4].hex()
    with pytest.raises(Exception, match=already_claimed):
        _send(w3, buyer, token.functions.claimAllocation(holder.address, 700 * ETHER + 3, reference["proofs"][0]))
