"""Staking via its typed client: stake leaves only by its owner's cooldown or a capped slash, once per
recorded validation outcome, into the validators' reward pool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from test_contracts_world import BACKENDS, COOLDOWN, TOKEN, World, open_world, reverts, unauthorised

from ledgerlm.chain import PendingAmount, StakeRole

ZERO = "0x" + "00" * 20
EVIDENCE = b"\x0b" * 32
VALIDATOR, AGENT, BOND = StakeRole.VALIDATOR, StakeRole.AGENT, StakeRole.CONTRIBUTOR_BOND


@contextmanager
def paused(world):
    """Pause staking for the block, always lifting it so the module's other tests are unaffected."""
    world.contracts.staking.pause(world.admin)
    try:
        yield
    finally:
        world.contracts.staking.unpause(world.admin)


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def test_a_stake_moves_tokens_into_the_bond_of_that_role(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker = world.actor(10 * TOKEN)
    total_before = staking.total_staked(AGENT)

    result = staking.stake(staker, AGENT, 6 * TOKEN)
    staking.stake(staker, AGENT, TOKEN)

    assert staking.stake_of(staker.address, AGENT) == 7 * TOKEN
    assert staking.stake_of(staker.address, VALIDATOR) == 0
    assert staking.total_staked(AGENT) == total_before + 7 * TOKEN
    assert token.balance_of(staker.address) == 3 * TOKEN
    assert result.events(staking.contract, "Staked") == [
        {"account": staker.address, "role": AGENT, "amount": 6 * TOKEN, "activeStake": 6 * TOKEN}]


def test_a_stake_needs_an_amount_a_known_role_and_the_tokens(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker = world.actor(2 * TOKEN)

    with reverts("ZeroAmount"):
        staking.stake(staker, VALIDATOR, 0)
    with reverts("UnknownRole", role=4):
        world.chain.transact(staking.contract.functions.stake(4, TOKEN), staker)
    with reverts("ERC20InsufficientAllowance"):
        world.chain.transact(staking.contract.functions.stake(int(VALIDATOR), TOKEN), staker)
    with reverts("ERC20InsufficientBalance", balance=2 * TOKEN, needed=3 * TOKEN):
        staking.stake(staker, VALIDATOR, 3 * TOKEN)

    assert staking.stake_of(staker.address, VALIDATOR) == 0
    assert token.balance_of(staker.address) == 2 * TOKEN


def test_stake_with_permit_takes_one_transaction(world):
    staking = world.contracts.staking
    staker = world.actor(5 * TOKEN)

    staking.stake_with_permit(staker, BOND, 5 * TOKEN, deadline=world.now() + 3600)

    assert world.chain.nonce(staker.address) == 1
    assert staking.stake_of(staker.address, BOND) == 5 * TOKEN


def test_a_bad_or_front_run_permit_neither_blocks_nor_forges_a_stake(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker, relayer, forger = world.actor(4 * TOKEN), world.actor(), world.actor()
    deadline = world.now() + 3600
    permit = token.sign_permit(staker, staking.address, 2 * TOKEN, deadline)
    forged = token.sign_permit(forger, staking.address, 2 * TOKEN, deadline)

    with reverts("ERC20InsufficientAllowance"):  # a forged permit is ignored, so no allowance
        world.chain.transact(staking.contract.functions.stakeWithPermit(
            int(VALIDATOR), 2 * TOKEN, deadline, forged.v, forged.r, forged.s), staker)
    token.permit(relayer, permit)  # someone submits the permit first
    world.chain.transact(staking.contract.functions.stakeWithPermit(
        int(VALIDATOR), 2 * TOKEN, deadline, permit.v, permit.r, permit.s), staker)

    assert staking.stake_of(staker.address, VALIDATOR) == 2 * TOKEN
    assert staking.stake_of(forger.address, VALIDATOR) == 0


def test_unstaking_moves_active_stake_to_pending_and_restarts_the_cooldown(world):
    staking = world.contracts.staking
    staker = world.actor(10 * TOKEN)
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    total_before = staking.total_staked(VALIDATOR)

    first = staking.request_unstake(staker, VALIDATOR, 3 * TOKEN)
    world.chain.advance_time(COOLDOWN // 2)
    second = staking.request_unstake(staker, VALIDATOR, 2 * TOKEN)

    second_time = world.chain.w3.eth.get_block(second.block_number)["timestamp"]
    assert staking.stake_of(staker.address, VALIDATOR) == 5 * TOKEN
    assert staking.pending_of(staker.address, VALIDATOR) == PendingAmount(
        5 * TOKEN, second_time + COOLDOWN)
    assert staking.total_staked(VALIDATOR) == total_before - 5 * TOKEN
    assert first.events(staking.contract, "UnstakeRequested")[0]["pendingTotal"] == 3 * TOKEN
    assert second.events(staking.contract, "UnstakeRequested")[0]["pendingTotal"] == 5 * TOKEN


def test_unstaking_needs_an_amount_within_the_active_stake(world):
    staking = world.contracts.staking
    staker = world.actor(4 * TOKEN)
    staking.stake(staker, VALIDATOR, 4 * TOKEN)

    with reverts("ZeroAmount"):
        staking.request_unstake(staker, VALIDATOR, 0)
    with reverts("InsufficientStake", available=4 * TOKEN, requested=5 * TOKEN):
        staking.request_unstake(staker, VALIDATOR, 5 * TOKEN)
    with reverts("InsufficientStake", available=0, requested=TOKEN):
        staking.request_unstake(staker, AGENT, TOKEN)  # stake is per role
    with reverts("UnknownRole", role=7):
        world.chain.transact(staking.contract.functions.requestUnstake(7, TOKEN), staker)

    assert staking.stake_of(staker.address, VALIDATOR) == 4 * TOKEN


def test_withdraw_pays_pending_stake_only_after_the_cooldown(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker = world.actor(6 * TOKEN)
    staking.stake(staker, VALIDATOR, 6 * TOKEN)

    with reverts("NothingToWithdraw"):
        staking.withdraw(staker, VALIDATOR)
    staking.request_unstake(staker, VALIDATOR, 4 * TOKEN)
    release_at = staking.pending_of(staker.address, VALIDATOR).available_at
    with reverts("CooldownNotElapsed", releaseAt=release_at):
        staking.withdraw(staker, VALIDATOR)
    world.chain.advance_time(COOLDOWN)
    result = staking.withdraw(staker, VALIDATOR)
    with reverts("NothingToWithdraw"):
        staking.withdraw(staker, VALIDATOR)

    assert token.balance_of(staker.address) == 4 * TOKEN
    assert staking.stake_of(staker.address, VALIDATOR) == 2 * TOKEN
    assert staking.pending_of(staker.address, VALIDATOR) == PendingAmount(0, 0)
    assert result.events(staking.contract, "Withdrawn") == [
        {"account": staker.address, "role": VALIDATOR, "amount": 4 * TOKEN}]


def recorded_round(world) -> int:
    """A fresh validation round whose outcome the node recorded on chain."""
    round_id = world.fresh_epoch()
    world.contracts.staking.record_outcome(world.node, round_id, EVIDENCE)
    return round_id


def test_a_slash_takes_active_stake_first_then_pending_into_the_reward_pool(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker = world.actor(10 * TOKEN)
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    staking.request_unstake(staker, VALIDATOR, 9 * TOKEN + TOKEN // 2)
    pool_before, node_before = staking.reward_pool(), token.balance_of(world.node.address)
    total_before = staking.total_staked(VALIDATOR)
    round_id = recorded_round(world)

    result = staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)

    assert staking.stake_of(staker.address, VALIDATOR) == 0
    assert staking.pending_of(staker.address, VALIDATOR).amount == 9 * TOKEN
    assert staking.total_staked(VALIDATOR) == total_before - TOKEN // 2
    assert staking.reward_pool() == pool_before + TOKEN
    assert token.balance_of(world.node.address) == node_before  # the slasher gains nothing
    assert result.events(staking.contract, "Slashed") == [{
        "account": staker.address, "role": VALIDATOR, "roundId": round_id, "amount": TOKEN,
        "fromActive": TOKEN // 2, "fromPending": TOKEN // 2, "evidenceHash": EVIDENCE}]


def test_a_slash_needs_a_recorded_outcome_and_happens_once_per_round(world):
    staking = world.contracts.staking
    staker = world.actor(20 * TOKEN)
    staking.stake(staker, VALIDATOR, 20 * TOKEN)
    unrecorded = world.fresh_epoch()

    with reverts("UnknownOutcome", roundId=unrecorded):
        staking.slash(world.node, unrecorded, staker.address, VALIDATOR, TOKEN)
    round_id = recorded_round(world)
    with reverts("OutcomeAlreadyRecorded", roundId=round_id):
        staking.record_outcome(world.node, round_id, b"\x0c" * 32)  # evidence cannot be rewritten
    with reverts("ZeroEvidence"):
        staking.record_outcome(world.node, world.fresh_epoch(), b"\x00" * 32)
    staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)
    with reverts("AlreadySlashed", roundId=round_id, account=staker.address, role=VALIDATOR):
        staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)

    assert staking.outcome(round_id) == "0x" + EVIDENCE.hex()
    assert staking.is_slashed(round_id, staker.address, VALIDATOR)
    assert staking.stake_of(staker.address, VALIDATOR) == 19 * TOKEN


def test_a_slash_is_capped_per_round_and_needs_an_amount_and_a_known_role(world):
    staking = world.contracts.staking
    staker = world.actor(5 * TOKEN)
    staking.stake(staker, BOND, 5 * TOKEN)
    staking.request_unstake(staker, BOND, 2 * TOKEN)
    round_id = recorded_round(world)
    cap = 5 * TOKEN * staking.slash_cap_bps() // 10_000

    with reverts("SlashAboveCap", roundId=round_id, account=staker.address, amount=cap + 1, cap=cap):
        staking.slash(world.node, round_id, staker.address, BOND, cap + 1)
    with reverts("ZeroAmount"):
        staking.slash(world.node, round_id, staker.address, BOND, 0)
    with reverts("SlashAboveCap", roundId=round_id, account=staker.address, amount=TOKEN, cap=0):
        staking.slash(world.node, round_id, staker.address, AGENT, TOKEN)
    with reverts("UnknownRole", role=4):
        world.chain.transact(staking.contract.functions.slash(round_id, staker.address, 4, TOKEN), world.node)

    assert staking.stake_of(staker.address, BOND) == 3 * TOKEN
    assert staking.pending_of(staker.address, BOND).amount == 2 * TOKEN


def test_only_the_slasher_role_can_record_or_slash(world):
    staking = world.contracts.staking
    staker, attacker = world.actor(3 * TOKEN), world.actor()
    staking.stake(staker, VALIDATOR, 3 * TOKEN)
    round_id = recorded_round(world)

    for sender in (attacker, staker, world.admin):  # not even the admin, who lacks SLASHER_ROLE
        with unauthorised(sender.address, "SLASHER_ROLE"):
            staking.slash(sender, round_id, staker.address, VALIDATOR, TOKEN // 10)
        with unauthorised(sender.address, "SLASHER_ROLE"):
            staking.record_outcome(sender, world.fresh_epoch(), EVIDENCE)

    assert staking.stake_of(staker.address, VALIDATOR) == 3 * TOKEN


def test_the_reward_pool_leaves_only_into_a_distributor_epoch_once(world):
    staking, distributor = world.contracts.staking, world.contracts.distributor
    staker = world.actor(10 * TOKEN)
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    staking.slash(world.node, recorded_round(world), staker.address, VALIDATOR, TOKEN)
    pool = staking.reward_pool()
    epoch = world.fresh_epoch()

    with unauthorised(world.admin.address, "REWARDS_ROLE"):
        staking.release_rewards(world.admin, epoch, TOKEN)
    with reverts("InsufficientRewardPool", pool=pool, amount=pool + 1):
        staking.release_rewards(world.node, epoch, pool + 1)
    released = staking.release_rewards(world.node, epoch, TOKEN)
    with reverts("RewardsAlreadyReleased", epoch=epoch):
        staking.release_rewards(world.node, epoch, 1)

    assert staking.reward_pool() == pool - TOKEN
    assert distributor.epoch(epoch).total == TOKEN
    assert released.events(staking.contract, "RewardsReleased") == [
        {"epoch": epoch, "amount": TOKEN, "poolLeft": pool - TOKEN}]


def test_a_slash_of_pending_stake_leaves_only_the_rest_to_withdraw(world):
    staking = world.contracts.staking
    staker = world.actor(10 * TOKEN)
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    staking.request_unstake(staker, VALIDATOR, 10 * TOKEN)
    staking.slash(world.node, recorded_round(world), staker.address, VALIDATOR, TOKEN)
    world.chain.advance_time(COOLDOWN)

    staking.withdraw(staker, VALIDATOR)
    assert world.contracts.token.balance_of(staker.address) == 9 * TOKEN
    assert staking.pending_of(staker.address, VALIDATOR) == PendingAmount(0, 0)


def test_pausing_stops_new_stakes_and_unstakes_but_not_withdrawals_or_slashes(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker = world.actor(6 * TOKEN)
    staking.stake(staker, VALIDATOR, 4 * TOKEN)
    staking.request_unstake(staker, VALIDATOR, 2 * TOKEN)
    world.chain.advance_time(COOLDOWN)
    token.approve(staker, staking.address, 2 * TOKEN)

    with paused(world):
        assert staking.paused()
        with reverts("EnforcedPause"):
            staking.stake(staker, VALIDATOR, TOKEN)
        with reverts("EnforcedPause"):
            staking.stake_with_permit(staker, VALIDATOR, TOKEN, deadline=world.now() + 60)
        with reverts("EnforcedPause"):
            staking.request_unstake(staker, VALIDATOR, TOKEN)
        with reverts("EnforcedPause"):
            staking.pause(world.admin)
        staking.withdraw(staker, VALIDATOR)
        staking.slash(world.node, recorded_round(world), staker.address, VALIDATOR, TOKEN // 10)

    assert not staking.paused()
    staking.stake(staker, VALIDATOR, TOKEN)
    assert staking.stake_of(staker.address, VALIDATOR) == 3 * TOKEN - TOKEN // 10
    assert token.balance_of(staker.address) == 3 * TOKEN


def test_only_the_admin_pauses_and_unpause_needs_a_pause(world):
    staking = world.contracts.staking

    with unauthorised(world.node.address, "DEFAULT_ADMIN_ROLE"):
        staking.pause(world.node)
    with reverts("ExpectedPause"):
        staking.unpause(world.admin)
    with paused(world), unauthorised(world.node.address, "DEFAULT_ADMIN_ROLE"):
        staking.unpause(world.node)

    assert not staking.paused()


def test_views_refuse_unknown_roles_and_report_settings(world):
    staking = world.contracts.staking
    staker = world.actor()

    for view in ("stakeOf", "pendingOf"):
        with reverts("UnknownRole", role=4):
            world.chain.call(staking.contract.functions[view](staker.address, 4))
    with reverts("UnknownRole", role=255):
        world.chain.call(staking.contract.functions.totalStaked(255))

    assert staking.cooldown_seconds() == COOLDOWN
    assert staking.slash_cap_bps() == 1_000
    assert world.chain.call(staking.contract.functions.distributor()) == world.contracts.distributor.address
    assert world.chain.call(staking.contract.functions.token()) == world.contracts.token.address


@pytest.mark.parametrize("zero", ["token", "distributor", "admin"])
def test_staking_refuses_zero_addresses_and_a_bad_cap_at_deployment(world, zero):
    args = {"token": world.contracts.token.address, "admin": world.admin.address,
            "distributor": world.contracts.distributor.address}
    with reverts("ZeroAddress"):
        world.chain.deploy("Staking", *({**args, zero: ZERO}[k] for k in ("token", "distributor", "admin")),
                           COOLDOWN, 1000, sender=world.admin)
    for cap in (0, 10_001):
        with reverts("InvalidSlashCap", slashCapBps=cap):
            world.chain.deploy("Staking", args["token"], args["distributor"], args["admin"], COOLDOWN, cap,
                               sender=world.admin)
