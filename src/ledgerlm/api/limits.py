"""The request body limits, enforced while a body is read: a declared size over the limit is refused before any
byte, and a JSON body nested past what the parser's stack survives, or holding half a UTF-16 pair, before it is
parsed."""

from __future__ import annotations

import asyncio
import json
import re
import time

import numpy as np
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

# A signed action, a chat prompt or a dashboard form is far smaller than this.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Uploads stream under their own quota-sized limit (ledgerlm.api.multipart.receive_upload).
OWN_LIMIT = re.compile(r"^/datanets/[^/]+/contributions$")
# A compute provider's training report carries every checkpoint of the job (base64 in JSON): even a rank-1 adapter
# of SmolLM2 over one step is past the general limit. The larger limit holds only for a job open for its report
# (paid, not reported yet). Anyone may send one before its signature is read, so a body past the general limit
# takes a reading slot, one per job and `REPORT_READERS` in all (the memory they hold), and keeps it only while it
# arrives at `REPORT_BYTES_PER_SECOND` or faster: a body that trickles in would otherwise hold the slot for
# nothing, and with it every report of the job, or of every job.
MAX_REPORT_BYTES = 32 * 1024 * 1024
REPORT_PATH = re.compile(r"^/providers/jobs/([0-9]{1,18})/report$")
REPORT_READERS = 4
REPORT_BYTES_PER_SECOND = 512 * 1024  # the largest report within BODY_SECONDS arrives faster than this anyway
REPORT_RATE_GRACE_SECONDS = 2.0
# A client that sends a body slower than this (under 70 KB/s for the largest) holds a connection and a
# task for nothing; the clock starts when the route first reads.
BODY_SECONDS = 60
# Every body the node accepts nests a few levels; the standard JSON parser recurses once per level, and
# py_ecc (through eth-account) raises the interpreter's recursion limit to 100,000, past what the C stack
# holds, so a body nested deeply enough would end the process instead of raising.
MAX_JSON_DEPTH = 64
# What Python converts from decimal text at most (sys.get_int_max_str_digits); a uint256 needs 78.
MAX_NUMBER_DIGITS = 4300
# Form bodies are not JSON; everything else a route may parse as JSON (FastAPI does when no type is given).
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")

# a string to its closing quote, or to the body's end when it never closes: possessive, so an unclosed string full
# of escaped quotes is one pass, not a fresh scan to the end from each of them (quadratic: 100 KB took 28 s)
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.S)  # (a lone backslash at the very end too)
_LONG_NUMBER = re.compile(rb"[0-9]{%d,}" % (MAX_NUMBER_DIGITS + 1))
# An escaped backslash, or an escape of a whole surrogate pair: what may be taken out before looking for a half.
_BACKSLASH_OR_PAIR = re.compile(rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def too_large_message(limit: int = MAX_REQUEST_BYTES) -> str:
    return f"the request body is larger than {limit} bytes, the most this node reads"


class RequestTooLarge(HTTPException):
    def __init__(self, limit: int = MAX_REQUEST_BYTES) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class MalformedBody(HTTPException):
    """A JSON body refused before it is parsed; the detail says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=422, detail=detail)


class BodyTooSlow(HTTPException):
    def __init__(self, seconds: float, detail: str | None = None) -> None:
        super().__init__(status_code=408, detail=detail or f"the request body did not arrive within {seconds:g} s")


class ReportBusy(HTTPException):
    """A report past the general limit while its job's (or every) reading slot is taken."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=503, detail=detail, headers={"Retry-After": "5"})


def json_body_problem(body: bytes) -> str | None:
    """Why `body` must not reach a JSON parser (not UTF-8, too deeply nested, a number too long, a lone surrogate),
    or None."""
    # The checks below read UTF-8 bytes, but the parser decodes UTF-16 and UTF-32 by itself: in UTF-16 an escaped
    # quote looks like a string's end to them, so a body nested past the C stack went through and ended the process.
    encoding = json.detect_encoding(body) if body else "utf-8"
    if encoding not in ("utf-8", "utf-8-sig"):
        return f"the JSON body is not UTF-8 (it reads as {encoding.upper()}); send UTF-8 JSON"
    outside = _STRING.sub(b'""', body)  # brackets and digits inside strings are text, not structure
    problem = _depth_problem(outside)
    if problem:
        return problem
    if re.search(rb"(?<!\\)(?:\\\\)*\\u0000", body):  # an escaped NUL: PostgreSQL's text refuses it
        return "a string in the JSON body holds a NUL character (\\u0000), which no text field takes"
    if _LONG_NUMBER.search(outside):
        return f"a number in the JSON body has more than {MAX_NUMBER_DIGITS} digits"
    return _lone_surrogate(body)


def json_depth_problem(body: bytes) -> str | None:
    """Why a UTF-8 JSON document must not reach the parser for its nesting alone, or None (for JSON the node reads
    from elsewhere: another node's answer)."""
    return _depth_problem(_STRING.sub(b'""', body))


def _depth_problem(outside: bytes) -> str | None:
    chars = np.frombuffer(outside, dtype=np.uint8)
    if chars.size:
        opens = (chars == ord("[")) | (chars == ord("{"))
        closes = (chars == ord("]")) | (chars == ord("}"))
        depth = int(np.cumsum(opens.astype(np.int32) - closes.astype(np.int32)).max())
        if depth > MAX_JSON_DEPTH:
            return f"the JSON body nests {depth} levels deep; at most {MAX_JSON_DEPTH} are read"
    return None


def _lone_surrogate(body: bytes) -> str | None:
    """A \\uD800-\\uDFFF escape that is not half of a pair decodes to no character any text store can hold."""
    if b"\\" not in body:
        return None
    # once escaped backslashes and whole pairs are gone, every \\u left is an escape, and a surrogate one is alone
    if _SURROGATE_ESCAPE.search(_BACKSLASH_OR_PAIR.sub(b"", body)):
        return ("a string in the JSON body holds half of a UTF-16 surrogate pair (\\uD800-\\uDFFF), which is no "
                "character")
    return None


# a Content-Length longer than this many digits is past any limit, and past what int() reads (4,300 digits)
LENGTH_DIGITS = 20


def declared_length(value: bytes | str | None) -> int | None:
    """A Content-Length header's bytes, or None when there is none or it is no number; one of more than
    `LENGTH_DIGITS` digits reads as 10**LENGTH_DIGITS, which every limit refuses."""
    if value is None or not value.isdigit():
        return None
    digits = value.lstrip(b"0" if isinstance(value, bytes) else "0")
    return 10**LENGTH_DIGITS if len(digits) > LENGTH_DIGITS else int(digits or 0)


class CloseUnreadBody:
    """Answers a refusal sent before the request body's last byte with `Connection: close`: otherwise the
    server reads (and throws away) the rest of the body to keep the connection, so a client that declared
    20 GiB, or streams without end, had the node reading after it had been refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        unread = headers.get(b"transfer-encoding") is not None or bool(declared_length(headers.get(b"content-length")))

        async def watched():
            nonlocal unread
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                unread = False
            return message

        async def closing(message):
            if message["type"] == "http.response.start" and unread:
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*kept, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, watched, closing)


def _open_for_report(scope: Scope, job_id: int) -> bool:
    """Whether compute job `job_id` waits for its provider's report (paid, not reported): only then may its report
    be larger than any other body."""
    app = scope.get("app")
    node = getattr(getattr(app, "state", None), "node", None)
    if node is None:
        return False
    try:
        job = node.providers.job(job_id)
    except Exception:  # noqa: BLE001 - an unknown job, or a node without providers: the general limit
        return False
    return job.state == "accepted" and job.payment_state == "paid"


class BodyLimit:
    """Refuses a body over `max_bytes` by its Content-Length, stops one sent without it once it passes, and
    checks a JSON body's shape (`json_body_problem`) once its last byte arrives, before the route parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES, body_seconds: float = BODY_SECONDS,
                 report_rate: float = REPORT_BYTES_PER_SECOND) -> None:
        self.app, self.max_bytes, self.body_seconds, self.report_rate = app, max_bytes, body_seconds, report_rate
        self._reading: set[int] = set()  # the jobs whose report body is being read past the general limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "POST" and OWN_LIMIT.match(scope["path"])):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        report = REPORT_PATH.match(scope["path"]) if scope["method"] == "POST" else None
        if report is not None and await asyncio.to_thread(_open_for_report, scope, int(report.group(1))):
            await self._limited(scope, receive, send, MAX_REPORT_BYTES, headers, job=int(report.group(1)))
            return
        await self._limited(scope, receive, send, self.max_bytes, headers)

    def _take_slot(self, job: int) -> None:
        """Start reading `job`'s report past the general limit, or refuse it (503) while its slot or every one is
        taken; runs on the event loop, so the check and the take are one step."""
        if job in self._reading:
            raise ReportBusy(f"another body for job {job}'s report is being read; send it again shortly")
        if len(self._reading) >= REPORT_READERS:
            raise ReportBusy(f"{REPORT_READERS} large reports are being read; send it again shortly")
        self._reading.add(job)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int, headers: dict,
                       job: int | None = None) -> None:
        held: list[int] = []  # the slot this request took, if any: only that one is given back
        try:
            await self._read_limited(scope, receive, send, limit, headers, job, held)
        finally:
            self._reading.difference_update(held)

    async def _read_limited(self, scope: Scope, receive: Receive, send: Send, limit: int, headers: dict,
                            job: int | None, held: list[int]) -> None:
        declared = declared_length(headers.get(b"content-length"))
        too_big = declared is not None and declared > limit
        # Every Content-Type header counts: the framework reads the first, so a form type in a later one must not
        # exempt a JSON body from the shape check.
        content_types = [v.split(b";")[0].strip().lower() for k, v in scope["headers"] if k.lower() == b"content-type"]
        is_form = bool(content_types) and all(t in FORM_TYPES for t in content_types)
        chunks: list[bytes] | None = None if is_form else []
        seen = 0
        read_by: float | None = None  # when the whole body must have arrived, counted from the first read
        large_since: float | None = None  # when a report passed the general limit (and took its job's slot)
        body_done = False

        def rate_deadline() -> float:
            """When a large report's next bytes must have come for it to keep its slot."""
            assert large_since is not None
            return large_since + REPORT_RATE_GRACE_SECONDS + (seen - self.max_bytes) / self.report_rate

        async def limited():
            nonlocal seen, read_by, body_done, large_since
            if too_big:
                raise RequestTooLarge(limit)
            if body_done:  # later reads wait for the client to leave, for as long as an answer streams
                return await receive()
            if read_by is None:
                read_by = time.monotonic() + self.body_seconds
            until = read_by if large_since is None else min(read_by, rate_deadline())
            try:
                message = await asyncio.wait_for(receive(), max(0.0, until - time.monotonic()))
            except TimeoutError:
                if until < read_by:
                    raise BodyTooSlow(self.body_seconds, f"the report arrived slower than "
                                      f"{self.report_rate // 1024:g} KiB/s past the first {self.max_bytes} bytes; "
                                      "a large report keeps its reading slot only while it arrives") from None
                raise BodyTooSlow(self.body_seconds) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                body = message.get("body", b"")
                seen += len(body)
                if seen > limit:
                    raise RequestTooLarge(limit)
                if job is not None and large_since is None and seen > self.max_bytes:
                    self._take_slot(job)
                    held.append(job)
                    large_since = time.monotonic()
                if chunks is not None:
                    chunks.append(body)
                    if not message.get("more_body", False):
                        whole = b"".join(chunks)
                        chunks.clear()
                        # a large body's scan runs beside the event loop, which other requests keep using
                        problem = (await asyncio.to_thread(json_body_problem, whole) if len(whole) > self.max_bytes
                                   else json_body_problem(whole))
                        if problem:
                            raise MalformedBody(problem)
            return message

        await self.app(scope, limited, send)
