"""The validation room's exception hierarchy: gate policy, consensus and valuation errors."""

from __future__ import annotations

from ledgerlm.errors import LedgerError


class ValidationError(LedgerError):
    """Root of every error the validation room raises."""


class GatePolicyError(ValidationError):
    """A Datanet owner's gate policy names an unknown gate or field, or a value out of range."""


class ValuationError(ValidationError):
    """Data valuation cannot run on the inputs given (too few records, shape mismatch)."""


class ConsensusError(ValidationError):
    """A commit, reveal or tally input breaks the round's rules."""


class RevealMismatchError(ConsensusError):
    """A reveal does not hash to the commit the validator posted."""


class PhaseError(ConsensusError):
    """A commit or reveal arrived outside its window (before it opened or after its deadline)."""

    status = 409
