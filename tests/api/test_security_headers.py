"""Every answer tells the browser not to sniff types, not to be framed and not to leak page addresses; the
dashboard's pages also carry a content security policy that lets them load only from the node itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.api.headers import CONTENT_SECURITY_POLICY
from ledgerlm.node import Node
from ledgerlm.web.render import STATIC, TEMPLATES


def assert_always(response):
    assert response.headers["x-content-type-options"] == "nosniff", response.url
    assert response.headers["x-frame-options"] == "DENY", response.url
    assert response.headers["referrer-policy"] == "same-origin", response.url


def test_pages_carry_the_policy_and_json_the_plain_headers(http):
    for path in ("/", "/web/datanets", "/web/models", "/web/ledger", "/web/datanets/missing"):
        page = http.get(path)
        assert page.headers["content-type"].startswith("text/html"), path
        assert_always(page)
        policy = page.headers["content-security-policy"]
        assert policy == CONTENT_SECURITY_POLICY
        for directive in ("default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"):
            assert directive in policy, directive
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for path in ("/node/info", "/datanets", "/no/such/route", "/web/static/ledgerlm.js"):
        answer = http.get(path)
        assert_always(answer)
        assert "content-security-policy" not in answer.headers, path
    refused = http.post("/models/base", json={"name": "etc", "path": "/etc"})
    assert refused.status_code == 401
    assert_always(refused)


def test_an_unexpected_failure_still_carries_the_headers(home):
    # the last-resort handler answers outside every middleware, so it adds the headers itself
    app = create_app(lambda: Node.open(home))

    @app.get("/web/fails")
    def fails():
        raise RuntimeError("/srv/secret/path")

    with TestClient(app, raise_server_exceptions=False) as http:
        page = http.get("/web/fails")
        assert page.status_code == 500 and "/srv/secret" not in page.text
        assert_always(page)
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_the_api_docs_keep_their_cdn_viewer(http):
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert_always(docs)
    assert "content-security-policy" not in docs.headers


def test_the_dashboard_needs_nothing_the_policy_refuses():
    """No inline script, inline style or event-handler attribute, and nothing loaded from another origin."""
    for template in sorted(TEMPLATES.glob("*.html")):
        text = re.sub(r"\{#.*?#\}", "", template.read_text(), flags=re.S)  # template comments are not sent
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:|hx-on", text), template.name
        assert not re.search(r"(src|href|action)=\"(https?:)?//", text), template.name
    script = (STATIC / "ledgerlm.js").read_text()
    assert not re.search(r"style=|\beval\(|new Function|setAttribute\(\"style\"", script)
