"""A connection that does not finish a request's headers in time is closed (`http_protocol.HeaderDeadline`), so a
client cannot hold the node's file descriptors by opening connections and sending a header line now and then;
a request that arrives whole is answered as before, on a connection that stays open."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

from ledgerlm.http_protocol import HeaderDeadline


class QuickDeadline(HeaderDeadline):
    header_seconds = 0.5


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def serving():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(hello, host="127.0.0.1", port=port, http=QuickDeadline,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes `sock` within `seconds` while the client sends `trickle` every 0.1 s."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_a_connection_that_sends_nothing_is_closed():
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        assert closed_within(sock, 5)


def test_headers_sent_a_line_at_a_time_are_cut_off():
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert closed_within(sock, 5, trickle=b"X-Slow: 1\r\n")


def test_a_whole_request_is_answered_and_its_connection_kept():
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        for _ in range(2):  # the same connection answers twice, the second request after the first's deadline
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"ok"):
                answer += sock.recv(1024)
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(0.7)
