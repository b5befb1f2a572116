"""Mounts the dashboard on the node's FastAPI app and renders every error a page meets as a readable page."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ledgerlm.web.render import STATIC, page

log = logging.getLogger("ledgerlm.web")

TITLES = {400: "That request cannot be served", 401: "A signature is needed", 403: "Not allowed",
          404: "Not found", 409: "Conflict", 422: "Check the form", 500: "The node failed", 503: "Not available yet"}


def is_page(request: Request) -> bool:
    """Dashboard pages are what a browser navigates to: GET / and GET /web/... (not the static files)."""
    path = request.url.path
    return request.method in ("GET", "HEAD") and (
        path == "/" or (path.startswith("/web/") and not path.startswith("/web/static/")) or path == "/web")


def render_error(request: Request, status: int, message: str, field: str | None = None) -> HTMLResponse:
    """The error page: what went wrong in words, the field it concerns, and a way back (for a part of a
    page that htmx fetched: the sentence alone)."""
    if request.headers.get("hx-request"):
        from markupsafe import escape

        return HTMLResponse(f'<p class="error-message">{escape(message)}</p>', status_code=status)
    return page(request, "error.html", status_code=status, status=status,
                title=TITLES.get(status, "Something went wrong"), message=message, field=field)


def mount_dashboard(app: FastAPI) -> None:
    from ledgerlm.web import datanets, economy, ledger, models, playground, signing, validation

    app.mount("/web/static", StaticFiles(directory=STATIC), name="web-static")
    for module in (datanets, validation, models, playground, economy, ledger, signing):
        app.include_router(module.router, include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def home(request: Request):
        from ledgerlm.web.overview import overview

        return page(request, "home.html", **overview(request.app.state.node))
