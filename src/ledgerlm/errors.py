"""The root of every room's exception hierarchy, shared by the CLI and the API."""

from __future__ import annotations


class LedgerError(Exception):
    """An error a user can act on: says what is wrong and, where known, which field.

    `status` is the HTTP status the API answers with; the CLI exits non-zero with the same message.
    `retry_after` (whole seconds), where set, is sent as the answer's Retry-After header.
    """

    status: int = 400
    retry_after: int | None = None

    def __init__(self, message: str, *, field: str | None = None, status: int | None = None,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after = retry_after
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "message": self.message, "field": self.field}


class NotFoundError(LedgerError):
    status = 404


class ConflictError(LedgerError):
    status = 409


class AuthError(LedgerError):
    """A signature, nonce, deadline or chain id check failed."""

    status = 401
