"""The HTTP API: thin FastAPI routers over the rooms' public functions."""

from ledgerlm.api.app import create_app

__all__ = ["create_app"]
