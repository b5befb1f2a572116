"""`ledgerlm keys`: create and inspect the encrypted keys that sign every action."""

from __future__ import annotations

import sys

import typer

from ledgerlm.cli.session import Table, console, new_passphrase, session
from ledgerlm.errors import LedgerError

app = typer.Typer(help="Manage signing keys (encrypted keystore v3 files in the home).", no_args_is_help=True)


@app.command("new")
def new(ctx: typer.Context, name: str = typer.Argument(..., help="A name for the key, e.g. alice.")):
    """Create a secp256k1 key; the passphrase comes from LEDGERLM_PASSPHRASE or a prompt."""
    s = session(ctx)
    passphrase = new_passphrase("a new key")
    info = s.keyring().new(name, passphrase)
    s.emit(info, lambda i: console.print(f"[green]key {i.name}[/] {i.address}\n  stored at {i.path}"))


@app.command("list")
def list_keys(ctx: typer.Context):
    """List the keys in this home."""
    s = session(ctx)
    keys = s.keyring().list()

    def render(items):
        table = Table("name", "address")
        for k in items:
            table.add_row(k.name, k.address)
        console.print(table)

    s.emit(keys, render)


@app.command("show")
def show(ctx: typer.Context, name: str):
    """Show one key's address and file."""
    s = session(ctx)
    s.emit(s.keyring().show(name), lambda i: console.print(f"{i.name} {i.address}\n  {i.path}"))


@app.command("import")
def import_key(ctx: typer.Context, name: str = typer.Argument(..., help="A name for the key.")):
    """Import a private key (hex) from LEDGERLM_PRIVATE_KEY or a prompt, e.g. a funded dev account."""
    import os

    s = session(ctx)
    secret = os.environ.get("LEDGERLM_PRIVATE_KEY")
    if secret is None:
        if not sys.stdin.isatty():
            raise LedgerError("set LEDGERLM_PRIVATE_KEY to the hex private key to import", field="private_key")
        secret = typer.prompt("Private key (hex)", hide_input=True)
    passphrase = new_passphrase("an imported key")
    try:
        key = bytes.fromhex(secret.strip().removeprefix("0x"))
        if len(key) != 32:
            raise ValueError
    except ValueError:
        raise LedgerError("the private key must be 32 bytes of hex", field="private_key") from None
    info = s.keyring().new(name, passphrase, private_key=key)
    s.emit(info, lambda i: console.print(f"[green]imported key {i.name}[/] {i.address}"))
