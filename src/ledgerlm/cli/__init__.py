"""The `ledgerlm` command line: thin Typer commands over the SDK, one module per room."""

from ledgerlm.cli.main import app


def main() -> None:
    app()


__all__ = ["app", "main"]
