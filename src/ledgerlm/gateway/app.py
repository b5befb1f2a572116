"""The gateway's ASGI app: OpenAI-compatible routes forwarded to serving nodes, health checks and failover.

A completion goes to the node `RoutingTable.order` ranks first. It moves on to the next node only
when the node cannot have answered it: the connection was refused, or the node answered a 5xx
error (a failed call writes no receipt). A node whose calls fail `down_after` times in a row is taken
out of rotation: it comes back only at a status check that succeeds once a back-off has passed, and
the back-off doubles each time it fails again before answering a call. When a node goes silent after taking the request, the
same `Idempotency-Key` (the client's, or one the gateway makes) goes with the retry, so the nodes'
shared claims replay the first answer instead of charging twice. Once a streamed answer has
started, it is never retried: a node lost mid-stream ends the stream with an error event, and so does a
receipt event the gateway cannot vouch for (checked like a whole answer's).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ledgerlm import __version__
from ledgerlm.api.limits import BodyLimit, BodyTooSlow, MalformedBody, RequestTooLarge, json_depth_problem
from ledgerlm.gateway.routing import RoutingTable, ServingNode

log = logging.getLogger("ledgerlm.gateway")
# A whole answer larger than this is parsed and its receipt checked in a worker thread: a 16 MiB answer parsed on
# the event loop held every other call (and the health checks) for seconds.
LOOP_PARSE_BYTES = 256 * 1024

IDEMPOTENCY_HEADER = "Idempotency-Key"
NODE_HEADER = "X-Ledgerlm-Node"
# what a client's request carries to the node, and a node's answer back
REQUEST_HEADERS = ("authorization", "content-type", "accept", "x-ledgerlm-read")
RESPONSE_HEADERS = ("content-type", "x-ledgerlm-receipt", "idempotent-replayed", "retry-after")
RETRYABLE_STATUS = (500, 502, 503, 504)
MAX_STATUS_BYTES = 1024 * 1024  # a node's status answer, read whole
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a whole (not streamed) completion a node sends back, once decoded
# How often a wait on a node looks whether its caller has left: the node stops a call whose connection closes.
DISCONNECT_POLL_SECONDS = 0.1


class ClientGone(Exception):
    """The caller left while the gateway waited on a node."""


async def _until_gone(request: Request, awaitable):
    """`awaitable`'s result, or ClientGone once the caller has left, the wait cancelled: the gateway's connection
    to the node then closes, and the node stops the call and charges only what it generated, as it does for a
    caller of its own who leaves."""
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class UnreadableAnswer(Exception):
    """A node's answer could not be passed on: larger than the gateway reads, or not decodable."""


@dataclass(frozen=True)
class GatewaySettings:
    nodes: tuple[str, ...]
    health_interval: float = 2.0  # seconds between status checks of every node
    failover_wait: float = 30.0  # most seconds to wait for a claim held by a node that went silent
    connect_timeout: float = 2.0
    read_timeout: float = 300.0  # a node that sends no answer head in this long is taken as lost
    down_after: int = 3  # calls failing in a row on a node (5xx, refused, silent) that take it out of rotation
    down_backoff: float = 10.0  # least seconds out; doubled each time it fails again before answering a call
    down_backoff_max: float = 300.0

    def __post_init__(self):
        if self.down_after < 1:
            raise ValueError("down_after must be at least 1")
        if self.down_backoff < 0 or self.down_backoff_max < self.down_backoff:
            raise ValueError("down_backoff must be between 0 and down_backoff_max")


def _error(status: int, message: str, field: str | None = None, **headers) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"type": "GatewayError", "message": message,
                                                               "field": field, "param": field}},
                        headers=headers or None)


def _lf_lines(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _error_event(message: str) -> bytes:
    """A stream's last event when the gateway ends it: an OpenAI-shaped error."""
    error = {"type": "GatewayError", "field": "model", "param": "model", "message": message}
    return f"data: {json.dumps({'error': error})}\n\n".encode()


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body of `response`, decoded, refused past `limit` bytes as it arrives (a small compressed answer can
    decode to hundreds of megabytes)."""
    parts, size = [], 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise UnreadableAnswer(f"the answer is larger than {limit} bytes")
            parts.append(chunk)
    except httpx.DecodingError as exc:
        raise UnreadableAnswer(f"the answer cannot be decoded ({exc})") from None
    return b"".join(parts)


def _node_json(body: bytes):
    """A node's JSON, refused (ValueError) before the parser sees it when it is not UTF-8 or nests too deep
    (`json_depth_problem`): once eth_account is imported, py_ecc has raised the recursion limit to 100,000, and a
    document nested that deep overflows the C stack and ends the gateway's process. Not UTF-8 is refused too: a
    client reading with replacement characters would still find a receipt the gateway could not read."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    problem = json_depth_problem(body)
    if problem:
        raise ValueError(problem)
    return json.loads(text)


def _node_error(response: httpx.Response, body: bytes) -> str:
    try:
        return _node_json(body)["error"]["message"]
    except Exception:
        return body[:200].decode("utf-8", "replace") or response.reason_phrase


class Gateway:
    """The node table, its health checks, and forwarding with failover."""

    def __init__(self, settings: GatewaySettings):
        if not settings.nodes:
            raise ValueError("a gateway needs at least one serving node (--node URL)")
        self.settings = settings
        self.table = RoutingTable([ServingNode(url.rstrip("/")) for url in settings.nodes])
        self.signing_domain: dict | None = None  # the deployment every node must sign for
        self.client: httpx.AsyncClient | None = None
        self.requests = 0
        self.failovers = 0

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.read_timeout,
                                                               connect=self.settings.connect_timeout),
                                        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
        await self.check_all()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    # ------------------------------------------------------------------ health

    async def check_all(self) -> None:
        nodes = list(self.table.nodes)
        statuses = await asyncio.gather(*(self._status(node) for node in nodes))
        for node, status in zip(nodes, statuses):
            if status is not None:
                node.signing_domain = status.signing_domain
        # The deployment is the one most nodes sign for, counting each node's last known domain (ties: the first
        # listed), decided again every round: a stray node of another deployment that answered before the others
        # came up must not keep the gateway, nor take it while they are briefly down.
        known = [node.signing_domain for node in nodes if node.signing_domain is not None]
        if known:
            counts = Counter(json.dumps(d, sort_keys=True) for d in known)
            best = max(counts.values())
            self.signing_domain = next(d for d in known if counts[json.dumps(d, sort_keys=True)] == best)
        for node, status in zip(nodes, statuses):
            if status is not None:
                self._apply(node, status)

    async def _status(self, node: ServingNode) -> NodeStatus | None:
        """The node's status, or None (and the node marked as missing it) when it cannot be read: an answer of
        the wrong shape counts as a failed check of that node alone."""
        limit = max(2.0, min(5.0, self.settings.health_interval))
        try:
            # a deadline for the whole check: httpx's timeout is per read, and a node sending a byte a second would
            # hold every later round of checks (and the gateway's start) forever
            code, _, body = await asyncio.wait_for(
                self._read(f"{node.url}/serving/status", MAX_STATUS_BYTES, timeout=limit), timeout=limit)
            if code != 200:
                raise httpx.HTTPError(f"status check answered {code}")
            return NodeStatus.read(_node_json(body))
        except Exception as exc:
            node.checked_at = time.time()
            node.misses += 1
            # a refused connection is a node that is gone; a slow answer on a busy host must repeat to count
            if isinstance(exc, (httpx.ConnectError, ValueError, TypeError)) or node.misses >= 2:
                node.up, node.error = False, f"status check failed: {type(exc).__name__}: {exc}"
            return None

    def _apply(self, node: ServingNode, status: NodeStatus) -> None:
        node.checked_at, node.misses = time.time(), 0
        held = node.held_until > node.checked_at  # its status answers, but its calls failed: wait out the back-off
        if status.signing_domain != self.signing_domain:
            # receipts and keys of another deployment would not be recognised here: never routed to
            node.up, node.foreign = False, True
            node.error = f"signs for another deployment ({status.signing_domain}), not {self.signing_domain}"
            return
        node.foreign = False
        node.instance, node.base_model, node.engine_loaded = status.instance, status.base_model, status.engine_loaded
        node.device, node.host, node.node_in_flight = status.device, status.host, status.in_flight
        node.address = status.node_address
        if not held:
            node.up, node.error = True, None

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                await self.check_all()
            except Exception:  # the next round checks again: a watcher that died would check nothing ever again
                log.exception("gateway health check")

    def failed(self, node: ServingNode, reason: str, *, gone: bool) -> None:
        """A call on `node` failed; `gone`: it refused or went silent, so it is down until its status answers."""
        node.failures += 1
        node.failed_in_a_row += 1
        node.error = reason
        if gone:
            node.up = False
        now = time.time()
        # calls still open on a node already held out fail too: they must not lengthen its hold
        if node.failed_in_a_row >= self.settings.down_after and node.held_until <= now:
            backoff = min(self.settings.down_backoff * 2 ** node.holds, self.settings.down_backoff_max)
            node.holds += 1
            node.up, node.held_until = False, now + backoff
            node.error = (f"out of rotation after {node.failed_in_a_row} failed calls in a row (last: {reason}); "
                          f"back at the first status check after {backoff:g} s")

    def answered(self, node: ServingNode) -> None:
        """The node answered a call (any status but a 5xx): whatever failed before is forgiven."""
        node.routed += 1
        node.failed_in_a_row = node.holds = 0

    # ------------------------------------------------------------------ forwarding

    async def forward(self, request: Request, path: str) -> Response:
        """POST a completion to the best node, failing over while no node can have answered it."""
        try:
            body = await request.body()
        except RequestTooLarge as exc:
            return _error(413, exc.detail, "body")
        except (MalformedBody, BodyTooSlow) as exc:
            return _error(exc.status_code, exc.detail, "body")
        try:
            payload = json.loads(body)
            model = payload["model"]
            if not isinstance(model, str):
                raise TypeError
        except Exception:
            return _error(400, "the body must be a JSON object with a string `model`", "model")  # as OpenAI answers
        stream = bool(payload.get("stream"))
        key = request.headers.get(IDEMPOTENCY_HEADER) or "gw-" + uuid.uuid4().hex
        headers = {k: v for k, v in request.headers.items() if k.lower() in REQUEST_HEADERS}
        headers[IDEMPOTENCY_HEADER] = key
        if request.client:  # the caller, for a node that trusts this gateway (its `trusted_proxies`)
            headers["X-Forwarded-For"] = request.client.host
        for name, value in headers.items():  # what no node could read is refused here, not lost as a 500
            if not value.isascii():
                return _error(400, f"the {name} header must be ASCII", name.lower())
        self.requests += 1
        try:
            return await self._forward(request, path, model, body, headers, key, stream)
        except ClientGone:  # nobody reads this answer; the node was told by its connection closing
            return Response(status_code=499)

    async def _forward(self, request: Request, path: str, model: str, body: bytes, headers: dict, key: str,
                       stream: bool) -> Response:
        deadline = time.monotonic() + self.settings.failover_wait
        refused: list[str] = []
        silent = False  # a node took the request and went quiet: it may hold the key's claim
        for attempt, node in enumerate(self.table.order(model)):
            if attempt:
                self.failovers += 1
            while True:
                node.in_flight += 1
                try:
                    # the answer's head within read_timeout in all: httpx's timeout is per read, and a node sending
                    # its head a byte at a time would never count as silent
                    upstream = await _until_gone(request, asyncio.wait_for(self.client.send(
                        self.client.build_request("POST", node.url + path, content=body, headers=headers),
                        stream=True), timeout=self.settings.read_timeout))
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    node.in_flight -= 1
                    self.failed(node, f"connection failed: {type(exc).__name__}", gone=True)
                    refused.append(f"{node.url}: connection failed")
                    break
                except (TimeoutError, httpx.TransportError) as exc:
                    node.in_flight -= 1
                    self.failed(node, f"no answer: {type(exc).__name__}", gone=True)
                    refused.append(f"{node.url}: no answer ({type(exc).__name__})")
                    silent = True
                    break
                except BaseException:  # whatever else ends the send, the node's count of open calls stays true
                    node.in_flight -= 1
                    raise
                retry_after = upstream.headers.get("retry-after") or ""
                if upstream.status_code == 409 and silent and re.fullmatch(r"[0-9]{1,6}", retry_after):
                    # the silent node's claim on the key: wait for its answer, or for its lease to lapse
                    wait = min(float(retry_after) + 0.5, deadline - time.monotonic())
                    if wait > 0:
                        await upstream.aclose()
                        node.in_flight -= 1
                        await asyncio.sleep(wait)
                        continue
                if upstream.status_code in RETRYABLE_STATUS:
                    detail = b""
                    try:
                        detail = await asyncio.wait_for(_read_capped(upstream, MAX_STATUS_BYTES),
                                                        timeout=self.settings.connect_timeout)
                    except (TimeoutError, UnreadableAnswer, httpx.TransportError):
                        pass  # the status says enough
                    finally:
                        await upstream.aclose()
                        node.in_flight -= 1
                    reason = f"{upstream.status_code} {_node_error(upstream, detail)}"
                    self.failed(node, reason, gone=False)
                    refused.append(f"{node.url}: {reason}")
                    break
                out = {k: v for k, v in upstream.headers.items() if k.lower() in RESPONSE_HEADERS}
                out.update({NODE_HEADER: node.url, IDEMPOTENCY_HEADER: key})
                if stream and upstream.headers.get("content-type", "").lower().startswith("text/event-stream"):
                    return StreamingResponse(self._passthrough(upstream, node, model),
                                             status_code=upstream.status_code, headers=out)
                try:
                    content = await _until_gone(request, asyncio.wait_for(
                        _read_capped(upstream, MAX_ANSWER_BYTES), timeout=self.settings.read_timeout))
                except (TimeoutError, httpx.TransportError) as exc:  # lost mid-answer: the key replays it
                    self.failed(node, f"answer cut off: {type(exc).__name__}", gone=True)
                    refused.append(f"{node.url}: answer cut off")
                    silent = True
                    break
                except UnreadableAnswer as exc:  # charged on the node: a retry under the key would replay it
                    self.failed(node, str(exc), gone=False)
                    return _error(502, f"the serving node {node.url} sent an answer the gateway cannot pass on: "
                                  f"{exc}", "model", **{IDEMPOTENCY_HEADER: key})
                finally:
                    await upstream.aclose()
                    node.in_flight -= 1
                problem = None
                if 200 <= upstream.status_code < 300:  # a large answer is read off the event loop: other calls go on
                    problem = (await asyncio.to_thread(self._receipt_problem, node, content, model)
                               if len(content) > LOOP_PARSE_BYTES else self._receipt_problem(node, content, model))
                if problem is None:
                    self.answered(node)  # only an answer the gateway passes on forgives earlier failures
                if problem:  # charged on the node: a retry under the key would replay the same receipt
                    self.failed(node, problem, gone=False)
                    return _error(502, f"the serving node {node.url} answered with a receipt the gateway cannot "
                                  f"vouch for: {problem}", "model", **{IDEMPOTENCY_HEADER: key})
                return Response(content, status_code=upstream.status_code, headers=out)
        return _error(503, "no serving node could take the request: " + "; ".join(refused), "model",
                      **{IDEMPOTENCY_HEADER: key})

    def _receipt_problem(self, node: ServingNode, content: bytes, model: str | None = None) -> str | None:
        """Why a whole answer's receipt is not this deployment's, signed by this node; None when it is (or the
        answer carries none). A node whose status lied, or that changed keys between checks, is caught here."""
        from ledgerlm.identity import SigningDomain
        from ledgerlm.serving.receipts import Receipt, verify_receipt

        try:
            answer = _node_json(content)
        except ValueError as exc:  # a client's lenient reader (UTF-8 with replacement) might still find a receipt
            return f"the answer is not JSON the gateway can check ({exc})"
        receipt = answer.get("x_ledgerlm_receipt") if isinstance(answer, dict) else None
        if receipt is None:
            return None
        if self.signing_domain is None:
            return "no deployment is known yet to check its receipt against"
        if not node.address:
            return "the node's status names no key to check its receipt's signer against"
        try:
            checks = verify_receipt(Receipt(**receipt), domain=SigningDomain.from_dict(self.signing_domain))
        except Exception as exc:  # a receipt of the wrong shape
            return f"the receipt cannot be read ({type(exc).__name__})"
        if not checks["signature_valid"]:
            return "its signature is not valid for this deployment"
        if node.address and checks["signer"].lower() != node.address.lower():
            return f"it is signed by {checks['signer']}, not by the node's key {node.address}"
        if not checks["split_sums_to_fee"]:
            return "its split does not sum to its fee"
        if not checks.get("attribution_pays_its_contributors", True):
            return "it pays contributors its attribution does not name"
        for check, why in (("body_matches", "its fields differ from what was signed"),
                           ("fee_recomputed", "its fee is not its tokens at its price"),
                           ("split_recomputed", "its payouts are not its fee policy's split")):
            if not checks[check]:
                return why
        if model is not None and receipt.get("model_id") != model:
            return f"it is for model {receipt.get('model_id')!r}, not {model!r}"
        return None

    async def _passthrough(self, upstream: httpx.Response, node: ServingNode, model: str | None = None):
        """The node's event stream, passed on an event at a time as each completes; the event that carries the
        receipt is checked as a whole answer's is, and a receipt the gateway cannot vouch for ends the stream with
        an error event instead. A node lost mid-stream ends it with an error event too, never a retry."""
        pending, held = bytearray(), b""
        try:
            async for chunk in upstream.aiter_bytes():
                # SSE ends a line at CR, LF or CRLF: one form, so no event (the receipt's) slips past unsplit;
                # a CR at the end may be the first half of a CRLF the next chunk completes
                chunk = held + chunk
                held = b"\r" if chunk.endswith(b"\r") else b""
                searched = max(0, len(pending) - 1)  # only the new bytes (and the one before) can end an event
                pending += _lf_lines(chunk[:len(chunk) - len(held)])
                if b"\n\n" in pending[searched:]:
                    *events, rest = bytes(pending).split(b"\n\n")
                    pending = bytearray(rest)
                    for event in events:
                        problem = self._event_problem(node, event, model)
                        if problem:
                            yield _error_event(problem)
                            return
                        yield event + b"\n\n"
                if len(pending) > MAX_ANSWER_BYTES:
                    self.failed(node, "a stream event larger than the gateway reads", gone=False)
                    yield _error_event(f"the serving node {node.url} sent a stream event larger than "
                                       f"{MAX_ANSWER_BYTES} bytes")
                    return
            pending = bytes(pending + _lf_lines(held)).strip(b"\n")
            if pending:  # the last event, unterminated
                problem = self._event_problem(node, pending, model)
                yield _error_event(problem) if problem else pending + b"\n\n"
                if problem:
                    return
            self.answered(node)  # a whole stream passed on: earlier failures are forgiven
        except (httpx.TransportError, httpx.DecodingError) as exc:
            self.failed(node, f"stream cut off: {type(exc).__name__}", gone=True)
            yield _error_event(f"the serving node {node.url} was lost mid-answer; what was generated is charged")
        finally:
            await upstream.aclose()
            node.in_flight -= 1

    def _event_problem(self, node: ServingNode, event: bytes, model: str | None = None) -> str | None:
        """Why one stream event's receipt cannot be passed on (the node is counted as failed); None when it
        carries none or a good one."""
        data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
        # the key may be written with escapes ("x_ledgerlm\u005freceipt"), which a client's JSON reader undoes;
        # only \u can spell a letter or "_", so only an event with neither the key nor a \u is passed on unread
        if b"x_ledgerlm_receipt" not in data and b"\\u" not in data:
            return None
        problem = self._receipt_problem(node, data, model)
        if problem is None:
            return None
        self.failed(node, problem, gone=False)
        return f"the serving node {node.url} answered with a receipt the gateway cannot vouch for: {problem}"

    async def get(self, path: str) -> Response:
        """A read (the model list) from the first node that answers."""
        for node in self.table.order(""):
            try:
                status, out, content = await asyncio.wait_for(self._read(node.url + path, MAX_ANSWER_BYTES),
                                                              timeout=self.settings.read_timeout)
            except (TimeoutError, httpx.TransportError, UnreadableAnswer) as exc:
                self.failed(node, f"no readable answer: {type(exc).__name__}", gone=True)
                continue
            return Response(content, status_code=status, headers={**out, NODE_HEADER: node.url})
        return _error(503, "no serving node answered", None)

    async def _read(self, url: str, limit: int, **options) -> tuple[int, dict, bytes]:
        """GET `url`: its status, the headers passed on to clients, and its body read under `limit` bytes."""
        async with self.client.stream("GET", url, **options) as upstream:
            out = {k: v for k, v in upstream.headers.items() if k.lower() in RESPONSE_HEADERS}
            return upstream.status_code, out, await _read_capped(upstream, limit)

    def status(self) -> dict:
        return {"ledgerlm": __version__, "signing_domain": self.signing_domain, "requests": self.requests,
                "failovers": self.failovers, "nodes": [n.to_dict() for n in self.table.nodes]}


def create_gateway_app(settings: GatewaySettings) -> FastAPI:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        watcher = asyncio.create_task(gateway.watch())
        try:
            yield
        finally:
            watcher.cancel()
            await gateway.close()

    app = FastAPI(title="ledgerlm gateway", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible routes in front of several ledgerlm serving nodes.")
    app.add_middleware(BodyLimit)
    app.state.gateway = gateway

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await gateway.forward(request, "/v1/chat/completions")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await gateway.forward(request, "/v1/completions")

    @app.get("/v1/models")
    async def models():
        return await gateway.get("/v1/models")

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str):
        return await gateway.get(f"/v1/models/{quote(model_id, safe='')}")

    @app.get("/gateway/status")
    async def status():
        """Every node: up or why not, what it has warm, requests open and routed; failovers so far."""
        return gateway.status()

    return app


@dataclass(frozen=True)
class NodeStatus:
    """What the gateway reads of a node's `GET /serving/status`, checked for shape."""

    signing_domain: dict | None
    instance: str | None
    base_model: str | None
    engine_loaded: bool
    device: tuple[str, ...]
    host: tuple[str, ...]
    in_flight: int
    node_address: str | None = None  # the key the node signs receipts with

    @classmethod
    def read(cls, status) -> NodeStatus:
        """The status, or ValueError/TypeError when it is not the shape a node answers with."""
        if not isinstance(status, dict):
            raise ValueError("the status is not a JSON object")
        warm = status.get("warm") or {}
        if not isinstance(warm, dict):
            raise ValueError("warm is not an object")
        device, host = warm.get("device", ()), warm.get("host", ())
        if not all(isinstance(x, list | tuple) and all(isinstance(m, str) for m in x) for x in (device, host)):
            raise ValueError("warm.device and warm.host must be lists of model ids")
        in_flight = status.get("in_flight", 0)
        if not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 0:
            raise ValueError(f"in_flight must be a count, got {in_flight!r}")
        domain = status.get("signing_domain")
        instance, base = status.get("instance"), status.get("base_model")
        if not (domain is None or isinstance(domain, dict)) or not all(
                v is None or isinstance(v, str) for v in (instance, base)):
            raise ValueError("signing_domain, instance or base_model has the wrong type")
        address = status.get("node_address")
        if not (address is None or isinstance(address, str)):
            raise ValueError("node_address has the wrong type")
        return cls(domain, instance, base, bool(status.get("engine_loaded")), tuple(device), tuple(host), in_flight,
                   address)
