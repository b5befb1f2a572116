"""Commit–reveal, stake-weighted consensus, clipping, integer rewards, slashing and validator sampling."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlm.validation import consensus as cs
from ledgerlm.validation.errors import ConsensusError, PhaseError, RevealMismatchError

V = [to_checksum_address(f"0x{i:040x}") for i in range(1, 8)]
SALT = bytes(range(32))
TOKEN = 10**18


# --------------------------------------------------------------------------- commit–reveal


def test_commit_hash_is_the_documented_abi_encoding():
    votes = {7: 80, 3: 15}
    expected = keccak(abi_encode(["uint256", "address", "uint256[]", "uint8[]", "bytes32"],
                                 [42, V[0], [3, 7], [15, 80], SALT]))
    assert cs.commit_hash(42, V[0], votes, SALT) == "0x" + expected.hex()
    assert cs.commit_hash(42, V[0].lower(), {3: 15, 7: 80}, SALT) == "0x" + expected.hex()


@pytest.mark.parametrize("change", [
    {"votes": {3: 16, 7: 80}}, {"salt": bytes(32)}, {"round_id": 43}, {"validator": V[1]},
])
def test_a_reveal_that_differs_from_its_commit_is_rejected(change):
    commit = cs.commit_hash(42, V[0], {3: 15, 7: 80}, SALT)
    args = {"round_id": 42, "validator": V[0], "votes": {3: 15, 7: 80}, "salt": SALT}
    assert cs.verify_reveal(commit, **args)
    assert not cs.verify_reveal(commit, **(args | change))


@pytest.mark.parametrize("votes,salt,field", [
    ({1: 101}, SALT, "votes.1"), ({1: -1}, SALT, "votes.1"), ({1: 50.5}, SALT, "votes.1"),
    ({1: 50}, b"short", "salt"),
])
def test_malformed_votes_or_salt_are_refused(votes, salt, field):
    with pytest.raises(ConsensusError) as err:
        cs.commit_hash(1, V[0], votes, salt)
    assert err.value.field == field


def _round(assign=None, stakes=None, **kw) -> cs.Round:
    assign = assign or {1: tuple(V[:3]), 2: tuple(V[:3])}
    stakes = stakes or {v: 100 * TOKEN for v in V}
    return cs.Round(7, assign, stakes, commit_deadline=100, reveal_deadline=200, **kw)


def _committed(rnd: cs.Round, votes_by: dict[str, dict[int, int]]) -> cs.Round:
    commits = {v: cs.check_commit(rnd, v, cs.commit_hash(rnd.round_id, v, votes, SALT), now=50)
               for v, votes in votes_by.items()}
    reveals = {v: cs.Reveal(v, votes, SALT) for v, votes in votes_by.items()}
    return replace(rnd, commits=commits, reveals=reveals)


def test_commit_and_reveal_windows_are_enforced():
    rnd = _round()
    commit = cs.commit_hash(7, V[0], {1: 70, 2: 20}, SALT)
    with pytest.raises(PhaseError, match="commit phase .* closed"):
        cs.check_commit(rnd, V[0], commit, now=101)
    rnd = replace(rnd, commits={V[0]: commit})
    reveal = cs.Reveal(V[0], {1: 70, 2: 20}, SALT)
    with pytest.raises(PhaseError, match="opens after"):
        cs.check_reveal(rnd, reveal, now=100)
    with pytest.raises(PhaseError, match="closed"):
        cs.check_reveal(rnd, reveal, now=201)
    assert cs.check_reveal(rnd, reveal, now=150) is reveal


def test_check_reveal_rejects_a_changed_vote_and_a_partial_vote():
    rnd = replace(_round(), commits={V[0]: cs.commit_hash(7, V[0], {1: 70, 2: 20}, SALT)})
    with pytest.raises(RevealMismatchError):
        cs.check_reveal(rnd, cs.Reveal(V[0], {1: 90, 2: 20}, SALT), now=150)
    with pytest.raises(ConsensusError, match="missing \\[2\\]"):
        cs.check_reveal(rnd, cs.Reveal(V[0], {1: 70}, SALT), now=150)


def test_only_assigned_validators_may_commit_and_commits_are_well_formed():
    rnd = _round()
    with pytest.raises(ConsensusError, match="no contributions assigned"):
        cs.check_commit(rnd, V[6], "0x" + "00" * 32, now=1)
    with pytest.raises(ConsensusError) as err:
        cs.check_commit(rnd, V[0], "0x1234", now=1)
    assert err.value.field == "commit"


# --------------------------------------------------------------------------- consensus


@pytest.mark.parametrize("votes,expected", [
    ([(10, 1), (50, 1), (90, 1)], 50),
    ([(10, 5), (90, 1), (95, 1)], 10),
    ([(10, 1), (90, 1)], 10),  # lower median on an exact tie
    ([(30, 0), (70, 3)], 70),
    ([], None),
])
def test_stake_weighted_median(votes, expected):
    assert cs.stake_weighted_median(votes) == expected


@given(st.lists(st.integers(0, 100), min_size=1, max_size=10), st.lists(st.integers(0, 100), max_size=10),
       st.integers(1, 10**6))
def test_a_stake_majority_keeps_consensus_inside_its_own_range(honest, attackers, unit):
    # honest voters hold more than half the stake: attackers cannot drag the median outside their votes
    honest_stake = unit * (len(attackers) + 1)
    votes = [(s, honest_stake) for s in honest] + [(a, unit) for a in attackers]
    m = cs.stake_weighted_median(votes)
    assert min(honest) <= m <= max(honest)


def test_tally_accepts_rejects_and_clips_far_votes():
    rnd = _committed(_round(), {V[0]: {1: 80, 2: 20}, V[1]: {1: 75, 2: 25}, V[2]: {1: 5, 2: 95}})
    t = cs.tally(rnd)
    assert t.contributions[1].decision == "accept" and t.contributions[1].consensus == 75
    assert t.contributions[2].decision == "reject" and t.contributions[2].consensus == 25
    liar, honest = t.validators[V[2]], t.validators[V[1]]
    assert liar.clipped == 2 and liar.agreement_points == 0
    assert honest.clipped == 0 and honest.agreement_points == 2 * cs.BPS
    assert t.validators[V[0]].agreement_points == 2 * cs.agreement_bps(5, 0, 25)


def test_missing_reveal_earns_nothing_and_below_quorum_stays_undecided():
    rnd = _committed(_round(), {V[0]: {1: 80, 2: 20}, V[1]: {1: 70, 2: 30}})
    t = cs.tally(replace(rnd, commits=rnd.commits | {V[2]: "0x" + "11" * 32}))
    assert not t.validators[V[2]].revealed and t.validators[V[2]].agreement_points == 0
    alone = _committed(_round(), {V[0]: {1: 80, 2: 20}})
    t2 = cs.tally(alone)  # one third of the stake revealed; quorum is one half
    assert {o.decision for o in t2.contributions.values()} == {"undecided"}
    # the one who revealed is not scored on what stayed undecided; the two who did not are, as absent
    assert t2.validators[V[0]].assigned == 0
    assert all(t2.validators[v].assigned == 2 and not t2.validators[v].revealed for v in V[1:3])


def test_withholding_reveals_to_keep_junk_below_quorum_is_slashed_as_absence():
    """A validator holding most of the assigned stake who sees the honest reveals go against the junk and keeps
    its own back leaves every contribution undecided, round after round: that counts as absence."""
    stakes = {V[0]: 100 * TOKEN, V[1]: 100 * TOKEN, V[2]: 400 * TOKEN}
    history = []
    for round_id in range(1, 4):
        rnd = replace(_round(stakes=stakes), round_id=round_id)
        history.append(cs.tally(_committed(rnd, {V[0]: {1: 0, 2: 0}, V[1]: {1: 5, 2: 5}})))
    assert all(o.decision == "undecided" for t in history for o in t.contributions.values())
    slashed = cs.slashing_decisions(history, stakes)
    assert [s.account for s in slashed] == [V[2]] and slashed[0].amount == 40 * TOKEN


def test_tally_ignores_a_reveal_that_does_not_match_its_commit():
    rnd = _committed(_round(), {V[0]: {1: 80, 2: 20}, V[1]: {1: 75, 2: 25}, V[2]: {1: 70, 2: 30}})
    forged = replace(rnd, reveals=rnd.reveals | {V[2]: cs.Reveal(V[2], {1: 0, 2: 100}, SALT)})
    t = cs.tally(forged)
    assert not t.validators[V[2]].revealed
    assert t.contributions[1].consensus == 75


# --------------------------------------------------------------------------- rewards


def test_rewards_follow_stake_times_agreement_and_clipped_votes_earn_nothing():
    rnd = _committed(_round(), {V[0]: {1: 80, 2: 20}, V[1]: {1: 75, 2: 25}, V[2]: {1: 5, 2: 95}})
    pool = 1_000 * TOKEN + 7
    rewards = cs.validator_rewards(pool, cs.tally(rnd))
    assert sum(rewards.values()) == pool
    assert V[2] not in rewards or rewards[V[2]] == 0
    assert rewards[V[1]] > rewards[V[0]] > 0
    boosted = cs.validator_rewards(pool, cs.tally(rnd), multipliers_bps={V[0]: 30_000})
    assert boosted[V[0]] > rewards[V[0]] and sum(boosted.values()) == pool


def test_a_pool_nobody_earned_goes_to_the_named_account():
    rnd = _committed(_round(), {V[0]: {1: 80, 2: 20}, V[1]: {1: 75, 2: 25}})
    t = cs.tally(rnd)
    empty = replace(t, validators={v: replace(o, agreement_points=0) for v, o in t.validators.items()})
    assert cs.validator_rewards(500, empty, remainder_to="0xtreasury") == {"0xtreasury": 500}
    with pytest.raises(ConsensusError):
        cs.validator_rewards(500, empty)


@settings(max_examples=300)
@given(st.integers(0, 10**30), st.dictionaries(st.text("abcdef", min_size=1, max_size=4),
                                               st.integers(0, 10**24), min_size=1, max_size=12))
def test_integer_split_conserves_the_pool_exactly(pool, weights):
    if sum(weights.values()) == 0:
        weights = dict(weights) | {"z": 1}
    shares = cs.split_by_weight(pool, weights)
    assert sum(shares.values()) == pool
    total = sum(weights.values())
    for a, s in shares.items():
        exact = pool * weights[a] / total
        assert abs(s - exact) <= 1 + exact * 1e-12
    assert all(weights[a] > 0 for a in shares)


# --------------------------------------------------------------------------- slashing


def _tally_with(round_id: int, outcomes: dict[str, tuple[bool, int, int]]) -> cs.RoundTally:
    return cs.RoundTally(round_id, {}, {
        v: cs.ValidatorOutcome(v, 100 * TOKEN, assigned, revealed, clipped, (assigned - clipped) * cs.BPS)
        for v, (revealed, assigned, clipped) in outcomes.items()})


def test_persistently_clipped_or_absent_validators_are_slashed_once():
    history = []
    for r in range(6):
        history.append(_tally_with(r, {
            "honest": (True, 10, 0 if r != 2 else 3),  # one bad round is not enough
            "liar": (True, 10, 6 if r % 2 == 0 else 0),  # bad in 3 of 6
            "absent": (r >= 3, 10, 0),  # no reveal in 3 rounds
        }))
    stakes = {"honest": 1000, "liar": 1000, "absent": 1000}
    slashes = {s.account: s for s in cs.slashing_decisions(history, stakes)}
    assert set(slashes) == {"liar", "absent"}
    assert slashes["liar"].amount == 100  # 10% of stake in bps
    assert "3 of the last 6" in slashes["liar"].reason
    again = cs.slashing_decisions(history, stakes, last_slashed_round={"liar": 5, "absent": 5})
    assert again == []


def test_only_the_window_counts():
    history = [_tally_with(r, {"v": (True, 10, 10 if r < 3 else 0)}) for r in range(13)]
    policy = cs.SlashPolicy(window=10, min_bad_rounds=3)
    assert cs.slashing_decisions(history, {"v": 1000}, policy) == []


def test_rejected_contributions_lose_part_of_their_bond():
    slashes = cs.contributor_bond_slashes({1: "accept", 2: "reject", 3: "undecided"},
                                          {1: 10 * TOKEN, 2: 10 * TOKEN, 3: 10 * TOKEN}, slash_bps=2_500)
    assert slashes == {2: 25 * TOKEN // 10}


# --------------------------------------------------------------------------- sampling


def test_sampling_is_deterministic_distinct_and_skips_zero_stake():
    stakes = {V[0]: 5, V[1]: 0, V[2]: 1, V[3]: 3}
    seed = "0x" + "ab" * 32
    first = cs.sample_validators(stakes, 3, seed)
    assert first == cs.sample_validators(list(stakes.items()), 3, seed)
    assert len(first) == 3 and len(set(first)) == 3 and V[1] not in first
    assert len(cs.sample_validators(stakes, 10, seed)) == 3


def test_sampling_follows_stake():
    stakes = {V[0]: 6, V[1]: 3, V[2]: 1}
    firsts = Counter(cs.sample_validators(stakes, 1, os.urandom(0) + i.to_bytes(32, "big"))[0]
                     for i in range(3000))
    assert 0.55 < firsts[V[0]] / 3000 < 0.65
    assert 0.25 < firsts[V[1]] / 3000 < 0.35


def test_assignment_gives_each_contribution_k_validators():
    a = cs.assign_validators([1, 2, 3], {v: 10 for v in V}, 3, seed=b"block")
    assert all(len(vs) == 3 and len(set(vs)) == 3 for vs in a.values())
    assert a == cs.assign_validators([1, 2, 3], {v: 10 for v in V}, 3, seed=b"block")


def test_nobody_is_assigned_their_own_contribution():
    stakes = {v: 10 for v in V[:3]}
    own = {cid: V[cid % 3] for cid in range(30)}
    a = cs.assign_validators(list(own), stakes, 3, seed=b"block", contributors={c: v.upper() for c, v in own.items()})
    assert all(own[cid] not in vs and len(vs) == 2 for cid, vs in a.items())
    alone = cs.assign_validators([7], {V[0]: 10}, 3, seed=b"block", contributors={7: V[0]})
    assert alone == {7: ()}  # the only staker contributed it: nobody validates it
