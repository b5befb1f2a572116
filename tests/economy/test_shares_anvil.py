"""On anvil: a model's shares are issued, half are sold mid-epoch, and the epoch close pays the buyer and the
developer their halves of the developer share through the payout tree, claimed from the EpochDistributor."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from sqlalchemy import insert

from ledgerlm.chain import deploy_all
from ledgerlm.chain.shares import AssetKind, sign_share_issue
from ledgerlm.config import Home
from ledgerlm.economy.earnings import earnings
from ledgerlm.identity import sign_action
from ledgerlm.node import Node
from ledgerlm.store.schema import models
from tests.chain.conftest import anvil_url  # noqa: F401 - the fixture that starts the session's anvil node

from .helpers import give_cap, key, write_receipt

pytestmark = pytest.mark.anvil
UNIT = 10**18


def test_a_sale_mid_epoch_moves_the_payout_on_anvil(anvil_url, tmp_path):  # noqa: F811
    admin, treasury, dev, buyer, consumer = (key(f"anvil-shares-{n}") for n in
                                             ("admin", "treasury", "dev", "buyer", "consumer"))
    home = Home(tmp_path / "home")
    node = Node.init(home, chain=anvil_url)
    try:
        for a in (admin, treasury, dev, buyer, consumer, node.account):
            node.chain.w3.provider.make_request("anvil_setBalance", [a.address, hex(10 * UNIT)])
        deploy_all(node.chain, admin, treasury=treasury.address, node=node.account.address).save(
            home.deployment_path)
    finally:
        node.close()
    node = Node.open(home)
    try:
        c = node.contracts
        c.registry.register_model(node.account, keccak(text="m1"), dev.address, "tiny", b"\x01" * 32, b"\x02" * 32,
                                  [], b"\x03" * 32, b"\x04" * 32)
        with node.db.begin() as conn:
            conn.execute(insert(models).values(
                id="m1", developer=dev.address, base_model="tiny", datanet="-", version=1, version_root="0x",
                card={}, metrics={}, path="/nowhere", job_id=None, fee_policy=None, chain_tx="0x01", created_at=0))
        preview = node.shares.preview("model", "m1", 100 * UNIT)
        signed = sign_action(dev, "IssueShares", {"kind": "model", "asset": "m1", "version": 0, "supply": 100 * UNIT,
                                                  "ownerBps": 0, "allocationRoot": preview.allocation_root},
                             domain=node.domain)
        consent = sign_share_issue(dev, preview.share_issue_domain, AssetKind.MODEL, preview.asset_id, 100 * UNIT,
                                   preview.allocation_root, signed.message["deadline"], name=preview.name,
                                   symbol=preview.symbol)
        asset = node.shares.issue(signed, consent)
        token = c.share_token(asset.token)
        leaf = asset.allocation[0]
        token.claim_allocation(dev, dev.address, int(leaf["amount"]), leaf["proof"])

        c.token.transfer(treasury, consumer.address, 10 * UNIT)  # the embedded chain's faucet is not here
        c.escrow.deposit(consumer, 10 * UNIT)
        give_cap(node, consumer, 10 * UNIT)
        write_receipt(node, consumer.address, 5 * UNIT + 1, dev.address)
        token.transfer(dev, buyer.address, 50 * UNIT)  # sold mid-epoch: the buyer takes half of this epoch

        summary = node.economy.close()

        developer_share = (5 * UNIT + 1) * 4000 // 10_000
        owed = {a: int(earnings(node.db, c.distributor, a)["epochs"][0]["amount"]) for a in (dev.address, buyer.address)}
        assert sum(owed.values()) == developer_share and abs(owed[dev.address] - owed[buyer.address]) <= 1
        assert int(summary["total"]) == 5 * UNIT + 1
        proof = earnings(node.db, c.distributor, buyer.address)["epochs"][0]["proof"]
        c.distributor.claim(buyer, node.economy.chain_epoch(1), buyer.address, owed[buyer.address], proof)
        assert c.token.balance_of(buyer.address) == owed[buyer.address]
    finally:
        node.close()
