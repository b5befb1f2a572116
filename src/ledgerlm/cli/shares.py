"""`ledgerlm shares`: revenue shares in Datanets and models — preview, issue, show, holders, claim, transfer."""

from __future__ import annotations

import typer

from ledgerlm.cli.chain import resolve_address
from ledgerlm.cli.session import Table, console, session
from ledgerlm.errors import LedgerError
from ledgerlm.units import format_amount, parse_amount

app = typer.Typer(help="Revenue shares: one ERC-20 per Datanet or model whose holders are paid its revenue "
                       "each epoch.", no_args_is_help=True)

ASSET_HELP = "datanet:NAME, model:ID, a bare name or id, or the token address."


DATANET_OPTION = typer.Option(None, "--datanet", help="Shares in this Datanet (its owner signs the issue).")
MODEL_OPTION = typer.Option(None, "--model", help="Shares in this published model (its developer signs the issue).")
SUPPLY_OPTION = typer.Option("1000000", help="Whole shares to create, fixed forever (18 decimals).")
VERSION_OPTION = typer.Option(0, min=0, help="Datanet version whose data valuation sets the allocation: 0 or the "
                                             "latest's number (an older one is refused).")


def _asset(datanet: str | None, model: str | None) -> tuple[str, str]:
    if (datanet is None) == (model is None):
        raise LedgerError("give exactly one of --datanet NAME or --model ID", field="asset")
    return ("datanet", datanet) if datanet else ("model", model)


@app.command()
def preview(
    ctx: typer.Context,
    datanet: str | None = DATANET_OPTION,
    model: str | None = MODEL_OPTION,
    supply: str = SUPPLY_OPTION,
    version: int = VERSION_OPTION,
    as_key: str | None = typer.Option(None, "--as", help="Read a private Datanet's allocation as this key (its "
                                                         "owner or a member)."),
):
    """Show the allocation an issue would make and the Merkle root its owner signs, without signing anything."""
    s = session(ctx)
    kind, asset = _asset(datanet, model)
    result = s.client().shares.preview(kind, asset, supply=parse_amount(supply, field="supply"), version=version,
                                       account=s.unlock(as_key) if as_key else None)

    def render(r):
        supply = int(r["supply"])
        console.print(f"{r['kind']} {r['asset']}: {format_amount(supply)} shares"
                      + (f" valued at version {r['version']}" if r["version"] else "")
                      + (f", owner {r['owner']} ({r['owner_bps'] / 100:.2f}% owner share)" if r["kind"] == "datanet"
                         else f", developer {r['owner']} (all of them)"))
        table = Table("account", "shares", "share")
        for leaf in sorted(r["allocation"], key=lambda x: (-int(x["amount"]), x["account"])):
            table.add_row(leaf["account"], format_amount(int(leaf["amount"])),
                          f"{int(leaf['amount']) * 10_000 // supply / 100:.2f}%")
        console.print(table)
        console.print(f"allocation root {r['allocation_root']}; token {r['name']!r} ({r['symbol']})")

    s.emit(result, render)


@app.command()
def issue(
    ctx: typer.Context,
    datanet: str | None = DATANET_OPTION,
    model: str | None = MODEL_OPTION,
    as_key: str = typer.Option(..., "--as", help="The Datanet owner's or the model developer's key."),
    supply: str = SUPPLY_OPTION,
    version: int = VERSION_OPTION,
):
    """Issue an asset's revenue shares once: a model's go to its developer, a Datanet's to its contributors by
    the value of their accepted data plus the owner's share its policy names (`datanet create --owner-share`,
    `datanet owner-share`), as a Merkle drop anyone can verify and claim. The key checks the allocation the node
    previews (`shares preview`) and signs its root twice: for the node, and for the RevenueShareFactory, which
    creates the token only on that signature."""
    s = session(ctx)
    kind, asset = _asset(datanet, model)
    result = s.client().shares.issue(s.unlock(as_key), kind, asset, supply=parse_amount(supply, field="supply"),
                                     version=version)
    s.emit(result, lambda r: console.print(
        f"[green]issued[/] {format_amount(int(r['supply']))} {r['symbol']} for {r['ref']} at {r['token']} "
        f"(tx {r['tx']}); {len(r['allocation'])} allocation leaves under root {r['allocation_root']}"))


@app.command("list")
def list_assets(ctx: typer.Context):
    """Every asset with shares: token, symbol and supply."""
    s = session(ctx)

    def render(rows):
        table = Table("asset", "symbol", "token", "supply", "allocated at version")
        for r in rows:
            table.add_row(r["ref"], r["symbol"], r["token"] or "(pending)", format_amount(int(r["supply"])),
                          str(r["version"] or "-"))
        console.print(table)

    s.emit(s.client().shares.list(), render)


@app.command()
def show(ctx: typer.Context, asset: str = typer.Argument(..., help=ASSET_HELP)):
    """One asset's shares and what holders earned each epoch, per whole share."""
    s = session(ctx)

    def render(r):
        console.print(f"[bold]{r['ref']}[/] {r['symbol']} at {r['token']}  supply {format_amount(int(r['supply']))}")
        console.print(f"  allocation root {r['allocation_root']} ({len(r['allocation'])} leaves"
                      + (f", valued at version {r['version']})" if r["version"] else ")"))
        table = Table("epoch", "state", "closing block", "revenue (LGR)", "per share (LGR)", "holders", "sources")
        for e in r["earnings"]["epochs"]:
            table.add_row(str(e["epoch"]), e["state"], str(e["block"]), format_amount(int(e["revenue"])),
                          format_amount(int(e["per_share"])), str(e["holders"]),
                          ", ".join(f"{k} {format_amount(int(v))}" for k, v in e["sources"].items()))
        console.print(table if r["earnings"]["epochs"] else "  no epoch has paid holders yet")

    s.emit(s.client().shares.show(asset), render)


@app.command()
def holders(
    ctx: typer.Context, asset: str = typer.Argument(..., help=ASSET_HELP),
    block: int | None = typer.Option(None, help="Holders at the end of this block \\[default: the chain head]."),
):
    """Who holds an asset's shares (allocations not yet claimed count for their account)."""
    s = session(ctx)

    def render(r):
        burned = int(r.get("burned") or 0)
        console.print(f"{r['asset']} at block {r['block']}, supply {format_amount(int(r['supply']))}"
                      + (f", {format_amount(burned)} burned (sent to the token itself; they earn nothing)"
                         if burned else ""))
        table = Table("account", "shares", "unclaimed allocation", "share")
        for h in r["holders"]:
            table.add_row(h["account"], format_amount(int(h["balance"])),
                          format_amount(int(h["unclaimed_allocation"])), f"{h['bps'] / 100:.2f}%")
        console.print(table)

    s.emit(s.client().shares.holders(asset, block), render)


@app.command()
def claim(ctx: typer.Context, asset: str = typer.Argument(..., help=ASSET_HELP),
          as_key: str = typer.Option(..., "--as", help="The key whose allocation to claim (pays the gas).")):
    """Move your allocation from the drop into your wallet (it earns either way)."""
    s = session(ctx)
    tx = s.client().shares.claim(s.unlock(as_key), asset)
    s.emit({"claimed": tx is not None, "tx_hash": tx["tx_hash"] if tx else None},
           lambda r: console.print(f"[green]claimed[/] (tx {r['tx_hash']})" if r["claimed"]
                                   else "nothing to claim: no allocation, or claimed already"))


@app.command()
def transfer(
    ctx: typer.Context, asset: str = typer.Argument(..., help=ASSET_HELP),
    to: str = typer.Argument(..., help="Address or key name."),
    amount: str = typer.Argument(..., help="Shares to send, e.g. 250 or 0.5."),
    as_key: str = typer.Option(..., "--as", help="The holder's key (signs the ERC-20 transfer, pays the gas)."),
):
    """Send shares; from the next epoch close on, their revenue goes to the new holder."""
    s = session(ctx)
    tx = s.client().shares.transfer(s.unlock(as_key), asset, resolve_address(s, to), parse_amount(amount))
    s.emit(tx, lambda t: console.print(f"sent {amount} shares of {asset} (tx {t['tx_hash']})"))
