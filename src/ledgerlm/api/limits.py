"""The request body limit, enforced while a body is read: a declared size over it is refused before any byte."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

# A signed action, a chat prompt or a dashboard form is far smaller than this.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Uploads stream under their own quota-sized limit (ledgerlm.api.multipart.receive_upload).
OWN_LIMIT = re.compile(r"^/datanets/[^/]+/contributions$")


def too_large_message(limit: int = MAX_REQUEST_BYTES) -> str:
    return f"the request body is larger than {limit} bytes, the most this node reads"


class RequestTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail=too_large_message())


class BodyLimit:
    """Refuses a body over `max_bytes` by its Content-Length, and stops one sent without it once it passes."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "POST" and OWN_LIMIT.match(scope["path"])):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        seen = 0

        async def limited():
            nonlocal seen
            if too_big:
                raise RequestTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestTooLarge()
            return message

        await self.app(scope, limited, send)
