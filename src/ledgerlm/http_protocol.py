"""The HTTP protocol the node and the gateway serve with: uvicorn's h11 protocol, with a deadline on a request's headers."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

# Seconds a connection may take to send a request's headers, counted from when it opens or from the first
# byte after an answer. uvicorn counts none: a client that opened connections and sent a header line now and
# then held a file descriptor each for as long as it liked, until the node could accept no one.
HEADER_SECONDS = 30.0


class HeaderDeadline(H11Protocol):
    """Closes a connection whose request headers have not all arrived within `HEADER_SECONDS`."""

    header_seconds = HEADER_SECONDS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_since = None  # the request cycle that was current when the deadline was set
        self._start_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None:
            if self.cycle is not self._waiting_since:  # a request's headers arrived
                self._stop_deadline()
        elif self.cycle is None or self.cycle.response_complete:  # the first bytes of the next request
            self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self._waiting_since = self.cycle
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _stop_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is self._waiting_since and not self.transport.is_closing():
            self.transport.close()
