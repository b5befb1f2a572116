"""RevenueShareFactory via its typed client: only the asset owner's signature over kind, asset, supply and allocation
root creates an asset's share token; the issuer key alone creates none, and cannot take the one issue from its owner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from test_contracts_world import BACKENDS, TOKEN, World, open_world, reverts, unauthorised

from ledgerlm.chain import load_artifact
from ledgerlm.chain.merkle import StandardMerkleTree
from ledgerlm.chain.shares import AssetKind, sign_share_issue

FIXTURES = Path(__file__).parent / "fixtures"
SUPPLY = 1000 * TOKEN


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def datanet_of(world: World, owner: str) -> bytes:
    datanet = world.fresh_id("datanet")
    world.contracts.registry.register_datanet(world.node, datanet, owner, "qa", keccak(text="meta"), "CC0")
    return datanet


def model_of(world: World, developer: str) -> bytes:
    root = world.fresh_id("root")
    datanet = datanet_of(world, world.node.address)
    world.contracts.registry.publish_version(world.node, datanet, 1, root, 1, keccak(text="manifest"))
    model = world.fresh_id("model")
    world.contracts.registry.register_model(world.node, model, developer, "tiny", keccak(text="base"),
                                            keccak(text="adapter"), [root], keccak(text="config"),
                                            keccak(text="metrics"))
    return model


def drop(*holders: tuple[str, int]) -> str:
    return StandardMerkleTree.of([list(h) for h in holders], ["address", "uint256"]).root


def test_the_owners_signature_over_the_terms_issues_the_shares(world):
    factory, owner, contributor = world.contracts.share_factory, world.actor(), world.actor()
    datanet = datanet_of(world, owner.address)
    root = drop((owner.address, SUPPLY // 4), (contributor.address, SUPPLY - SUPPLY // 4))
    deadline = world.now() + 600
    assert factory.asset_owner(AssetKind.DATANET, datanet) == owner.address

    signature = factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, root, deadline, name="ledgerlm datanet qa", symbol="D-QA")
    issued = factory.issue(world.node, AssetKind.DATANET, datanet, "ledgerlm datanet qa", "D-QA", SUPPLY, root,
                           deadline, signature)

    token = world.contracts.share_token(factory.share_of(AssetKind.DATANET, datanet))
    assert token.allocation_root() == root and token.total_supply() == SUPPLY
    assert issued.events(factory.contract, "SharesIssued") == [{
        "kind": 0, "assetId": datanet, "token": token.address, "supply": SUPPLY,
        "allocationRoot": bytes.fromhex(root[2:]), "owner": owner.address}]
    # what a wallet is shown to sign hashes to the digest the contract checks
    message = encode_typed_data(full_message=factory.share_issue_typed_data(AssetKind.DATANET, datanet, SUPPLY, root,
                                                                            deadline, name="ledgerlm datanet qa", symbol="D-QA"))
    assert factory.share_issue_digest(AssetKind.DATANET, datanet, SUPPLY, root, deadline, name="ledgerlm datanet qa", symbol="D-QA") == \
        "0x" + keccak(b"\x19" + message.version + message.header + message.body).hex()


def test_the_issuer_key_alone_cannot_issue_nor_block_the_owners_issue(world):
    """The node's key with no owner signature, its own signature, or the owner's signature over other terms: no
    token, and the owner's own signed issue still goes through afterwards."""
    factory, owner = world.contracts.share_factory, world.actor()
    datanet = datanet_of(world, owner.address)
    to_node = drop((world.node.address, SUPPLY))
    owners = drop((owner.address, SUPPLY))
    deadline = world.now() + 600

    def relay(root: str, signature: str | bytes, supply: int = SUPPLY):
        return factory.issue(world.node, AssetKind.DATANET, datanet, "ledgerlm datanet qa", "D-QA", supply, root,
                             deadline, signature)

    with reverts("InvalidShareIssueSignature", owner=owner.address):
        relay(to_node, b"")
    with reverts("InvalidShareIssueSignature", owner=owner.address):  # the hot key signing for itself
        relay(to_node, factory.sign_share_issue(world.node, AssetKind.DATANET, datanet, SUPPLY, to_node, deadline,
                                                name="ledgerlm datanet qa", symbol="D-QA"))
    with reverts("InvalidShareIssueSignature", owner=owner.address):  # the owner's consent, moved to another root
        relay(to_node, factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, owners, deadline, name="ledgerlm datanet qa", symbol="D-QA"))
    with reverts("InvalidShareIssueSignature", owner=owner.address):  # ... or to another supply
        relay(owners, factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, owners, deadline, name="ledgerlm datanet qa", symbol="D-QA"),
              supply=2 * SUPPLY)
    other = datanet_of(world, owner.address)
    with reverts("InvalidShareIssueSignature", owner=owner.address):  # ... or to another asset of the same owner
        factory.issue(world.node, AssetKind.DATANET, other, "x", "X", SUPPLY, owners, deadline,
                      factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, owners, deadline, name="ledgerlm datanet qa", symbol="D-QA"))
    assert factory.share_of(AssetKind.DATANET, datanet) is None

    with reverts("InvalidShareIssueSignature", owner=owner.address):  # ... or to another token's name
        factory.issue(world.node, AssetKind.DATANET, datanet, "Tether USD", "USDT", SUPPLY, owners, deadline,
                      factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, owners, deadline, name="ledgerlm datanet qa", symbol="D-QA"))
    relay(owners, factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, owners, deadline, name="ledgerlm datanet qa", symbol="D-QA"))
    token = world.contracts.share_token(factory.share_of(AssetKind.DATANET, datanet))
    assert token.allocation_root() == owners


def test_a_consent_signed_for_another_factory_or_chain_does_not_issue(world):
    factory, owner = world.contracts.share_factory, world.actor()
    datanet = datanet_of(world, owner.address)
    root, deadline = drop((owner.address, SUPPLY)), world.now() + 600
    for changed in ({"verifyingContract": world.contracts.registry.address}, {"chainId": world.chain.chain_id + 1}):
        elsewhere = sign_share_issue(owner, {**factory.eip712_domain, **changed}, AssetKind.DATANET, datanet,
                                     SUPPLY, root, deadline, name="n", symbol="S")
        with reverts("InvalidShareIssueSignature", owner=owner.address):
            factory.issue(world.node, AssetKind.DATANET, datanet, "n", "S", SUPPLY, root, deadline, elsewhere)


def test_a_models_shares_need_its_developers_signature(world):
    factory, developer = world.contracts.share_factory, world.actor()
    model = model_of(world, developer.address)
    root, deadline = drop((developer.address, SUPPLY)), world.now() + 600
    assert factory.asset_owner(AssetKind.MODEL, model) == developer.address
    # the owner of the Datanet it was trained on is not the model's owner
    by_node = factory.sign_share_issue(world.node, AssetKind.MODEL, model, SUPPLY, root, deadline, name="ledgerlm model m", symbol="M-M")
    with reverts("InvalidShareIssueSignature", owner=developer.address):
        factory.issue(world.node, AssetKind.MODEL, model, "ledgerlm model m", "M-M", SUPPLY, root, deadline, by_node)
    signature = factory.sign_share_issue(developer, AssetKind.MODEL, model, SUPPLY, root, deadline, name="ledgerlm model m", symbol="M-M")
    factory.issue(world.node, AssetKind.MODEL, model, "ledgerlm model m", "M-M", SUPPLY, root, deadline, signature)
    token = factory.share_of(AssetKind.MODEL, model)
    with reverts("AlreadyIssued", token=token):  # once per asset, even on the same signature
        factory.issue(world.node, AssetKind.MODEL, model, "ledgerlm model m", "M-M", SUPPLY, root, deadline, signature)


def test_an_expired_consent_an_unknown_asset_and_a_stranger_are_refused(world):
    factory, owner, stranger = world.contracts.share_factory, world.actor(), world.actor()
    datanet = datanet_of(world, owner.address)
    root = drop((owner.address, SUPPLY))
    past = world.now() - 1
    expired = factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, root, past, name="n", symbol="S")
    with reverts("ShareIssueExpired", deadline=past):
        factory.issue(world.node, AssetKind.DATANET, datanet, "n", "S", SUPPLY, root, past, expired)
    deadline = world.now() + 600
    signature = factory.sign_share_issue(owner, AssetKind.DATANET, datanet, SUPPLY, root, deadline, name="n", symbol="S")
    with unauthorised(stranger.address, "ISSUER_ROLE"):
        factory.issue(stranger, AssetKind.DATANET, datanet, "n", "S", SUPPLY, root, deadline, signature)
    unknown = world.fresh_id("unregistered")
    with reverts("UnknownAsset"):
        factory.issue(world.node, AssetKind.DATANET, unknown, "n", "S", SUPPLY, root, deadline, signature)
    with reverts("UnknownAsset"):
        factory.asset_owner(AssetKind.MODEL, datanet)


def test_a_contract_wallet_owner_consents_through_erc1271(world):
    factory, key, stranger = world.contracts.share_factory, world.actor(), world.actor()
    wallet_artifact = load_artifact("SigningWallet", FIXTURES)
    wallet = world.chain.deploy(wallet_artifact, key.address, sender=key)
    datanet = datanet_of(world, wallet)
    root, deadline = drop((wallet, SUPPLY)), world.now() + 600
    digest = bytes.fromhex(factory.share_issue_digest(AssetKind.DATANET, datanet, SUPPLY, root, deadline, name="n", symbol="S")[2:])

    not_the_wallets = bytes(Account.unsafe_sign_hash(digest, stranger.key).signature)
    with reverts("InvalidShareIssueSignature", owner=wallet):
        factory.issue(world.node, AssetKind.DATANET, datanet, "n", "S", SUPPLY, root, deadline, not_the_wallets)
    approved = bytes(Account.unsafe_sign_hash(digest, key.key).signature)
    factory.issue(world.node, AssetKind.DATANET, datanet, "n", "S", SUPPLY, root, deadline, approved)
    assert world.contracts.share_token(factory.share_of(AssetKind.DATANET, datanet)).allocation_root() == root
