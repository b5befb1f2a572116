"""The economy room's errors."""

from __future__ import annotations

from ledgerlm.errors import LedgerError


class EconomyError(LedgerError):
    """A fee, policy, epoch or payout that cannot be accepted as given."""
