"""deploy_all and the typed clients drive the settlement contracts end to end, on every backend."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from ledgerlm.chain import (
    ChainError,
    Contracts,
    Debit,
    Deployment,
    FeePolicy,
    StakeRole,
    deploy_all,
    epoch_id,
)

TOKEN = 10**18


SUPPLY = 1000 * TOKEN


@pytest.fixture
def admin(payer):
    return payer


@pytest.fixture
def node(chain, admin):
    """The node's hot key: a separate account from the admin, with gas money only."""
    hot = Account.from_key(keccak(text="settlement-clients:node"))
    chain.send_eth(admin, hot.address, 10**18)
    return hot


@pytest.fixture
def contracts(chain, admin, node, treasury):
    chain.send_eth(admin, treasury.address, 10**18)
    deployment = deploy_all(chain, admin, treasury=treasury.address, node=node.address, supply=SUPPLY,
                            cooldown=3600, withdraw_delay=600)
    return Contracts(chain, deployment)


def test_deployment_record_round_trips_and_matches_its_chain(chain, contracts, tmp_path):
    path = tmp_path / "deployment.json"
    contracts.deployment.save(path)
    loaded = Deployment.load(path)

    assert loaded == contracts.deployment
    loaded.check(chain)
    for role, client in [("REGISTRAR_ROLE", contracts.registry), ("SLASHER_ROLE", contracts.staking),
                         ("REWARDS_ROLE", contracts.staking), ("POSTER_ROLE", contracts.distributor),
                         ("SETTLER_ROLE", contracts.escrow)]:
        assert client.has_role(role, loaded.node)
        assert not client.has_role("DEFAULT_ADMIN_ROLE", loaded.node)
    assert not contracts.distributor.has_role("FUNDER_ROLE", loaded.node)
    assert contracts.distributor.has_role("FUNDER_ROLE", contracts.escrow.address)
    assert contracts.distributor.has_role("FUNDER_ROLE", contracts.staking.address)
    assert contracts.distributor.has_role("SWEEPER_ROLE", loaded.deployer)


def test_the_node_key_must_not_be_the_admin_key(chain, admin):
    with pytest.raises(ChainError) as refused:
        deploy_all(chain, admin, treasury=admin.address, node=admin.address)
    assert refused.value.field == "node"


def test_a_deployment_from_another_chain_is_refused(chain, contracts):
    foreign = Deployment(chain_id=chain.chain_id + 1, addresses=contracts.deployment.addresses,
                         deployer=contracts.deployment.deployer, block=1)
    with pytest.raises(ChainError) as refused:
        Contracts(chain, foreign)
    assert refused.value.field == "chain_id"


def test_stake_cooldown_withdraw_and_a_recorded_slash_into_the_reward_pool(chain, contracts, node, other,
                                                                          treasury):
    contracts.token.transfer(treasury, other.address, 100 * TOKEN)
    contracts.staking.stake(other, StakeRole.VALIDATOR, 60 * TOKEN)
    round_id = epoch_id(node.address, 7)  # an outcome id carries its node, as an epoch id does
    contracts.staking.record_outcome(node, round_id, b"\x01" * 32)
    contracts.staking.slash(node, round_id, other.address, StakeRole.VALIDATOR, 6 * TOKEN)
    contracts.staking.request_unstake(other, StakeRole.VALIDATOR, 20 * TOKEN)

    with pytest.raises(ChainError) as too_soon:
        contracts.staking.withdraw(other, StakeRole.VALIDATOR)
    with pytest.raises(ChainError) as not_slasher:
        contracts.staking.slash(other, round_id, other.address, StakeRole.VALIDATOR, 1)
    chain.advance_time(3600)
    contracts.staking.withdraw(other, StakeRole.VALIDATOR)

    assert too_soon.value.error_name == "CooldownNotElapsed"
    assert "SLASHER_ROLE" in not_slasher.value.reason
    assert contracts.staking.stake_of(other.address, StakeRole.VALIDATOR) == 34 * TOKEN
    assert contracts.token.balance_of(other.address) == 60 * TOKEN
    assert contracts.staking.slashes_held() == 6 * TOKEN and contracts.staking.reward_pool() == 0
    assert contracts.staking.settle_matured_slashes(other) == 0  # held for its dispute time
    chain.advance_time(contracts.staking.slash_dispute_seconds())
    assert contracts.staking.settle_matured_slashes(other) == 6 * TOKEN  # then anyone may settle it
    assert contracts.staking.reward_pool() == 6 * TOKEN and contracts.staking.slashes_held() == 0
    assert contracts.token.balance_of(node.address) == 0
    assert contracts.token.total_supply() == SUPPLY


def test_stake_with_a_locally_signed_permit_needs_one_transaction(chain, contracts, treasury, other):
    contracts.token.transfer(treasury, other.address, 5 * TOKEN)
    nonce = chain.nonce(other.address)

    contracts.staking.stake_with_permit(other, StakeRole.AGENT, 5 * TOKEN,
                                        deadline=chain.head().timestamp + 3600)

    assert chain.nonce(other.address) == nonce + 1
    assert contracts.staking.stake_of(other.address, StakeRole.AGENT) == 5 * TOKEN


def test_registry_records_datanet_versions_models_and_fee_policy(contracts, node, other):
    datanet = keccak(text="datanet:medical-qa")
    root = keccak(text="root-v1")
    contracts.registry.register_datanet(node, datanet, other.address, "medical-qa",
                                        keccak(text="meta"), "CC-BY-4.0")
    contracts.registry.publish_version(node, datanet, 1, root, 12, keccak(text="manifest"))
    model = keccak(text="model:1")
    contracts.registry.register_model(node, model, other.address, "SmolLM2-135M-Instruct",
                                      keccak(text="base"), keccak(text="adapter"), [root],
                                      keccak(text="config"), keccak(text="metrics"))
    contracts.registry.set_fee_policy(node, model, FeePolicy(500, 4000, 4500, 1000))

    with pytest.raises(ChainError) as skipped:
        contracts.registry.publish_version(node, datanet, 3, root, 1, keccak(text="m"))
    with pytest.raises(ChainError) as unknown:
        contracts.registry.get_datanet(keccak(text="nope"))
    with pytest.raises(ChainError) as bad_id:
        contracts.registry.get_datanet("0x1234")

    record = contracts.registry.get_datanet(datanet)
    assert (record.owner, record.name, record.licence, record.latest_version) == (
        other.address, "medical-qa", "CC-BY-4.0", 1)
    version = contracts.registry.get_version("0x" + datanet.hex(), 1)
    assert (version.root, version.count) == ("0x" + root.hex(), 12)
    assert contracts.registry.root_publication(root) == ("0x" + datanet.hex(), 1)
    assert contracts.registry.get_model(model).datanet_version_roots == ("0x" + root.hex(),)
    assert contracts.registry.fee_policy(model).total == 10_000
    assert skipped.value.reason.startswith("NonSequentialVersion(")
    assert skipped.value.error_args["expected"] == 2
    assert unknown.value.error_name == "UnknownDatanet" and unknown.value.status == 404
    assert bad_id.value.field == "datanet_id"


def _leaf(address: str, amount: int) -> bytes:
    return keccak(keccak(encode(["address", "uint256"], [address, amount])))


def test_settled_epoch_pays_out_by_proof_once_and_never_above_the_signed_cap(
    chain, contracts, node, other, treasury
):
    consumer, contributor = other, Account.from_key(keccak(text="settlement-clients:contributor"))
    contracts.token.transfer(treasury, consumer.address, 50 * TOKEN)
    contracts.escrow.deposit(consumer, 50 * TOKEN)
    deadline = chain.head().timestamp + 3600
    cap = 20 * TOKEN
    contracts.escrow.set_spending_caps_with_sig(node, [
        contracts.escrow.sign_spending_cap(consumer, node.address, cap, 1, deadline)])
    payouts = [(contributor.address, 12 * TOKEN), (node.address, 3 * TOKEN)]
    leaves = [_leaf(a, v) for a, v in payouts]
    root = keccak(b"".join(sorted(leaves)))
    first, second = epoch_id(node.address, 1), epoch_id(node.address, 2)  # the node's own epochs 1 and 2

    with pytest.raises(ChainError) as over_cap:
        contracts.escrow.settle(node, first, 0, [Debit(consumer.address, 21 * TOKEN)])
    contracts.escrow.settle(node, first, 0, [Debit(consumer.address, 15 * TOKEN)])
    contracts.distributor.post_root(node, first, root, 15 * TOKEN)
    contracts.distributor.claim(node, first, contributor.address, 12 * TOKEN, [leaves[1]])
    with pytest.raises(ChainError) as twice:
        contracts.distributor.claim(node, first, contributor.address, 12 * TOKEN, [leaves[1]])

    assert over_cap.value.error_name == "CapExceeded"
    assert contracts.escrow.balance_of(consumer.address) == 35 * TOKEN
    assert contracts.escrow.spending_cap(consumer.address, node.address).spent == 15 * TOKEN
    assert contracts.token.balance_of(contributor.address) == 12 * TOKEN
    assert contracts.distributor.is_claimed(first, contributor.address)
    assert contracts.distributor.epoch(first).unclaimed == 3 * TOKEN
    assert contracts.distributor.epoch(second) is None
    assert twice.value.error_name == "AlreadyClaimed"


def test_escrow_withdrawal_waits_for_its_delay(chain, contracts, treasury, other):
    contracts.token.transfer(treasury, other.address, 10 * TOKEN)
    contracts.escrow.deposit_with_permit(other, 10 * TOKEN, deadline=chain.head().timestamp + 60)
    contracts.escrow.request_withdrawal(other, 4 * TOKEN)

    with pytest.raises(ChainError) as early:
        contracts.escrow.withdraw(other)
    chain.advance_time(600)
    contracts.escrow.withdraw(other)

    assert early.value.error_name == "WithdrawalNotReady"
    assert contracts.escrow.balance_of(other.address) == 6 * TOKEN
    assert contracts.token.balance_of(other.address) == 4 * TOKEN
