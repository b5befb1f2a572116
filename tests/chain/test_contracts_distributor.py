"""EpochDistributor via its typed client: funded roots pay each leaf once, never past the total."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_contracts_world import BACKENDS, TOKEN, World, open_world, reverts, unauthorised

from ledgerlm.chain import EpochFunding
from ledgerlm.chain.merkle import StandardMerkleTree

ZERO = "0x" + "00" * 20
ZERO32 = b"\x00" * 32
TYPES = ["address", "uint256"]


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def payees(world, *amounts: int) -> list[tuple[str, int]]:
    return [(world.actor().address, amount) for amount in amounts]


def test_funding_pulls_the_total_and_records_the_root(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    tree = StandardMerkleTree.of([[world.actor().address, 5 * TOKEN]], TYPES)
    epoch = world.fresh_epoch()
    token.mint(world.node, world.node.address, 5 * TOKEN)
    held = token.balance_of(distributor.address)

    result = distributor.fund_epoch(world.node, epoch, tree.root, 5 * TOKEN)

    assert distributor.epoch(epoch) == EpochFunding(epoch, tree.root, 5 * TOKEN, 0)
    assert token.balance_of(distributor.address) == held + 5 * TOKEN
    assert token.balance_of(world.node.address) == 0
    assert result.events(distributor.contract, "EpochFunded") == [{
        "epoch": epoch, "root": bytes.fromhex(tree.root[2:]), "total": 5 * TOKEN,
        "funder": world.node.address}]


def test_an_epoch_is_funded_once_by_a_funder_with_a_root_and_the_tokens(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    stranger = world.actor(3 * TOKEN)
    root = world.fresh_id("root")
    epoch, _ = world.fund_payouts(payees(world, TOKEN))
    fresh = world.fresh_epoch()

    with unauthorised(stranger.address, "FUNDER_ROLE"):
        distributor.fund_epoch(stranger, fresh, root, TOKEN)
    with reverts("EpochAlreadyFunded", epoch=epoch):
        distributor.fund_epoch(world.node, epoch, root, 0)
    with reverts("ZeroRoot"):
        distributor.fund_epoch(world.node, fresh, ZERO32, 0)
    with reverts("ERC20InsufficientBalance"):
        token.approve(world.node, distributor.address, TOKEN)
        distributor.fund_epoch(world.node, fresh, root, TOKEN)
    with reverts("ERC20InsufficientAllowance"):
        token.mint(world.node, world.node.address, TOKEN)
        world.chain.transact(distributor.contract.functions.fundEpoch(fresh, root, 2 * TOKEN),
                             world.node)

    assert distributor.epoch(fresh) is None
    assert token.balance_of(stranger.address) == 3 * TOKEN


def test_anyone_can_submit_a_claim_and_the_account_in_the_leaf_is_paid(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = payees(world, 3 * TOKEN, 2 * TOKEN, 1)
    epoch, tree = world.fund_payouts(payouts)
    relayer = world.actor()

    receipts = [distributor.claim(relayer, epoch, account, amount, tree.proof(i))
                for i, (account, amount) in enumerate(payouts)]

    assert [token.balance_of(a) for a, _ in payouts] == [3 * TOKEN, 2 * TOKEN, 1]
    assert token.balance_of(relayer.address) == 0
    assert all(distributor.is_claimed(epoch, a) for a, _ in payouts)
    assert distributor.epoch(epoch).unclaimed == 0
    assert receipts[0].events(distributor.contract, "Claimed") == [
        {"epoch": epoch, "account": payouts[0][0], "amount": 3 * TOKEN}]


def test_a_leaf_is_claimed_only_once(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = payees(world, 4 * TOKEN, TOKEN)
    epoch, tree = world.fund_payouts(payouts)
    account, amount = payouts[0]
    distributor.claim(world.node, epoch, account, amount, tree.proof(0))

    with reverts("AlreadyClaimed", epoch=epoch, account=account):
        distributor.claim(world.node, epoch, account, amount, tree.proof(0))

    assert token.balance_of(account) == 4 * TOKEN
    assert distributor.epoch(epoch).claimed == 4 * TOKEN


def test_claims_with_the_wrong_amount_account_proof_or_epoch_are_refused(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = payees(world, 4 * TOKEN, TOKEN, 2 * TOKEN)
    epoch, tree = world.fund_payouts(payouts)
    other_epoch, other_tree = world.fund_payouts(payees(world, 9 * TOKEN))
    (alice, amount), (bob, _), _ = payouts
    proof = tree.proof(0)
    unfunded = world.fresh_epoch()

    with reverts("InvalidProof", epoch=epoch, account=alice, amount=amount + 1):
        distributor.claim(world.node, epoch, alice, amount + 1, proof)
    with reverts("InvalidProof", account=bob):
        distributor.claim(world.node, epoch, bob, amount, proof)  # someone else's leaf
    with reverts("InvalidProof"):
        distributor.claim(world.node, epoch, alice, amount, tree.proof(1))
    with reverts("InvalidProof"):
        distributor.claim(world.node, epoch, alice, amount, [])
    with reverts("InvalidProof", epoch=other_epoch):
        distributor.claim(world.node, other_epoch, alice, amount, proof)
    with reverts("InvalidProof"):
        distributor.claim(world.node, epoch, alice, amount, other_tree.proof(0))
    with reverts("UnknownEpoch", epoch=unfunded):
        distributor.claim(world.node, unfunded, alice, amount, proof)

    assert token.balance_of(alice) == 0
    assert not distributor.is_claimed(epoch, alice)
    distributor.claim(world.node, epoch, alice, amount, proof)
    assert token.balance_of(alice) == amount


def test_an_underfunded_epoch_never_pays_out_more_than_its_total(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = payees(world, 5 * TOKEN, 4 * TOKEN, 3 * TOKEN)
    epoch, tree = world.fund_payouts(payouts, total=10 * TOKEN)  # leaves promise 12
    held = token.balance_of(distributor.address)

    distributor.claim(world.node, epoch, *payouts[0], tree.proof(0))
    distributor.claim(world.node, epoch, *payouts[1], tree.proof(1))
    with reverts("EpochOverclaimed", epoch=epoch, remaining=TOKEN, amount=3 * TOKEN):
        distributor.claim(world.node, epoch, *payouts[2], tree.proof(2))

    assert distributor.epoch(epoch) == EpochFunding(epoch, tree.root, 10 * TOKEN, 9 * TOKEN)
    assert token.balance_of(distributor.address) == held - 9 * TOKEN
    assert not distributor.is_claimed(epoch, payouts[2][0])


def test_unclaimed_rewards_stay_claimable_after_later_epochs_and_time(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = payees(world, 2 * TOKEN, TOKEN)
    old_epoch, old_tree = world.fund_payouts(payouts)
    new_epoch, new_tree = world.fund_payouts([(payouts[0][0], 7 * TOKEN)])
    world.chain.advance_time(400 * 24 * 3600)

    distributor.claim(world.node, new_epoch, payouts[0][0], 7 * TOKEN, new_tree.proof(0))
    distributor.claim(world.node, old_epoch, *payouts[0], old_tree.proof(0))

    assert token.balance_of(payouts[0][0]) == 9 * TOKEN
    assert distributor.epoch(old_epoch).unclaimed == TOKEN
    assert not distributor.is_claimed(old_epoch, payouts[1][0])


def test_a_leaf_for_the_zero_address_cannot_burn_funds(world):
    distributor = world.contracts.distributor
    epoch, tree = world.fund_payouts([(ZERO, TOKEN), (world.actor().address, TOKEN)])

    with reverts("ERC20InvalidReceiver", receiver=ZERO):
        distributor.claim(world.node, epoch, ZERO, TOKEN, tree.proof(0))

    assert distributor.epoch(epoch).claimed == 0


def test_the_distributor_refuses_zero_addresses_at_deployment(world):
    with reverts("ZeroAddress"):
        world.chain.deploy("EpochDistributor", ZERO, world.admin.address, sender=world.admin)
    with reverts("ZeroAddress"):
        world.chain.deploy("EpochDistributor", world.contracts.token.address, ZERO,
                           sender=world.admin)
