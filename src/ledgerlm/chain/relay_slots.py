"""How many client-signed transactions a node waits on at once, in all and per sender."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ledgerlm.errors import LedgerError


class RelaySlots:
    """Each relay holds a worker until its transaction is mined (up to the chain's receipt timeout), so a node
    waits on at most `total` of them, and at most `per_sender` of one sender's: a client sending transactions
    priced under what the chain takes, which never mine, then holds a few slots, not the node's relaying."""

    def __init__(self, *, total: int, per_sender: int):
        self.total = total
        self.per_sender = per_sender
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # sender (lower case) -> relays waiting
        self._waiting = 0  # the sum of `_held`

    @contextmanager
    def hold(self, sender: str) -> Iterator[None]:
        """A slot for one relay of `sender` while the block runs; 503 naming `raw` when there is none."""
        key = sender.lower()
        with self._lock:
            if self._waiting >= self.total:
                raise LedgerError(f"the node is already waiting on {self.total} relayed transactions to be mined; "
                                  "try again shortly, or send it to the chain's RPC yourself", field="raw", status=503)
            if self._held.get(key, 0) >= self.per_sender:
                raise LedgerError(f"the node is already waiting on {self.per_sender} transactions of {sender} to be "
                                  "mined; send the next once one is", field="raw", status=503)
            self._held[key] = self._held.get(key, 0) + 1
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[key] -= 1
                self._waiting -= 1
                if not self._held[key]:
                    del self._held[key]

    def waiting(self) -> int:
        """Relays waiting now."""
        return self._waiting
