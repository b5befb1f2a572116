"""`ledgerlm demo --quick`: the whole economy loop on a tiny model, with a table of who earned what."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import typer

from ledgerlm.cli.session import Table, console, session
from ledgerlm.errors import LedgerError
from ledgerlm.units import format_amount


def demo(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="Tiny random model, one-second round phases (about 2 minutes)."),
    directory: Path | None = typer.Option(None, "--dir", help="Where to create the demo home [default: a temp dir]."),
):
    """Run the whole loop: data, validation, fine-tune, paid calls, epoch close, claims, tokens in = out."""
    from ledgerlm.demo import run_quick_demo

    s = session(ctx)
    if not quick:
        raise LedgerError("only the quick demo runs here; `make demo` runs the full story with SmolLM2", field="quick")
    root = directory or Path(tempfile.mkdtemp(prefix="ledgerlm-demo-"))
    started = time.perf_counter()
    say = (lambda _: None) if s.as_json else (lambda line: console.print(f"[bold blue]▶[/] {line}"))
    result = run_quick_demo(root / "home", say=say)
    payload = {"home": str(root / "home"), "epoch": result.epoch, "receipts": result.receipts,
               "charged": str(result.charged), "slashed": str(result.slashed), "claimed": {a: str(v) for a, v in result.claimed.items()},
               "roles": {a: {k: str(v) for k, v in r.items()} for a, r in result.roles.items()},
               "names": result.names, "balanced": result.balanced, "verified": result.verified,
               "seconds": round(time.perf_counter() - started, 1)}

    def render(p):
        table = Table("who", "address", "earned LGR", "for")
        for account, amount in sorted(result.claimed.items(), key=lambda kv: -kv[1]):
            why = ", ".join(f"{role} {format_amount(v)}" for role, v in result.roles[account].items())
            table.add_row(result.names.get(account, "?"), account, format_amount(amount), why)
        console.print(table)
        console.print(f"tokens in: consumers charged {format_amount(result.charged)} LGR + slashed bonds "
                      f"{format_amount(result.slashed)} LGR; tokens out (claimed): "
                      f"{format_amount(sum(result.claimed.values()))} LGR — "
                      + ("[green]equal to the base unit[/]" if result.balanced else "[red]NOT equal[/]"))
        console.print(f"epoch {result.epoch} verified against the chain: "
                      + ("[green]yes[/]" if result.verified else "[red]no[/]") + f"  ({p['seconds']} s)")

    s.emit(payload, render)
    if not (result.balanced and result.verified):
        raise typer.Exit(1)
