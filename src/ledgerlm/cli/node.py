"""`ledgerlm node`: the node URLs this home has pinned to a key and signing domain before signing reads for them."""

from __future__ import annotations

import typer

from ledgerlm.cli.session import Table, console, session
from ledgerlm.errors import LedgerError

app = typer.Typer(help="Known nodes: the key each node URL reported when this home first signed a read for it.",
                  no_args_is_help=True)


@app.command("known")
def known(ctx: typer.Context):
    """List the pinned node URLs with their key and signing domain."""
    s = session(ctx)

    def render(nodes) -> None:
        table = Table("url", "node key", "signing domain")
        for n in nodes:
            table.add_row(n.url, n.node_address, ", ".join(f"{k} {v}" for k, v in sorted(n.signing_domain.items())))
        console.print(table)
        console.print(f"kept in {s.home.known_nodes_path}", highlight=False)

    s.emit(s.known_nodes().nodes(), render)


@app.command("trust")
def trust(ctx: typer.Context, url: str = typer.Argument(..., help="The node's URL, e.g. http://10.0.0.2:8547.")):
    """Pin URL to the key and domain it reports now, replacing its pin, also when another URL knows that key
    (another name for the same node, or a node sharing its key and database)."""
    from ledgerlm.client import NodeClient

    s = session(ctx)
    client = NodeClient.connect(url)
    try:
        info = client.info()
    finally:
        client.close()
    if not isinstance(info.get("node_address"), str) or not isinstance(info.get("signing_domain"), dict):
        raise LedgerError(f"the node at {url} names no node_address and signing_domain in /node/info", field="node")
    pinned = s.known_nodes().trust(url, info["node_address"], info["signing_domain"])
    s.emit(pinned, lambda n: console.print(f"[green]pinned[/] {n.url} to key {n.node_address}", highlight=False))


@app.command("forget")
def forget(ctx: typer.Context, url: str = typer.Argument(..., help="The node URL to forget.")):
    """Drop URL's pin: the next read signed for it pins whatever it reports then."""
    s = session(ctx)
    dropped = s.known_nodes().forget(url)
    if dropped is None:
        raise LedgerError(f"this home has no pin for {url} (`ledgerlm node known` lists them)", field="url")
    s.emit(dropped, lambda n: console.print(f"forgot {n.url} (key {n.node_address})", highlight=False))
