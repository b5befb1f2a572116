"""EpochDistributor via its typed client: epochs funded in parts, a root posted once for the exact total,
each leaf paid once and never past the total, unclaimed funds swept to the treasury after the window."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_contracts_world import BACKENDS, TOKEN, World, open_world, reverts, unauthorised

from ledgerlm.chain import Debit, epoch_id
from ledgerlm.chain.merkle import StandardMerkleTree

ZERO = "0x" + "00" * 20
ZERO32 = b"\x00" * 32
TYPES = ["address", "uint256"]


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def payees(world, *amounts: int) -> list[tuple[str, int]]:
    return [(world.actor().address, amount) for amount in amounts]


def test_an_epoch_is_funded_in_parts_then_its_root_is_posted_once_for_the_exact_total(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    tree = StandardMerkleTree.of([[world.actor().address, 5 * TOKEN]], TYPES)
    epoch = world.fresh_epoch()
    held = token.balance_of(distributor.address)

    first = distributor.fund(world.treasury, epoch, 2 * TOKEN)
    distributor.fund(world.treasury, epoch, 3 * TOKEN)  # a top-up before the root is final
    with reverts("FundingMismatch", epoch=epoch, funded=5 * TOKEN, total=6 * TOKEN):
        distributor.post_root(world.node, epoch, tree.root, 6 * TOKEN)
    posted = distributor.post_root(world.node, epoch, tree.root, 5 * TOKEN)
    with reverts("EpochFinal", epoch=epoch):
        distributor.fund(world.treasury, epoch, TOKEN)
    with reverts("EpochFinal", epoch=epoch):
        distributor.post_root(world.node, epoch, tree.root, 5 * TOKEN)

    funding = distributor.epoch(epoch)
    assert (funding.root, funding.total, funding.claimed, funding.swept) == (tree.root, 5 * TOKEN, 0, False)
    assert token.balance_of(distributor.address) == held + 5 * TOKEN
    assert first.events(distributor.contract, "EpochFunded") == [{
        "epoch": epoch, "amount": 2 * TOKEN, "total": 2 * TOKEN, "funder": world.treasury.address}]
    [event] = posted.events(distributor.contract, "RootPosted")
    assert (event["root"], event["total"], event["poster"]) == (bytes.fromhex(tree.root[2:]), 5 * TOKEN,
                                                               world.node.address)


def test_only_funders_fund_only_posters_post_and_an_empty_epoch_takes_no_number(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    stranger = world.actor(3 * TOKEN)
    root = world.fresh_id("root")
    fresh = world.fresh_epoch()

    with unauthorised(stranger.address, "FUNDER_ROLE"):
        distributor.fund(stranger, fresh, TOKEN)
    with unauthorised(world.node.address, "FUNDER_ROLE"):  # the node funds only through the escrow
        distributor.fund(world.node, fresh, TOKEN)
    with reverts("ZeroAmount"):
        distributor.fund(world.treasury, fresh, 0)
    with reverts("EmptyEpoch", epoch=fresh):
        distributor.post_root(world.node, fresh, root, 0)
    with reverts("ZeroRoot"):
        distributor.post_root(world.node, fresh, ZERO32, 0)
    distributor.fund(world.treasury, fresh, TOKEN)
    with unauthorised(stranger.address, "POSTER_ROLE"):
        distributor.post_root(stranger, fresh, root, TOKEN)

    assert distributor.epoch(fresh).root is None  # still open: a later settlement can finish it
    assert token.balance_of(stranger.address) == 3 * TOKEN


def test_after_the_claim_window_the_sweeper_sends_what_is_unclaimed_to_the_treasury(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = payees(world, 2 * TOKEN, TOKEN)
    epoch, tree = world.fund_payouts(payouts)
    distributor.claim(world.node, epoch, *payouts[0], tree.proof(0))
    sweepable_at = distributor.epoch(epoch).posted_at + distributor.claim_window_seconds()

    with reverts("ClaimWindowOpen", epoch=epoch, sweepableAt=sweepable_at):
        distributor.sweep(world.admin, epoch)
    world.chain.advance_time(distributor.claim_window_seconds() + 1)
    with unauthorised(world.node.address, "SWEEPER_ROLE"):
        distributor.sweep(world.node, epoch)
    treasury_before = token.balance_of(world.treasury.address)
    swept = distributor.sweep(world.admin, epoch)
    with reverts("EpochSwept", epoch=epoch):
        distributor.claim(world.node, epoch, *payouts[1], tree.proof(1))
    with reverts("EpochSwept", epoch=epoch):
        distributor.sweep(world.admin, epoch)

    assert token.balance_of(world.treasury.address) == treasury_before + TOKEN
    assert distributor.epoch(epoch).swept and distributor.epoch(epoch).unclaimed == 0
    assert swept.events(distributor.contract, "Swept") == [
        {"epoch": epoch, "treasury": world.treasury.address, "amount": TOKEN}]


def test_an_epoch_whose_root_never_came_can_be_swept_a_window_after_funding(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    epoch = world.fresh_epoch()
    distributor.fund(world.treasury, epoch, 2 * TOKEN)
    world.chain.advance_time(distributor.claim_window_seconds() + 1)
    before = token.balance_of(world.treasury.address)

    distributor.sweep(world.admin, epoch)
    with reverts("EpochFinal", epoch=epoch):
        distributor.post_root(world.node, epoch, world.fresh_id("late"), 2 * TOKEN)

    assert token.balance_of(world.treasury.address) == before + 2 * TOKEN


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

    funding = distributor.epoch(epoch)
    assert (funding.root, funding.total, funding.claimed) == (tree.root, 10 * TOKEN, 9 * TOKEN)
    assert token.balance_of(distributor.address) == held - 9 * TOKEN
    assert not distributor.is_claimed(epoch, payouts[2][0])


def test_unclaimed_rewards_stay_claimable_after_later_epochs_and_time_until_swept(world):
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
    token, admin, treasury = world.contracts.token.address, world.admin.address, world.treasury.address
    for args in ((ZERO, admin, treasury), (token, ZERO, treasury), (token, admin, ZERO)):
        with reverts("ZeroAddress"):
            world.chain.deploy("EpochDistributor", *args, 3600, sender=world.admin)


def test_each_node_settles_funds_and_posts_only_epochs_of_its_own_so_two_nodes_never_share_one(world):
    """Epoch ids carry their node: two nodes' epoch N are two epochs, and neither can touch the other's."""
    c = world.contracts
    distributor, escrow, staking = c.distributor, c.escrow, c.staking
    other = world.actor()
    for contract, role in ((escrow, "SETTLER_ROLE"), (distributor, "POSTER_ROLE"), (staking, "REWARDS_ROLE")):
        contract.grant_role(world.admin, role, other.address)
    mine = world.fresh_epoch()
    number = mine & (2**64 - 1)
    theirs = epoch_id(other.address, number)
    assert mine != theirs and theirs & (2**64 - 1) == number
    assert distributor._call("epochNode", mine) == world.node.address
    assert distributor._call("epochId", other.address, number) == theirs
    assert distributor._call("epochNode", number) == ZERO  # a bare number belongs to no node
    tree = StandardMerkleTree.of([[world.actor().address, TOKEN]], TYPES)
    distributor.fund(world.treasury, mine, TOKEN)
    distributor.fund(world.treasury, theirs, TOKEN)

    with reverts("ForeignEpoch", epoch=mine, caller=other.address):
        distributor.post_root(other, mine, tree.root, TOKEN)
    with reverts("ForeignEpoch", epoch=number, caller=world.node.address):
        distributor.post_root(world.node, number, tree.root, TOKEN)
    with reverts("ForeignEpoch", epoch=mine, caller=other.address):
        escrow.settle(other, mine, 0, [Debit(world.actor().address, 1)])
    with reverts("ForeignEpoch", epoch=mine, caller=other.address):
        staking.release_rewards(other, mine, 1)
    distributor.post_root(world.node, mine, tree.root, TOKEN)
    distributor.post_root(other, theirs, tree.root, TOKEN)

    assert distributor.epoch(mine).root == distributor.epoch(theirs).root == tree.root
    assert distributor.epoch(mine).total == distributor.epoch(theirs).total == TOKEN
