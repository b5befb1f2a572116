"""A refusal sent before the request body has arrived closes the connection: the node stops reading what it
refused instead of draining a declared 20 GiB or an endless stream to keep the connection."""

from __future__ import annotations

import socket
import time

from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.node import Node
from tests.serving.conftest import served


def _refused_then_closed(url: str, head: bytes, piece: bytes = b"x" * 65536) -> tuple[bytes, bool]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer, closed, deadline = b"", False, time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sock.sendall(piece)  # the client keeps sending what was refused
            except OSError:  # the node closed the connection
                closed = True
                break
            sock.settimeout(0.05)
            try:
                got = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not got:
                closed = True
                break
            answer += got
        return answer, closed


def test_a_body_refused_by_its_declared_length_closes_the_connection(home):
    with served(home) as url:
        answer, closed = _refused_then_closed(url, b"POST /datanets HTTP/1.1\r\nHost: x\r\n"
                                                   b"Content-Type: application/json\r\n"
                                                   b"Content-Length: 21474836480\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower(), answer[:300]
    assert closed


def test_an_endless_chunked_body_is_cut_off_and_the_connection_closed(home):
    with served(home) as url:
        answer, closed = _refused_then_closed(url, b"POST /datanets HTTP/1.1\r\nHost: x\r\n"
                                                   b"Content-Type: application/json\r\n"
                                                   b"Transfer-Encoding: chunked\r\n\r\n",
                                              piece=b"10000\r\n" + b"x" * 65536 + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower(), answer[:300]
    assert closed


def test_a_request_read_to_its_end_keeps_its_connection(home):
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test") as http:
        answer = http.post("/datanets", json={"spec": {}, "action": {}})
    assert answer.status_code in (400, 401, 422)
    assert answer.headers.get("connection") != "close"
