"""Registry via its typed client: who may record Datanets, versions and models; what it refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_utils import keccak
from test_contracts_world import BACKENDS, World, open_world, reverts, unauthorised

from ledgerlm.chain import FeePolicy

ZERO = "0x" + "00" * 20
ZERO32 = b"\x00" * 32
DEFAULT_POLICY = FeePolicy(500, 4000, 4500, 1000)


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def register_datanet(world, owner: str | None = None) -> bytes:
    datanet = world.fresh_id("datanet")
    world.contracts.registry.register_datanet(world.node, datanet, owner or world.node.address,
                                              "legal-qa", keccak(text="meta"), "CC-BY-4.0")
    return datanet


def publish(world, datanet: bytes, version: int) -> bytes:
    root = world.fresh_id("root")
    world.contracts.registry.publish_version(world.node, datanet, version, root, 10 * version,
                                             keccak(text=f"manifest:{version}"))
    return root


def register_model(world, developer: str, roots: list[bytes]) -> bytes:
    model = world.fresh_id("model")
    world.contracts.registry.register_model(world.node, model, developer, "SmolLM2-135M-Instruct",
                                            keccak(text="base"), keccak(text="adapter"), roots,
                                            keccak(text="config"), keccak(text="metrics"))
    return model


def test_a_registrar_records_a_datanet_with_its_owner_and_licence(world):
    registry = world.contracts.registry
    owner = world.actor()
    datanet = world.fresh_id("datanet")

    result = registry.register_datanet(world.node, datanet, owner.address, "medical-qa",
                                       keccak(text="meta"), "CC-BY-4.0")

    record = registry.get_datanet(datanet)
    assert (record.owner, record.name, record.licence, record.latest_version) == (
        owner.address, "medical-qa", "CC-BY-4.0", 0)
    assert record.metadata_hash == _hex(keccak(text="meta"))
    assert record.created_at == world.chain.w3.eth.get_block(result.block_number)["timestamp"]
    assert registry.datanet_exists(datanet)
    assert registry.latest_version(datanet) == 0
    assert result.events(registry.contract, "DatanetRegistered") == [{
        "datanetId": datanet, "owner": owner.address, "name": "medical-qa",
        "metadataHash": keccak(text="meta"), "licence": "CC-BY-4.0"}]


def test_registering_a_datanet_needs_the_registrar_role_a_fresh_id_and_an_owner(world):
    registry = world.contracts.registry
    stranger = world.actor()
    taken = register_datanet(world)

    with unauthorised(stranger.address, "REGISTRAR_ROLE"):
        registry.register_datanet(stranger, world.fresh_id(), stranger.address, "x", ZERO32, "")
    with unauthorised(world.admin.address, "REGISTRAR_ROLE"):  # admin alone does not register
        registry.register_datanet(world.admin, world.fresh_id(), stranger.address, "x", ZERO32, "")
    with reverts("ZeroId"):
        registry.register_datanet(world.node, ZERO32, stranger.address, "x", ZERO32, "")
    with reverts("ZeroAddress"):
        registry.register_datanet(world.node, world.fresh_id(), ZERO, "x", ZERO32, "")
    with reverts("DatanetAlreadyRegistered", datanetId=taken):
        registry.register_datanet(world.node, taken, stranger.address, "again", ZERO32, "")

    assert registry.get_datanet(taken).owner == world.node.address


def test_versions_are_published_in_order_starting_at_one(world):
    registry = world.contracts.registry
    datanet = register_datanet(world)

    with reverts("NonSequentialVersion", datanetId=datanet, expected=1, given=0):
        registry.publish_version(world.node, datanet, 0, world.fresh_id(), 1, ZERO32)
    with reverts("NonSequentialVersion", expected=1, given=2):
        registry.publish_version(world.node, datanet, 2, world.fresh_id(), 1, ZERO32)
    first = publish(world, datanet, 1)
    second = publish(world, datanet, 2)
    with reverts("NonSequentialVersion", expected=3, given=2):
        registry.publish_version(world.node, datanet, 2, world.fresh_id(), 1, ZERO32)

    version = registry.get_version(datanet, 2)
    assert registry.latest_version(datanet) == 2
    assert (version.root, version.count, version.manifest_hash) == (
        _hex(second), 20, _hex(keccak(text="manifest:2")))
    assert version.published_at > 0
    assert registry.get_version(datanet, 1).root == _hex(first)
    assert registry.root_publication(second) == (_hex(datanet), 2)


def test_publishing_needs_a_known_datanet_a_root_and_the_registrar(world):
    registry = world.contracts.registry
    datanet = register_datanet(world)
    unknown = world.fresh_id("nobody")
    stranger = world.actor()

    with reverts("UnknownDatanet", datanetId=unknown):
        registry.publish_version(world.node, unknown, 1, world.fresh_id(), 1, ZERO32)
    with reverts("ZeroRoot"):
        registry.publish_version(world.node, datanet, 1, ZERO32, 1, ZERO32)
    with unauthorised(stranger.address, "REGISTRAR_ROLE"):
        registry.publish_version(stranger, datanet, 1, world.fresh_id(), 1, ZERO32)

    assert registry.latest_version(datanet) == 0


def test_a_root_keeps_pointing_at_its_first_publication(world):
    registry = world.contracts.registry
    first, second = register_datanet(world), register_datanet(world)
    shared_root = world.fresh_id("root")
    registry.publish_version(world.node, first, 1, shared_root, 3, ZERO32)
    registry.publish_version(world.node, second, 1, shared_root, 3, ZERO32)

    assert registry.root_publication(shared_root) == (_hex(first), 1)
    assert registry.root_publication(world.fresh_id("never")) is None
    assert registry.get_version(second, 1).root == _hex(shared_root)


def test_reads_of_unknown_records_revert_with_not_found(world):
    registry = world.contracts.registry
    datanet = register_datanet(world)
    unknown = world.fresh_id("nobody")

    with reverts("UnknownDatanet", datanetId=unknown) as missing:
        registry.get_datanet(unknown)
    with reverts("UnknownDatanet"):
        registry.latest_version(unknown)
    with reverts("UnknownVersion", datanetId=datanet, version=1):
        registry.get_version(datanet, 1)
    with reverts("UnknownModel", modelId=unknown):
        registry.get_model(unknown)

    assert missing.value.status == 404
    assert not registry.datanet_exists(unknown)
    assert not registry.model_exists(unknown)


def test_a_model_records_its_lineage_on_published_roots(world):
    registry = world.contracts.registry
    developer = world.actor()
    datanet = register_datanet(world)
    roots = [publish(world, datanet, 1), publish(world, datanet, 2)]

    model = register_model(world, developer.address, roots)

    record = registry.get_model(model)
    assert record.developer == developer.address
    assert record.base_model == "SmolLM2-135M-Instruct"
    assert record.datanet_version_roots == tuple(_hex(r) for r in roots)
    assert (record.adapter_hash, record.training_config_hash, record.eval_metrics_hash) == (
        _hex(keccak(text="adapter")), _hex(keccak(text="config")), _hex(keccak(text="metrics")))
    assert registry.model_exists(model)
    assert registry.fee_policy(model) == FeePolicy(0, 0, 0, 0)


def test_a_model_is_refused_when_lineage_or_identity_is_wrong(world):
    registry = world.contracts.registry
    developer, stranger = world.actor(), world.actor()
    known = publish(world, register_datanet(world), 1)
    unpublished = world.fresh_id("root")
    model = register_model(world, developer.address, [known])

    def attempt(sender, model_id, developer_address, roots):
        registry.register_model(sender, model_id, developer_address, "base", ZERO32, ZERO32, roots,
                                ZERO32, ZERO32)

    with reverts("UnknownVersionRoot", root=unpublished):
        attempt(world.node, world.fresh_id(), developer.address, [known, unpublished])
    with reverts("ModelAlreadyRegistered", modelId=model):
        attempt(world.node, model, developer.address, [known])
    with reverts("ZeroId"):
        attempt(world.node, ZERO32, developer.address, [known])
    with reverts("ZeroAddress"):
        attempt(world.node, world.fresh_id(), ZERO, [known])
    with unauthorised(developer.address, "REGISTRAR_ROLE"):
        attempt(developer, world.fresh_id(), developer.address, [known])
    with unauthorised(stranger.address, "REGISTRAR_ROLE"):
        attempt(stranger, world.fresh_id(), stranger.address, [known])

    assert registry.get_model(model).datanet_version_roots == (_hex(known),)


def test_a_registrar_sets_a_published_fee_policy_summing_to_10000_once(world):
    registry = world.contracts.registry
    developer = world.actor()
    model = register_model(world, developer.address, [])

    # the developer may not take the one setting first: the node's publish would then find it set for good
    with unauthorised(developer.address, "REGISTRAR_ROLE"):
        registry.set_fee_policy(developer, model, FeePolicy(0, 10_000, 0, 0))
    by_developer = registry.set_fee_policy(world.node, model, DEFAULT_POLICY)
    assert registry.fee_policy(model) == DEFAULT_POLICY
    registry.set_fee_policy(world.node, register_model(world, developer.address, []), FeePolicy(0, 0, 10_000, 0))
    # the published split prices every epoch before its first change: set once, never rewritten
    with reverts("FeePolicyAlreadySet", modelId=model):
        registry.set_fee_policy(world.node, model, FeePolicy(10_000, 0, 0, 0))
    with reverts("FeePolicyEpochTooFar", modelId=model, fromEpoch=2**64 - 1):  # nor frozen by a change far ahead
        registry.schedule_fee_policy(world.node, model, FeePolicy(10_000, 0, 0, 0), 2**64 - 1)

    assert registry.fee_policy(model) == DEFAULT_POLICY
    assert by_developer.events(registry.contract, "FeePolicySet") == [{
        "modelId": model, "nodeBps": 500, "developerBps": 4000, "contributorsBps": 4500,
        "validatorsBps": 1000}]
    assert world.chain.call(registry.contract.functions.TOTAL_BPS()) == 10_000


def test_the_developer_or_a_registrar_prices_a_model_and_nobody_else(world):
    registry = world.contracts.registry
    developer, stranger = world.actor(), world.actor()
    model = register_model(world, developer.address, [])
    assert registry.price_per_1k(model) == 0

    priced = registry.set_price(developer, model, 3 * 10**15)
    assert registry.price_per_1k(model) == 3 * 10**15
    assert priced.events(registry.contract, "PriceSet") == [{"modelId": model, "pricePer1k": 3 * 10**15}]
    registry.set_price(world.node, model, 0)
    assert registry.price_per_1k(model) == 0

    with reverts("NotRegistrarOrDeveloper", modelId=model, caller=stranger.address):
        registry.set_price(stranger, model, 1)
    unknown = world.fresh_id()
    with reverts("UnknownModel", modelId=unknown):
        registry.set_price(developer, unknown, 1)
    assert registry.price_per_1k(model) == 0


@pytest.mark.parametrize("policy, total", [
    (FeePolicy(500, 4000, 4500, 999), 9_999),
    (FeePolicy(500, 4000, 4500, 1001), 10_001),
    (FeePolicy(0, 0, 0, 0), 0),
    (FeePolicy(65_535, 65_535, 65_535, 65_535), 4 * 65_535),  # no uint16 wrap-around
])
def test_fee_shares_that_do_not_sum_to_10000_are_refused(world, policy, total):
    registry = world.contracts.registry
    developer = world.actor()
    model = register_model(world, developer.address, [])

    with reverts("FeeSharesMustSumTo10000", sum=total):
        registry.set_fee_policy(world.node, model, policy)

    assert registry.fee_policy(model) == FeePolicy(0, 0, 0, 0)


def test_only_a_registrar_sets_a_known_models_published_policy(world):
    registry = world.contracts.registry
    developer, stranger = world.actor(), world.actor()
    model = register_model(world, developer.address, [])
    unknown = world.fresh_id("model")

    with reverts("NotRegistrarOrDeveloper", modelId=model, caller=stranger.address):
        registry.set_fee_policy(stranger, model, DEFAULT_POLICY)
    with reverts("NotRegistrarOrDeveloper", caller=world.admin.address):
        registry.set_fee_policy(world.admin, model, DEFAULT_POLICY)
    with reverts("UnknownModel", modelId=unknown):
        registry.set_fee_policy(developer, unknown, DEFAULT_POLICY)

    assert registry.fee_policy(model) == FeePolicy(0, 0, 0, 0)


def test_the_registry_refuses_a_zero_admin(world):
    with reverts("ZeroAddress"):
        world.chain.deploy("Registry", ZERO, sender=world.admin)


def test_a_scheduled_fee_policy_prices_only_from_its_epoch(world):
    registry = world.contracts.registry
    developer, stranger = world.actor(), world.actor()
    model = register_model(world, developer.address, [])
    registry.set_fee_policy(world.node, model, DEFAULT_POLICY)
    changed, again = FeePolicy(2500, 2000, 4500, 1000), FeePolicy(0, 0, 10_000, 0)

    announced = registry.schedule_fee_policy(world.node, model, changed, 5)
    assert registry.fee_policy(model) == DEFAULT_POLICY  # still the split of epochs before 5
    assert registry.fee_policy_at(model, 4) == DEFAULT_POLICY and registry.fee_policy_at(model, 5) == changed
    assert registry.scheduled_fee_policy(model) == (changed, 5)
    assert announced.events(registry.contract, "FeePolicyScheduled") == [{
        "modelId": model, "nodeBps": 2500, "developerBps": 2000, "contributorsBps": 4500, "validatorsBps": 1000,
        "fromEpoch": 5}]

    with reverts("FeePolicyEpochBeforeScheduled", scheduled=5, given=4):
        registry.schedule_fee_policy(developer, model, again, 4)
    with reverts("NotRegistrarOrDeveloper", caller=stranger.address):
        registry.schedule_fee_policy(stranger, model, again, 9)
    registry.schedule_fee_policy(developer, model, again, 7)
    assert registry.fee_policy(model) == DEFAULT_POLICY  # the published split, which priced epochs before 5
    assert registry.fee_policy_at(model, 6) == changed and registry.fee_policy_at(model, 7) == again


def test_announcing_a_later_change_leaves_every_earlier_epoch_its_split(world):
    """A change announced for epoch 10 while epoch 5 is open, then another for epoch 20: epochs 5 to 9 keep the
    split in force before either (the second announcement once put the first in force at once), 10 to 19 price
    with the first, and from 20 on with the second."""
    registry = world.contracts.registry
    developer = world.actor()
    model = register_model(world, developer.address, [])
    registry.set_fee_policy(world.node, model, DEFAULT_POLICY)
    first, second, replaced = FeePolicy(9000, 0, 500, 500), FeePolicy(100, 100, 9700, 100), FeePolicy(0, 0, 0, 10_000)

    registry.schedule_fee_policy(world.node, model, first, 10)
    registry.schedule_fee_policy(developer, model, replaced, 20)
    registry.schedule_fee_policy(world.node, model, second, 20)  # the same epoch: replaces what was announced for it

    in_force = {epoch: registry.fee_policy_at(model, epoch) for epoch in (1, 5, 9, 10, 19, 20, 2**64 - 1)}
    assert in_force == {1: DEFAULT_POLICY, 5: DEFAULT_POLICY, 9: DEFAULT_POLICY, 10: first, 19: first,
                        20: second, 2**64 - 1: second}
    assert registry.scheduled_fee_policy(model) == (second, 20)
    with reverts("FeePolicyEpochBeforeScheduled", scheduled=20, given=15):
        registry.schedule_fee_policy(world.node, model, replaced, 15)
    # the published split priced epochs 1 to 9 and stays on record: it is no longer set, only changed from an epoch
    with reverts("FeePolicyChangeScheduled"):
        registry.set_fee_policy(world.node, model, replaced)
    assert registry.fee_policy_at(model, 9) == DEFAULT_POLICY
