"""Staking via its typed client: stake leaves only by its owner's cooldown or a capped slash, once per
recorded validation outcome and within the bond's slash window, held for the admin to revoke before it
can join the validators' reward pool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from test_contracts_world import (
    BACKENDS,
    COOLDOWN,
    PAYOUT_TYPES,
    TOKEN,
    World,
    open_world,
    reverts,
    unauthorised,
)

from ledgerlm.chain import ChainError, HeldSlash, PendingAmount, SlashState, StakeRole, StandardMerkleTree

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


def cooling(world, role, bond: int, unstaking: int):
    """A fresh staker with `bond` staked under `role`, `unstaking` of it cooling down."""
    staker = world.actor(bond)
    world.contracts.staking.stake(staker, role, bond)
    world.contracts.staking.request_unstake(staker, role, unstaking)
    return staker


def recorded_round(world) -> int:
    """A fresh validation round whose outcome the node recorded on chain."""
    round_id = world.fresh_epoch()
    world.contracts.staking.record_outcome(world.node, round_id, EVIDENCE)
    return round_id


def test_a_slash_takes_active_stake_first_then_pending_into_a_held_slash(world):
    staking, token = world.contracts.staking, world.contracts.token
    staker = world.actor(10 * TOKEN)
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    staking.request_unstake(staker, VALIDATOR, 9 * TOKEN + TOKEN // 2)
    pool_before, held_before = staking.reward_pool(), staking.slashes_held()
    node_before, total_before = token.balance_of(world.node.address), staking.total_staked(VALIDATOR)
    round_id = recorded_round(world)
    slash_id = staking.slash_count()

    result = staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)

    matures_at = world.chain.w3.eth.get_block(result.block_number)["timestamp"] + staking.slash_dispute_seconds()
    assert staking.stake_of(staker.address, VALIDATOR) == 0
    assert staking.pending_of(staker.address, VALIDATOR).amount == 9 * TOKEN
    assert staking.total_staked(VALIDATOR) == total_before - TOKEN // 2
    assert staking.slashes_held() == held_before + TOKEN
    assert staking.reward_pool() == pool_before  # nothing is spendable before the dispute time has passed
    assert token.balance_of(world.node.address) == node_before  # the slasher gains nothing
    assert staking.held_slash(slash_id) == HeldSlash(slash_id, staker.address, VALIDATOR, round_id, TOKEN,
                                                     matures_at, SlashState.HELD)
    assert result.events(staking.contract, "Slashed") == [{
        "account": staker.address, "role": VALIDATOR, "roundId": round_id, "slashId": slash_id, "amount": TOKEN,
        "fromActive": TOKEN // 2, "fromPending": TOKEN // 2, "evidenceHash": EVIDENCE, "maturesAt": matures_at}]


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
    staker = cooling(world, BOND, 5 * TOKEN, 2 * TOKEN)
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


def test_a_slasher_records_and_slashes_only_under_its_own_outcome_ids(world):
    """Two nodes share these contracts, each with SLASHER_ROLE: one recording the other's next id with its published
    evidence and slashing 1 wei under it used up that round for the stake it meant to slash."""
    staking = world.contracts.staking
    other = world.actor()
    staking.grant_role(world.admin, "SLASHER_ROLE", other.address)
    staker = world.actor(20 * TOKEN)
    staking.stake(staker, VALIDATOR, 20 * TOKEN)
    mine, recorded = world.fresh_epoch(), recorded_round(world)

    with reverts("ForeignOutcome", roundId=mine, caller=other.address):
        staking.record_outcome(other, mine, EVIDENCE)
    with reverts("ForeignOutcome", roundId=recorded, caller=other.address):
        staking.slash(other, recorded, staker.address, VALIDATOR, 1)
    theirs = world.fresh_epoch(other)
    staking.record_outcome(other, theirs, EVIDENCE)
    staking.slash(other, theirs, staker.address, VALIDATOR, 1)

    assert staking.outcome_node(mine) == world.node.address and staking.outcome_node(theirs) == other.address
    assert staking.outcome(mine) is None and not staking.is_slashed(recorded, staker.address, VALIDATOR)


def test_the_reward_pool_leaves_only_into_a_distributor_epoch_once(world):
    staking, distributor = world.contracts.staking, world.contracts.distributor
    staker = world.actor(10 * TOKEN)
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    slash_id = staking.slash_count()
    staking.slash(world.node, recorded_round(world), staker.address, VALIDATOR, TOKEN)
    world.chain.advance_time(staking.slash_dispute_seconds())
    staking.settle_slash(world.node, slash_id)
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


def test_the_hot_key_releases_at_most_the_admins_limit_of_the_pool_per_day(world):
    """The key that releases the pool also posts the root naming who is paid: a stolen one takes at most the
    day's limit, which only the admin sets."""
    staking = world.contracts.staking
    staker = world.actor(100 * TOKEN)
    staking.stake(staker, VALIDATOR, 100 * TOKEN)
    slash_id = staking.slash_count()
    staking.slash(world.node, recorded_round(world), staker.address, VALIDATOR, 10 * TOKEN)
    world.chain.advance_time(staking.slash_dispute_seconds())
    staking.settle_slash(world.node, slash_id)
    pool = staking.reward_pool()
    with unauthorised(world.node.address, "DEFAULT_ADMIN_ROLE"):
        staking.set_reward_release_limit(world.node, pool)
    staking.set_reward_release_limit(world.admin, 3 * TOKEN)
    assert staking.reward_release_limit() == 3 * TOKEN and staking.releasable() == 3 * TOKEN

    staking.release_rewards(world.node, world.fresh_epoch(), 2 * TOKEN)
    assert staking.releasable() == TOKEN
    with reverts("ReleaseAboveLimit", left=TOKEN, amount=2 * TOKEN):
        staking.release_rewards(world.node, world.fresh_epoch(), 2 * TOKEN)
    staking.release_rewards(world.node, world.fresh_epoch(), TOKEN)
    assert staking.releasable() == 0
    world.chain.advance_time(24 * 3600)  # the next day's window
    assert staking.releasable() == 3 * TOKEN
    staking.release_rewards(world.node, world.fresh_epoch(), 3 * TOKEN)
    assert staking.reward_pool() == pool - 6 * TOKEN


def test_a_slash_of_pending_stake_leaves_only_the_rest_to_withdraw(world):
    staking = world.contracts.staking
    staker = cooling(world, VALIDATOR, 10 * TOKEN, 10 * TOKEN)
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
    assert staking.slash_window_seconds() == 24 * 3600  # the cooldown, but never less than a day
    assert staking.slash_dispute_seconds() == 3 * 24 * 3600
    with reverts("UnknownSlash", slashId=staking.slash_count()):
        staking.held_slash(staking.slash_count())
    with reverts("UnknownRole", role=4):
        world.chain.call(staking.contract.functions.slashable(staker.address, 4))
    assert world.chain.call(staking.contract.functions.distributor()) == world.contracts.distributor.address
    assert world.chain.call(staking.contract.functions.token()) == world.contracts.token.address


@pytest.mark.parametrize("zero", ["token", "distributor", "admin"])
def test_staking_refuses_zero_addresses_a_bad_cap_and_a_short_dispute_time_at_deployment(world, zero):
    args = {"token": world.contracts.token.address, "admin": world.admin.address,
            "distributor": world.contracts.distributor.address}
    with reverts("ZeroAddress"):
        world.chain.deploy("Staking", *({**args, zero: ZERO}[k] for k in ("token", "distributor", "admin")),
                           COOLDOWN, 1000, 3600, 10**24, sender=world.admin)
    for cap in (0, 10_001):
        with reverts("InvalidSlashCap", slashCapBps=cap):
            world.chain.deploy("Staking", args["token"], args["distributor"], args["admin"], COOLDOWN, cap, 3600,
                               10**24, sender=world.admin)
    for dispute in (0, 3599):  # a slash the admin has no time to look at could be paid out at once
        with reverts("InvalidSlashDispute", slashDisputeSeconds=dispute):
            world.chain.deploy("Staking", args["token"], args["distributor"], args["admin"], COOLDOWN, 1000, dispute,
                               10**24, sender=world.admin)


def test_made_up_outcomes_take_at_most_one_cap_per_window_and_nothing_reaches_the_node(world):
    """A stolen hot key records outcome after outcome and slashes 10% of what is left each time, then tries to pay
    the pool into its own epoch: the window stops it after the first slash, the staker leaves within a cooldown,
    and the one slash it made is held where the node cannot spend it."""
    staking, token = world.contracts.staking, world.contracts.token
    victim = world.actor(100 * TOKEN)
    staking.stake(victim, VALIDATOR, 100 * TOKEN)
    node_before, pool_before = token.balance_of(world.node.address), staking.reward_pool()
    cap = 100 * TOKEN * staking.slash_cap_bps() // 10_000

    refused = []
    for _ in range(40):
        round_id = recorded_round(world)
        bond = staking.stake_of(victim.address, VALIDATOR) + staking.pending_of(victim.address, VALIDATOR).amount
        try:
            staking.slash(world.node, round_id, victim.address, VALIDATOR, bond * staking.slash_cap_bps() // 10_000)
        except ChainError as exc:
            refused.append(exc.error_name)
        if len(refused) == 1:  # the staker sees the slashes and leaves
            staking.request_unstake(victim, VALIDATOR, staking.stake_of(victim.address, VALIDATOR))

    assert refused == ["SlashAboveWindowCap"] * 39
    assert staking.slashable(victim.address, VALIDATOR) == 0
    with reverts("InsufficientRewardPool", pool=pool_before, amount=pool_before + cap):
        staking.release_rewards(world.node, world.fresh_epoch(), pool_before + cap)
    world.chain.advance_time(COOLDOWN)
    staking.withdraw(victim, VALIDATOR)
    assert token.balance_of(victim.address) == 100 * TOKEN - cap
    assert token.balance_of(world.node.address) == node_before
    assert staking.reward_pool() == pool_before


def test_a_window_caps_the_sum_of_its_slashes_and_the_next_one_starts_afresh(world):
    staking = world.contracts.staking
    staker = world.actor(100 * TOKEN)
    staking.stake(staker, BOND, 100 * TOKEN)
    first = staking.slash(world.node, recorded_round(world), staker.address, BOND, 6 * TOKEN)
    started = world.chain.w3.eth.get_block(first.block_number)["timestamp"]
    ends_at = started + staking.slash_window_seconds()

    assert staking.slashable(staker.address, BOND) == 4 * TOKEN  # 10 of the 100 the window started with, less 6
    with reverts("SlashAboveWindowCap", account=staker.address, role=BOND, amount=4 * TOKEN + 1, left=4 * TOKEN,
                 windowEndsAt=ends_at):
        staking.slash(world.node, recorded_round(world), staker.address, BOND, 4 * TOKEN + 1)
    staking.slash(world.node, recorded_round(world), staker.address, BOND, 4 * TOKEN)
    assert world.chain.call(staking.contract.functions.slashWindow(staker.address, int(BOND))) == [
        started, 100 * TOKEN, 10 * TOKEN, ends_at]
    world.chain.advance_time(staking.slash_window_seconds())
    assert staking.slashable(staker.address, BOND) == 9 * TOKEN  # a new window, over the 90 left
    staking.slash(world.node, recorded_round(world), staker.address, BOND, 9 * TOKEN)
    assert staking.stake_of(staker.address, BOND) == 81 * TOKEN


def test_the_admin_revokes_a_held_slash_and_the_stake_comes_back(world):
    staking = world.contracts.staking
    staker = cooling(world, VALIDATOR, 10 * TOKEN, 10 * TOKEN)
    total_before, held_before = staking.total_staked(VALIDATOR), staking.slashes_held()
    round_id = recorded_round(world)
    slash_id = staking.slash_count()
    staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)

    for sender in (world.node, staker):  # the node that slashed cannot undo or redo it, nor can the staker
        with unauthorised(sender.address, "DEFAULT_ADMIN_ROLE"):
            staking.revoke_slash(sender, slash_id)
    result = staking.revoke_slash(world.admin, slash_id)

    assert staking.stake_of(staker.address, VALIDATOR) == TOKEN  # back as active stake
    assert staking.pending_of(staker.address, VALIDATOR).amount == 9 * TOKEN
    assert staking.total_staked(VALIDATOR) == total_before + TOKEN
    assert staking.slashes_held() == held_before
    assert staking.held_slash(slash_id).state == SlashState.REVOKED
    assert result.events(staking.contract, "SlashRevoked") == [{
        "slashId": slash_id, "account": staker.address, "role": VALIDATOR, "roundId": round_id, "amount": TOKEN}]
    with reverts("SlashNotHeld", slashId=slash_id, state=SlashState.REVOKED):
        staking.revoke_slash(world.admin, slash_id)
    with reverts("SlashNotHeld", slashId=slash_id, state=SlashState.REVOKED):
        staking.settle_slash(world.node, slash_id)
    with reverts("AlreadySlashed", roundId=round_id, account=staker.address, role=VALIDATOR):
        staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)
    assert staking.slashable(staker.address, VALIDATOR) == 0  # a revoked slash still counts in its window


def test_a_matured_slash_cannot_be_revoked_and_anyone_settles_it_into_the_pool(world):
    staking = world.contracts.staking
    staker, anyone = world.actor(10 * TOKEN), world.actor()
    staking.stake(staker, VALIDATOR, 10 * TOKEN)
    round_id = recorded_round(world)
    slash_id = staking.slash_count()
    staking.slash(world.node, round_id, staker.address, VALIDATOR, TOKEN)
    matures_at = staking.held_slash(slash_id).matures_at

    with reverts("SlashNotMatured", slashId=slash_id, maturesAt=matures_at):
        staking.settle_slash(anyone, slash_id)
    world.chain.advance_time(staking.slash_dispute_seconds())
    with reverts("SlashMatured", slashId=slash_id, maturesAt=matures_at):
        staking.revoke_slash(world.admin, slash_id)
    pool_before, held_before = staking.reward_pool(), staking.slashes_held()
    result = staking.settle_slash(anyone, slash_id)

    assert staking.reward_pool() == pool_before + TOKEN
    assert staking.slashes_held() == held_before - TOKEN
    assert staking.held_slash(slash_id).state == SlashState.SETTLED
    assert result.events(staking.contract, "SlashSettled") == [{
        "slashId": slash_id, "account": staker.address, "role": VALIDATOR, "roundId": round_id, "amount": TOKEN}]
    with reverts("SlashNotHeld", slashId=slash_id, state=SlashState.SETTLED):
        staking.settle_slash(anyone, slash_id)
    with reverts("UnknownSlash", slashId=staking.slash_count()):
        staking.settle_slash(anyone, staking.slash_count())


def test_matured_slashes_settle_oldest_first_and_pay_validators_through_an_epoch(world):
    staking, distributor, token = world.contracts.staking, world.contracts.distributor, world.contracts.token
    stakers, validator, anyone = [world.actor(20 * TOKEN) for _ in range(2)], world.actor(), world.actor()
    for staker in stakers:
        staking.stake(staker, VALIDATOR, 20 * TOKEN)
    staking.settle_matured_slashes(anyone)  # earlier tests' matured slashes, so what follows is this test's
    revoked, kept = staking.slash_count(), staking.slash_count() + 1
    staking.slash(world.node, recorded_round(world), stakers[0].address, VALIDATOR, TOKEN)
    staking.slash(world.node, recorded_round(world), stakers[1].address, VALIDATOR, 2 * TOKEN)
    staking.revoke_slash(world.admin, revoked)

    nonce = world.chain.nonce(anyone.address)
    assert staking.settle_matured_slashes(anyone) == 0
    assert world.chain.nonce(anyone.address) == nonce  # nothing matured: nothing sent
    world.chain.advance_time(staking.slash_dispute_seconds())
    pool_before = staking.reward_pool()
    moved = staking.settle_matured_slashes(anyone, batch=1)  # one id per transaction, skipping the revoked one

    assert moved >= 2 * TOKEN and staking.reward_pool() == pool_before + moved
    assert staking.held_slash(kept).state == SlashState.SETTLED
    assert staking.held_slash(revoked).state == SlashState.REVOKED
    assert world.chain.call(staking.contract.functions.nextSlashToSettle()) == staking.slash_count()
    epoch = world.fresh_epoch()
    staking.release_rewards(world.node, epoch, 2 * TOKEN)
    tree = StandardMerkleTree.of([[validator.address, 2 * TOKEN]], PAYOUT_TYPES)
    distributor.post_root(world.node, epoch, tree.root, 2 * TOKEN)
    distributor.claim(anyone, epoch, validator.address, 2 * TOKEN, tree.proof(0))
    assert token.balance_of(validator.address) == 2 * TOKEN
