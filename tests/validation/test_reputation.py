"""Reputation follows outcomes, and scales rewards up and bonds down for people who earned it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerlm.validation import reputation as rep
from ledgerlm.validation.consensus import ValidatorOutcome
from ledgerlm.validation.errors import ValidationError


def test_reputation_moves_toward_outcomes_and_converges():
    r = rep.NEUTRAL_BPS
    for _ in range(40):
        r = rep.update(r, 10_000)
    assert r >= 9_950
    for _ in range(40):
        r = rep.update(r, 0)
    assert r <= 50


@given(st.integers(-5_000, 15_000), st.integers(-5_000, 15_000))
def test_reputation_stays_in_range_and_between_old_and_outcome(r, outcome):
    new = rep.update(r, outcome)
    assert 0 <= new <= 10_000
    lo, hi = sorted((max(0, min(10_000, r)), max(0, min(10_000, outcome))))
    assert lo <= new <= hi


def test_outcomes_for_contributors_and_validators():
    assert rep.contributor_outcome_bps("reject") == 0
    assert rep.contributor_outcome_bps("accept", 85) == 8_500
    assert rep.contributor_outcome_bps("accept") == 10_000
    with pytest.raises(ValidationError):
        rep.contributor_outcome_bps("undecided")
    silent = ValidatorOutcome("0xv", 1, 4, False, 0, 0)
    good = ValidatorOutcome("0xv", 1, 4, True, 0, 36_000)
    assert rep.validator_outcome_bps(silent) == 0 and rep.validator_outcome_bps(good) == 9_000


def test_reward_and_bond_multipliers_pass_through_one_at_neutral():
    assert rep.reward_multiplier_bps(0) == 5_000
    assert rep.reward_multiplier_bps(rep.NEUTRAL_BPS) == 10_000
    assert rep.reward_multiplier_bps(10_000) == 15_000
    assert rep.bond_multiplier_bps(0) == 30_000
    assert rep.bond_multiplier_bps(rep.NEUTRAL_BPS) == 10_000
    assert rep.bond_multiplier_bps(10_000) == 2_500


def test_trusted_contributors_post_a_smaller_bond_and_earn_more():
    base = 10 * 10**18
    assert rep.required_bond(base, 9_000) < rep.required_bond(base, 5_000) == base < rep.required_bond(base, 1_000)
    assert rep.scaled_reward(1_000, 10_000) == 1_500 and rep.scaled_reward(1_000, 0) == 500


def test_policy_is_validated():
    with pytest.raises(ValidationError) as err:
        rep.ReputationPolicy(alpha_bps=0)
    assert err.value.field == "alpha_bps"
    with pytest.raises(ValidationError):
        rep.ReputationPolicy(reward_max_bps=9_000)
