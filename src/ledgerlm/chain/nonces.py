"""Nonce allocation for one sending key shared by many threads and, through a lock file, many processes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - no advisory file locks (Windows): threads still coordinate
    fcntl = None


# How long a recorded next nonce outranks a lower pending count from the node: long enough for a
# transaction another process just sent to reach the node's pool, short enough that a transaction
# dropped by a crashed sender does not leave a gap that stalls every later one.
FRESH_SECONDS = 30.0


@dataclass
class NonceTicket:
    """The right to send the next transaction of one sender; valid while its `NonceBook.hold` lasts."""

    address: str
    stored: int  # the next nonce as the book last recorded it (0: nothing recorded, or too old)
    _used: int | None = None

    def next(self, pending_count: Callable[[], int]) -> int:
        """The nonce to sign with: the node's pending count, or higher when the book knows of sends the
        node has not seen yet (another process's transaction still propagating)."""
        return max(self.stored, int(pending_count()))

    def used(self, nonce: int) -> None:
        """Record that a transaction with `nonce` was accepted by the node."""
        self._used = nonce
        self.stored = nonce + 1

    def skip_past(self, nonce: int) -> None:
        """The node refused `nonce` as taken (another sender of this key used it): try the next one."""
        self.stored = max(self.stored, nonce + 1)


class NonceBook:
    """Hands out nonces so that concurrent senders with one key never collide and leave no gaps.

    Within a process, one lock per sender serialises signing and sending (not the wait for the
    receipt). With a `directory`, the next nonce is also kept in a per-sender file under an
    exclusive advisory lock, so several node processes on one machine share the key safely. Nodes on
    different machines still recover from a collision: the port retries a refused nonce with the next.
    A nonce is recorded only after the node accepted the transaction, so a refused send leaves no gap.
    """

    def __init__(self, chain_id: int, directory: Path | None = None, *, fresh_seconds: float = FRESH_SECONDS):
        self.chain_id = chain_id
        self.directory = Path(directory) if directory is not None else None
        self.fresh_seconds = fresh_seconds
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._next: dict[str, tuple[int, float]] = {}

    def _lock(self, address: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(address, threading.Lock())

    @contextmanager
    def hold(self, address: str) -> Iterator[NonceTicket]:
        with self._lock(address):
            if self.directory is None or fcntl is None:
                ticket = NonceTicket(address, self._fresh(*self._next.get(address, (0, 0.0))))
                try:
                    yield ticket
                finally:
                    self._remember(address, ticket)
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.chain_id}-{address.lower()}.nonce"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                ticket = NonceTicket(address, self._fresh(*_parse(os.pread(fd, 64, 0))))
                try:
                    yield ticket
                finally:
                    self._remember(address, ticket)
                    if ticket._used is not None:
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, f"{ticket.stored} {time.time():.3f}".encode(), 0)
            finally:
                os.close(fd)  # closing releases the flock

    def _fresh(self, nonce: int, written_at: float) -> int:
        return nonce if time.time() - written_at <= self.fresh_seconds else 0

    def _remember(self, address: str, ticket: NonceTicket) -> None:
        if ticket._used is not None:
            self._next[address] = (ticket.stored, time.time())


def _parse(raw: bytes) -> tuple[int, float]:
    try:
        nonce, written_at = raw.decode().split()
        return int(nonce), float(written_at)
    except ValueError:  # empty (new) or damaged: the node's count decides
        return 0, 0.0
