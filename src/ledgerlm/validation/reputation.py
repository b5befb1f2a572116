"""Reputation of contributors and validators as an integer EMA of outcomes, and how it scales rewards and bonds.

Reputation is in basis points: 0 (always wrong) .. 10_000 (always right); a new account starts at
NEUTRAL_BPS = 5_000. All arithmetic is integer so every node computes the same value.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledgerlm.validation.consensus import BPS, SCORE_MAX, ValidatorOutcome
from ledgerlm.validation.errors import ValidationError

NEUTRAL_BPS = 5_000


@dataclass(frozen=True)
class ReputationPolicy:
    """EMA weight of the newest outcome, and the ranges reputation maps into.

    Reward multiplier: linear from `reward_min_bps` at reputation 0 through 1x at NEUTRAL to
    `reward_max_bps` at 10_000. Bond multiplier: linear from `bond_max_bps` at 0 through 1x at
    NEUTRAL to `bond_min_bps` at 10_000 — trusted contributors post less, unknown ones the base
    bond, ones with a rejection record more. A fresh key starts at neutral, so discarding a bad
    reputation never beats keeping a good one.
    """

    alpha_bps: int = 2_000
    reward_min_bps: int = 5_000
    reward_max_bps: int = 15_000
    bond_min_bps: int = 2_500
    bond_max_bps: int = 30_000

    def __post_init__(self):
        if not 0 < self.alpha_bps <= BPS:
            raise ValidationError("alpha_bps must be in 1..10000", field="alpha_bps")
        if not 0 <= self.reward_min_bps <= BPS <= self.reward_max_bps:
            raise ValidationError("reward multipliers must satisfy min <= 10000 <= max", field="reward_min_bps")
        if not 0 <= self.bond_min_bps <= BPS <= self.bond_max_bps:
            raise ValidationError("bond multipliers must satisfy min <= 10000 <= max", field="bond_min_bps")


def _clamp(x: int) -> int:
    return max(0, min(BPS, x))


def update(reputation_bps: int, outcome_bps: int, policy: ReputationPolicy = ReputationPolicy()) -> int:
    """One EMA step: r' = r + round(alpha * (outcome - r)), rounded half away from zero, clamped to 0..10_000.

    With alpha = 0.2 the newest outcome weighs 20% and one from ten rounds ago about 2%.
    """
    delta = policy.alpha_bps * (_clamp(outcome_bps) - _clamp(reputation_bps))
    step = (abs(delta) + BPS // 2) // BPS
    return _clamp(reputation_bps + (step if delta >= 0 else -step))


def contributor_outcome_bps(decision: str, consensus: int | None = None) -> int:
    """A contribution's outcome: the validators' consensus score as bps, 0 for a rejection.

    Gate rejections and rejected rounds give 0; an accepted contribution without a consensus
    score (e.g. accepted by the gates alone) gives 10_000; withdrawn or undecided give no update.
    """
    if decision == "reject":
        return 0
    if decision == "accept":
        return BPS if consensus is None else _clamp(consensus * BPS // SCORE_MAX)
    raise ValidationError(f"no reputation outcome for decision {decision!r}", field="decision")


def validator_outcome_bps(outcome: ValidatorOutcome) -> int:
    """A validator's round outcome: mean agreement (0 when they did not reveal)."""
    return outcome.agreement_bps if outcome.revealed else 0


def reward_multiplier_bps(reputation_bps: int, policy: ReputationPolicy = ReputationPolicy()) -> int:
    """Multiplier on a validator's or contributor's reward weight (10_000 = 1x)."""
    r = _clamp(reputation_bps)
    if r <= NEUTRAL_BPS:
        return policy.reward_min_bps + (BPS - policy.reward_min_bps) * r // NEUTRAL_BPS
    return BPS + (policy.reward_max_bps - BPS) * (r - NEUTRAL_BPS) // (BPS - NEUTRAL_BPS)


def bond_multiplier_bps(reputation_bps: int, policy: ReputationPolicy = ReputationPolicy()) -> int:
    """Multiplier on the Datanet's base bond (10_000 = 1x), falling as reputation rises."""
    r = _clamp(reputation_bps)
    if r <= NEUTRAL_BPS:
        return policy.bond_max_bps - (policy.bond_max_bps - BPS) * r // NEUTRAL_BPS
    return BPS - (BPS - policy.bond_min_bps) * (r - NEUTRAL_BPS) // (BPS - NEUTRAL_BPS)


def required_bond(base_bond: int, reputation_bps: int, policy: ReputationPolicy = ReputationPolicy()) -> int:
    """The bond a contributor posts per contribution: base_bond * bond_multiplier / 10_000, rounded up."""
    if not isinstance(base_bond, int) or base_bond < 0:
        raise ValidationError("base_bond must be a non-negative integer", field="base_bond")
    return -(-base_bond * bond_multiplier_bps(reputation_bps, policy) // BPS)


def scaled_reward(amount: int, reputation_bps: int, policy: ReputationPolicy = ReputationPolicy()) -> int:
    """A single reward scaled by reputation, rounded down. To keep a pool whole, scale weights
    with `reward_multiplier_bps` and split the pool instead (see consensus.validator_rewards)."""
    return amount * reward_multiplier_bps(reputation_bps, policy) // BPS
