"""The dashboard: server-rendered pages over the rooms' public functions, mounted at / beside the JSON API."""

from ledgerlm.web.app import is_page, mount_dashboard, render_error

__all__ = ["is_page", "mount_dashboard", "render_error"]
