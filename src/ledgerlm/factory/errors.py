"""The factory room's exception hierarchy: every training, model and lineage failure a user can act on."""

from __future__ import annotations

from ledgerlm.errors import LedgerError


class FactoryError(LedgerError):
    """A base model, dataset, training config or trained model that the factory cannot use."""


class ModelNotFoundError(FactoryError):
    status = 404


class DatasetError(FactoryError):
    """Records that cannot become a training set (empty, unknown shape, too long for max_len)."""


class TrainConfigError(FactoryError):
    """A training setting that is out of range or does not fit the base model or this machine."""
