"""The chain room's one error type, and the signal in-process backends use to carry revert bytes."""

from __future__ import annotations

from typing import Any

from ledgerlm.errors import LedgerError


class ChainError(LedgerError):
    """A chain operation failed: a revert (decoded to the contract's error), or an unusable node.

    `reason` is the decoded revert (`ExceedsCap(cap=100, requested=150)`, a require message, a
    panic), or the node's own message; `error_name`/`error_args` carry a decoded custom error.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        error_name: str | None = None,
        error_args: dict[str, Any] | None = None,
        data: str | None = None,
        tx_hash: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message, field=field, status=status)
        self.reason = reason if reason is not None else message
        self.error_name = error_name
        self.error_args = error_args or {}
        self.data = data
        self.tx_hash = tx_hash

    def to_dict(self) -> dict:
        return {**super().to_dict(), "reason": self.reason, "error": self.error_name}


class RevertSignal(Exception):
    """Raised inside an in-process backend with the raw revert bytes, before any lossy formatting."""

    def __init__(self, data: bytes, message: str = "execution reverted"):
        super().__init__(message)
        self.data = bytes(data)
