"""Response headers that tell a browser how to treat what the node answers.

Every answer carries `X-Content-Type-Options: nosniff` (a contribution served as text is never run as a script),
`X-Frame-Options: DENY` (no other site frames the dashboard to trick a wallet into signing) and
`Referrer-Policy: same-origin` (page addresses, which may hold an account's address, stay on the node). HTML
answers also carry `CONTENT_SECURITY_POLICY`: the dashboard loads its scripts, styles, fetches and event streams
from the node itself and nothing else, so markup that slipped past escaping could neither run inline script nor
send anything elsewhere.

What a request reads as someone (a signed read request, the dashboard's session cookie, a bearer key or the
operator's credential) is answered `Cache-Control: no-store`, and every answer varies on those headers: a proxy
or CDN in front of the node must never keep a member's export of a private Datanet and hand it to the next
anonymous request for the same address.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# `img-src data:` only for the page's empty favicon (`data:,`), which keeps browsers from asking for /favicon.ico.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
                           "base-uri 'none'; form-action 'self'")
ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
          (b"referrer-policy", b"same-origin"))
VARY = b"X-Ledgerlm-Read, Cookie, Authorization"
CREDENTIALS = (b"x-ledgerlm-read", b"cookie", b"authorization")
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the headers above to every HTTP answer; `exempt` paths (FastAPI's API docs, which load their
    viewer from a CDN with inline script) get all but the content security policy."""

    def __init__(self, app: ASGIApp, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.exempt = app, tuple(p for p in exempt if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_policy = scope["path"] not in self.exempt
        personal = any(k.lower() in CREDENTIALS for k, _ in scope.get("headers", []))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                replaced = {*dict(ALWAYS), b"vary", *((NO_STORE[0],) if personal else ())}
                given = message.get("headers", [])
                headers = [(k, v) for k, v in given if k.lower() not in replaced]
                headers.extend(ALWAYS)
                headers.append((b"vary", b", ".join([*(v for k, v in given if k.lower() == b"vary"), VARY])))
                if personal:
                    headers.append(NO_STORE)
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if with_policy and content_type.lower().startswith(b"text/html"):
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secured(response, with_policy: bool = True):
    """`response` with the same headers, for answers made outside the middleware (the last-resort 500 handler
    runs outside every middleware)."""
    for name, value in ALWAYS:
        response.headers[name.decode()] = value.decode()
    response.headers["vary"] = VARY.decode()
    if with_policy and response.headers.get("content-type", "").lower().startswith("text/html"):
        response.headers["content-security-policy"] = CONTENT_SECURITY_POLICY
    return response
