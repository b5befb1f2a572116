"""The event indexer rebuilds deposits, anchored versions and claims from logs, and survives re-orgs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_utils import keccak
from sqlalchemy import select

from ledgerlm.chain import ChainIndexer, ChainView, Contracts, deploy_all, open_embedded, open_rpc
from ledgerlm.store import Database
from ledgerlm.store.schema import chain_blocks, chain_reorgs

TOKEN = 10**18


@dataclass
class Deployed:
    chain: object
    contracts: Contracts
    admin: object
    node: object
    db: Database

    def indexer(self, **kwargs) -> ChainIndexer:
        return ChainIndexer(self.chain, self.db, self.contracts.deployment, **kwargs)

    def deposit(self, amount: int) -> str:
        consumer = Account.create()
        self.chain.send_eth(self.admin, consumer.address, TOKEN // 10)
        self.contracts.token.transfer(self.admin, consumer.address, amount)
        self.contracts.token.approve(consumer, self.contracts.escrow.address, amount)
        self.contracts.escrow.deposit(consumer, amount)
        return consumer.address

    def rpc(self, method, *params):
        response = self.chain.w3.provider.make_request(method, list(params))
        assert "error" not in response, response
        return response.get("result")


def deploy(chain, admin, tmp_path) -> Deployed:
    node = Account.create()
    chain.send_eth(admin, node.address, TOKEN)
    deployment = deploy_all(chain, admin, treasury=admin.address, node=node.address)
    db = Database.at(tmp_path / "ledger.db")
    db.upgrade()
    return Deployed(chain, Contracts(chain, deployment), admin, node, db)


@pytest.fixture
def embedded(tmp_path):
    admin = Account.from_key(b"\x0a" * 32)
    chain = open_embedded(tmp_path / "chain", prefund={admin.address: 1000 * TOKEN})
    yield deploy(chain, admin, tmp_path)
    chain.close()


@pytest.fixture
def l2(l2_url, anvil_funder, tmp_path):
    chain = open_rpc(l2_url, expected_chain_id=901, poll_latency=0.02, bump_after=0.3)
    yield deploy(chain, anvil_funder, tmp_path)
    chain.close()


def test_the_index_rebuilds_deposits_and_anchored_versions_from_logs(embedded):
    w = embedded
    alice = w.deposit(5 * TOKEN)
    bob = w.deposit(7 * TOKEN)
    datanet = keccak(text="notes")
    w.contracts.registry.register_datanet(w.node, datanet, alice, "notes", b"\x01" * 32, "CC-BY-4.0")
    w.contracts.registry.publish_version(w.node, datanet, 1, b"\x02" * 32, 3, b"\x03" * 32)

    status = w.indexer(batch_blocks=4).catch_up()
    view = ChainView(w.db)

    assert status.lag == 0 and status.indexed_block == w.chain.block_number()
    assert [(d.consumer, d.amount) for d in view.deposits()] == [(alice, 5 * TOKEN), (bob, 7 * TOKEN)]
    assert [(v.datanet_id, v.version, v.root, v.count) for v in view.anchored_versions()] == [
        ("0x" + datanet.hex(), 1, "0x" + "02" * 32, 3)]
    assert view.summary()["deposited"] == 12 * TOKEN
    assert w.indexer().step().blocks == 0  # nothing new: an idle step


@pytest.mark.anvil
def test_only_blocks_the_configured_depth_are_indexed(l2):
    consumer = l2.deposit(3 * TOKEN)
    indexer = l2.indexer(confirmations=3)

    indexer.catch_up()
    assert ChainView(l2.db).deposits() == []  # in the head block: 1 deep of 3
    assert indexer.status().indexed_block == l2.chain.block_number() - 2

    l2.rpc("anvil_mine", "0x2")
    indexer.catch_up()
    assert [d.consumer for d in ChainView(l2.db).deposits()] == [consumer]


@pytest.mark.anvil
def test_a_reorg_found_by_parent_hash_rolls_back_to_the_fork_and_reapplies_the_new_branch(l2):
    w = l2
    kept = w.deposit(1 * TOKEN)
    indexer = w.indexer(batch_blocks=5)
    indexer.catch_up()
    fork = w.chain.block_number()
    snapshot = w.rpc("evm_snapshot")
    w.deposit(2 * TOKEN)  # on the branch that will be abandoned
    indexer.catch_up()
    assert [d.amount for d in ChainView(w.db).deposits()] == [1 * TOKEN, 2 * TOKEN]

    w.rpc("evm_revert", snapshot)
    w.rpc("anvil_mine", "0x3")  # the other branch: empty blocks, then a different deposit
    replacement = w.deposit(4 * TOKEN)
    status = indexer.catch_up()

    deposits = ChainView(w.db).deposits()
    assert [(d.consumer, d.amount) for d in deposits] == [(kept, 1 * TOKEN), (replacement, 4 * TOKEN)]
    assert status.reorgs == 1 and status.indexed_hash == w.chain.head().hash
    with w.db.connect() as conn:
        reorg = conn.execute(select(chain_reorgs)).one()
        stored = {r.number: r.hash for r in conn.execute(select(chain_blocks))}
    assert reorg.ancestor == fork
    for number, block_hash in stored.items():  # every stored block is on the chain now
        assert w.chain.block(number).hash == block_hash


@pytest.mark.anvil
def test_anvil_reorg_removing_a_deposit_removes_it_from_the_view(l2):
    w = l2
    indexer = w.indexer()
    w.deposit(1 * TOKEN)
    w.rpc("anvil_mine", "0x2")
    doomed = w.deposit(2 * TOKEN)
    indexer.catch_up()
    assert doomed in [d.consumer for d in ChainView(w.db).deposits()]

    w.rpc("anvil_reorg", 1, [])  # the head block, holding the deposit, is replaced by an empty one
    status = indexer.catch_up()

    assert [d.amount for d in ChainView(w.db).deposits()] == [1 * TOKEN]
    assert status.reorgs == 1 and status.indexed_hash == w.chain.head().hash


@pytest.mark.anvil
def test_with_the_safe_tag_the_index_waits_for_what_the_node_calls_safe(l2):
    consumer = l2.deposit(3 * TOKEN)
    indexer = l2.indexer(finality="safe")

    early = indexer.catch_up()
    assert ChainView(l2.db).deposits() == []  # anvil's safe head trails its head by 32 blocks
    assert early.to_dict()["finality"] == "safe" and early.lag == 0

    l2.rpc("anvil_mine", hex(32))
    later = indexer.catch_up()
    assert [d.consumer for d in ChainView(l2.db).deposits()] == [consumer]
    assert later.indexed_block == l2.chain.block("safe").number
