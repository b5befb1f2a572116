"""The providers room's errors."""

from ledgerlm.errors import LedgerError


class ProviderError(LedgerError):
    pass
