"""Running a coroutine to its end from a test, whatever event loop the test process already runs, and work on
several threads at once."""

from __future__ import annotations

import asyncio
import threading


def run_apart(coro):
    """`asyncio.run(coro)` in a thread of its own, since this one may already run an event loop (Playwright's
    sync API leaves one running for the browser tests): (its result, that thread's id); raises what it raised."""
    out: dict = {}

    def run():
        out["thread"] = threading.get_ident()
        try:
            out["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it was raised
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"], out["thread"]


def at_once(work, calls) -> list[BaseException]:
    """`work(*args)` for each `args` of `calls`, each on a thread of its own, all started before any is joined;
    what they raised (empty: none did)."""
    errors: list[BaseException] = []

    def run(args):
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller to assert on
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(args,)) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
