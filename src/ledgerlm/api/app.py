"""The FastAPI application: one router per room, errors turned into JSON with the same message."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException

from ledgerlm import __version__
from ledgerlm.api.headers import SecurityHeaders, secured
from ledgerlm.api.limits import (
    BodyLimit,
    BodyTooSlow,
    CloseUnreadBody,
    MalformedBody,
    ReportBusy,
    RequestTooLarge,
)
from ledgerlm.errors import LedgerError
from ledgerlm.web import is_page, mount_dashboard, render_error

# What FastAPI answers for a body its JSON parser raised on (other than a syntax error, which it names).
UNPARSED_BODY = "There was an error parsing the body"
log = logging.getLogger("ledgerlm.api")
BUSY_RETRY_AFTER_SECONDS = 5  # a write refused after the 30 s busy timeout: the other writer may be done soon


def _openai_route(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def _error_response(request: Request, status: int, error: dict, headers: dict | None = None) -> JSONResponse:
    """The JSON error answer; on the OpenAI-compatible routes it also names its field as `param`, where OpenAI's
    clients read it."""
    shaped = {**error, "param": error.get("field")} if _openai_route(request) else error
    return JSONResponse(status_code=status, headers=headers, content={"error": shaped})


def _past(text: str, largest: int) -> bool:
    digits = text.strip().lstrip("+-")
    return digits.isascii() and digits.isdigit() and (len(digits) > 19 or int(digits) > largest)


def create_app(open_node: Callable[[], object]) -> FastAPI:
    """`open_node` is called once at startup; the node is closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.node = open_node()
        from ledgerlm.api.chain import start_index_follower
        from ledgerlm.api.economy import start_epoch_cadence

        stop_cadence = start_epoch_cadence(app.state.node)
        stop_index = start_index_follower(app.state.node)
        try:
            yield
        finally:
            stop_index()
            stop_cadence()
            app.state.node.close()

    app = FastAPI(
        title="ledgerlm node",
        version=__version__,
        description="Datanets, validation, models, attributed inference and settlement.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, exempt=(app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url))
    app.add_middleware(CloseUnreadBody)  # outermost: it sees every refusal, the body limit's and the routes'

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError):
        if is_page(request):
            return render_error(request, exc.status, exc.message, exc.field)
        return _error_response(request, exc.status, exc.to_dict(),
                               {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",))
        field = _field_of(first.get("loc", ()))
        message = f"{location or 'request'}: {first.get('msg', 'invalid')}"
        if first.get("type") == "json_invalid":  # FastAPI names only the position: "5: JSON decode error"
            loc = first.get("loc", ())
            at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            reason = (first.get("ctx") or {}).get("error") or "not JSON"
            message, field = f"the request body is not valid JSON: {reason}{at}", "body"
        if is_page(request):
            return render_error(request, 422, message, field)
        # OpenAI answers an invalid request 400, which its clients raise as BadRequestError
        return _error_response(request, 400 if _openai_route(request) else 422,
                               {"type": "ValidationError", "message": message, "field": field})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if isinstance(exc, RequestTooLarge):
            if request.headers.get("hx-request"):
                return render_error(request, 413, exc.detail, "body")
            return _error_response(request, 413, {"type": "RequestTooLarge", "message": exc.detail, "field": "body"})
        if isinstance(exc, ReportBusy):
            return _error_response(request, 503, {"type": "Busy", "message": exc.detail, "field": None}, exc.headers)
        if isinstance(exc, (MalformedBody, BodyTooSlow)) or (exc.status_code == 400 and exc.detail == UNPARSED_BODY):
            message = exc.detail if exc.detail != UNPARSED_BODY else (
                "the request body could not be read as JSON (send UTF-8 JSON text)")
            if is_page(request):
                return render_error(request, exc.status_code, message, "body")
            kind = "BodyTooSlow" if isinstance(exc, BodyTooSlow) else "MalformedBody"
            status = 400 if _openai_route(request) and exc.status_code == 422 else exc.status_code
            return _error_response(request, status, {"type": kind, "message": message, "field": "body"})
        if is_page(request):
            return render_error(request, exc.status_code, "there is no page here" if exc.status_code == 404
                                else str(exc.detail))
        if exc.status_code < 500:  # what the framework refuses (an unknown route, a form field too long) reads
            # like every other refusal
            return _error_response(request, exc.status_code,
                                   {"type": "HTTPError", "message": str(exc.detail), "field": None}, exc.headers)
        return await http_exception_handler(request, exc)

    def refusal(request: Request, status: int, kind: str, message: str, headers: dict | None = None,
                field: str | None = None):
        """An error the node names itself: a page for a browser, the JSON error for everyone else."""
        if is_page(request):
            return render_error(request, status, message)
        return _error_response(request, status, {"type": kind, "message": message, "field": field}, headers)

    @app.exception_handler(OverflowError)
    async def number_too_large(request: Request, exc: OverflowError):
        # An id or amount past what SQLite stores can name nothing the node holds; the path or query parameter
        # that holds it is named where one does (a signed message's is named by the message's own checks)
        largest = 2**63 - 1
        params = {**request.path_params, **request.query_params}
        field = next((name for name, value in params.items() if _past(str(value), largest)), None)
        return refusal(request, 400, "ValidationError",
                       f"{field or 'a number in the request'} is larger than the node stores (at most {largest})",
                       field=field)

    @app.exception_handler(DataError)
    async def value_the_database_refuses(request: Request, exc: DataError):
        # PostgreSQL refuses what SQLite stores: a NUL in text, an id past INTEGER's 2**31 - 1. Nothing was
        # written (the statement failed whole); the value came from the request, so it is the caller's to fix.
        params = {**request.path_params, **request.query_params}
        field = next((name for name, value in params.items()
                      if "\x00" in str(value) or _past(str(value), 2**31 - 1)), None)
        return refusal(request, 400, "ValidationError",
                       f"{field or 'a value in the request'} holds a NUL character or a number past what the "
                       "node's database stores", field=field)

    @app.exception_handler(OperationalError)
    async def database_busy(request: Request, exc: OperationalError):
        # SQLite has one writer at a time: a write that waited out the busy timeout behind another (a large
        # upload stores its records in one transaction) is worth retrying, not a server fault.
        if "disk is full" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "53100":  # SQLite, PostgreSQL
            return await disk_full(request, exc)
        if "database is locked" not in str(exc.orig):
            return await unexpected(request, exc)
        return refusal(request, 503, "DatabaseBusy",
                       "the node's database is busy with another write (such as a large upload); try again shortly",
                       {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})

    async def disk_full(request: Request, exc: Exception):
        # Nothing was stored (the write failed whole); the operator must free space, and the caller may retry then.
        log.error("disk full while serving %s %s: %s", request.method, request.url.path, exc)
        return refusal(request, 507, "DiskFull",
                       "the node's disk is full: nothing was stored; try again once its operator has freed space")

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError):
        if exc.errno != errno.ENOSPC:
            raise exc  # a server fault: `unexpected` answers it, and the server log keeps its trace
        return await disk_full(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # The page says what failed in one line; the trace and the exception's own text (which may quote SQL
        # or paths) go to the server log, never to the browser.
        if is_page(request):
            return secured(render_error(request, 500, f"the node could not build this page ({type(exc).__name__}); "
                                        "the server log has the details"))
        return secured(PlainTextResponse("Internal Server Error", status_code=500))

    from ledgerlm.api import (
        agents,
        attribution,
        chain,
        datanets,
        economy,
        factory,
        node,
        openai,
        providers,
        serving,
        shares,
        validation,
    )

    app.include_router(node.router)
    app.include_router(datanets.router)
    app.include_router(chain.router)
    app.include_router(economy.router)
    app.include_router(factory.router)
    app.include_router(validation.router)
    app.include_router(attribution.router)
    app.include_router(openai.router)
    app.include_router(serving.router)
    app.include_router(shares.router)
    app.include_router(agents.router)
    app.include_router(providers.router)
    mount_dashboard(app)
    return app


# what pydantic appends to a location for the member of a union it tried ("stop": 5 fails as "str" and as
# "list[str]"): a type, not a field
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none", "tuple", "set"})
_PLACES = frozenset({"body", "query", "path", "header", "cookie"})


def _field_of(loc) -> str | None:
    """The field a validation error names: the last name in its location that is neither a list index nor a
    union member's type; the body itself when there is none (a body that is not a JSON object)."""
    if not loc:
        return None
    for part in reversed(loc):
        if isinstance(part, str) and part not in _PLACES and part not in _TYPE_TAGS and "[" not in part:
            return part
    return str(loc[0]) if loc[0] in _PLACES else None
