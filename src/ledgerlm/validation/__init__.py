"""ledgerlm validation: automatic gates, data valuation, validator rounds (commit–reveal, consensus), reputation.

Every function here is pure (no database, no chain): the round service passes candidates,
commits, reveals and stakes in and stores what comes back.
"""

from ledgerlm.validation.consensus import (
    BPS,
    ContributionOutcome,
    Reveal,
    Round,
    RoundRules,
    RoundTally,
    Slash,
    SlashPolicy,
    ValidatorOutcome,
    agreement_bps,
    assign_validators,
    check_commit,
    check_reveal,
    commit_hash,
    contributor_bond_slashes,
    sample_validators,
    slashing_decisions,
    split_by_weight,
    stake_weighted_median,
    tally,
    validator_rewards,
    verify_reveal,
)
from ledgerlm.validation.embeddings import (
    Embedder,
    HashedTfidfEmbedder,
    MiniLMEmbedder,
    resolve_embedder,
)
from ledgerlm.validation.errors import (
    ConsensusError,
    GatePolicyError,
    PhaseError,
    RevealMismatchError,
    ValidationError,
    ValuationError,
)
from ledgerlm.validation.gates import Candidate, Finding, GateReport, run_gates
from ledgerlm.validation.near_duplicates import NearDuplicateIndex
from ledgerlm.validation.policy import GATES, GatePolicy
from ledgerlm.validation.reputation import (
    NEUTRAL_BPS,
    ReputationPolicy,
    bond_multiplier_bps,
    contributor_outcome_bps,
    required_bond,
    reward_multiplier_bps,
    validator_outcome_bps,
)
from ledgerlm.validation.reputation import update as update_reputation
from ledgerlm.validation.valuation import (
    ContributorValue,
    ValuationReport,
    data_oob,
    knn_shapley,
    value_contributions,
)

__all__ = [
    "BPS", "GATES", "NEUTRAL_BPS",
    "Candidate", "ConsensusError", "ContributionOutcome", "ContributorValue", "Embedder", "Finding",
    "GatePolicy", "GatePolicyError", "GateReport", "HashedTfidfEmbedder", "MiniLMEmbedder",
    "NearDuplicateIndex", "PhaseError", "ReputationPolicy", "Reveal", "RevealMismatchError", "Round",
    "RoundRules", "RoundTally", "Slash", "SlashPolicy", "ValidationError", "ValidatorOutcome",
    "ValuationError", "ValuationReport",
    "agreement_bps", "assign_validators", "bond_multiplier_bps", "check_commit", "check_reveal",
    "commit_hash", "contributor_bond_slashes", "contributor_outcome_bps", "data_oob", "knn_shapley",
    "required_bond", "resolve_embedder", "reward_multiplier_bps", "run_gates", "sample_validators",
    "slashing_decisions", "split_by_weight", "stake_weighted_median", "tally", "update_reputation",
    "validator_outcome_bps", "validator_rewards", "value_contributions", "verify_reveal",
]
