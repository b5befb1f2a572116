"""The serving room's exception hierarchy: unknown models, bad requests, payment, limits, adapters."""

from __future__ import annotations

from ledgerlm.errors import LedgerError


class ServingError(LedgerError):
    """A completion request the node cannot serve as asked."""


class ModelNotServedError(ServingError):
    """The requested model is neither a published adapter nor the resident base model."""

    status = 404


class AdapterLoadError(ServingError):
    """An adapter's files cannot be read or do not fit the resident base model."""

    status = 503


class PaymentRequiredError(ServingError):
    """The key's remaining spending cap or escrow balance cannot cover the call."""

    status = 402


class ApiKeyError(ServingError):
    """A missing, unknown or revoked API key."""

    status = 401


class RateLimitError(ServingError):
    """Too many requests, or too many at once, on one API key."""

    status = 429


class ReceiptError(ServingError):
    """A receipt that does not exist or does not verify."""
