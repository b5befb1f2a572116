"""Work that `serve` repeats in the background on a fixed cadence (epoch closes, chain indexing)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ledgerlm.errors import LedgerError


def start_every(seconds: float, name: str, work: Callable[[], None], log: logging.Logger) -> Callable[[], None]:
    """Run `work` every `seconds` in a daemon thread; returns the stopper, which waits for a run in progress.

    A run that fails with a LedgerError is logged and tried again at the next tick, so an unreachable
    chain node or a busy database delays the work without ending it.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                work()
            except LedgerError as exc:
                log.warning("%s failed: %s", name, exc.message)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=120)

    return stopper
