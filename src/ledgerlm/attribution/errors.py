"""The attribution room's exception hierarchy: indexes and queries that cannot be attributed."""

from __future__ import annotations

from ledgerlm.errors import LedgerError


class AttributionError(LedgerError):
    """An index, record list or query the attribution room cannot work with."""


class IndexNotFoundError(AttributionError):
    """A model directory without an attribution index (build one with `build_index`)."""

    status = 404
