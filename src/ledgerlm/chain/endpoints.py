"""JSON-RPC endpoint URLs as anyone may see them: a hosted endpoint carries its key in the URL."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)]+")


def public_url(url: str) -> str:
    """An endpoint as anyone may see it: scheme, host and port. Hosted endpoints carry their credential in the
    userinfo, the path (Infura's /v3/KEY, Alchemy's /v2/KEY) or the query, so those are never shown."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<the configured chain URL>"
    host = f"[{host}]" if ":" in host else host
    hidden = "/***" if parts.username or parts.password or parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


def scrub_urls(text: str) -> str:
    """`text` with every URL in it cut to `public_url`: an HTTP client's error names the URL it called ("429
    Client Error ... for url: https://host/v2/KEY"), and chain errors reach callers."""
    return _URL.sub(lambda m: public_url(m.group(0)), text)
