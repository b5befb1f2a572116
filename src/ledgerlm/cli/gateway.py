"""`ledgerlm gateway`: one OpenAI-compatible endpoint in front of several serving nodes."""

from __future__ import annotations

import typer

from ledgerlm.cli.session import console, session
from ledgerlm.errors import LedgerError


def gateway(
    ctx: typer.Context,
    nodes: list[str] = typer.Option(..., "--node", help="A serving node's URL (`ledgerlm serve`); repeat for each "
                                                         "node. All must be one deployment sharing one database."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8548, help="Port to listen on."),
    health_interval: float = typer.Option(2.0, help="Seconds between status checks of every node."),
    failover_wait: float = typer.Option(30.0, help="Most seconds a retry waits for a call a silent node still holds."),
    read_timeout: float = typer.Option(300.0, help="Seconds without an answer head before a node is taken as lost."),
    down_after: int = typer.Option(3, help="Calls failing in a row on a node (5xx, refused, silent) that take it out "
                                           "of rotation."),
    down_backoff: float = typer.Option(10.0, help="Least seconds a node taken out stays out (doubled each time it "
                                                  "fails again); it returns at the next status check that succeeds."),
):
    """Route completions to the node that has the model warm (else by consistent hashing on the model), check
    nodes' health, fail over before an answer starts, and keep receipts exactly-once with an Idempotency-Key."""
    import uvicorn

    from ledgerlm.gateway import GatewaySettings, create_gateway_app

    s = session(ctx)
    for url in nodes:
        if not url.startswith(("http://", "https://")):
            raise LedgerError(f"--node {url!r} is not an http(s) URL", field="node")
    for name, value in (("health_interval", health_interval), ("failover_wait", failover_wait),
                        ("read_timeout", read_timeout)):
        if value <= 0:
            raise LedgerError(f"--{name.replace('_', '-')} must be positive", field=name)
    if down_after < 1:
        raise LedgerError("--down-after must be at least 1", field="down_after")
    if down_backoff < 0:
        raise LedgerError("--down-backoff must not be negative", field="down_backoff")
    settings = GatewaySettings(tuple(nodes), health_interval=health_interval, failover_wait=failover_wait,
                               read_timeout=read_timeout, down_after=down_after, down_backoff=down_backoff,
                               down_backoff_max=max(300.0, down_backoff))
    url = f"http://{host}:{port}"
    s.emit({"url": url, "nodes": list(nodes)}, lambda r: console.print(
        f"[green]ledgerlm gateway[/] on {r['url']} in front of {', '.join(r['nodes'])}  (status: /gateway/status)"))
    from ledgerlm.http_protocol import HeaderDeadline

    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any loopback client as the caller's
    # address, and the gateway passes the address it sees to the nodes (their per-caller limits and scopes)
    uvicorn.run(create_gateway_app(settings), host=host, port=port, log_level="warning", http=HeaderDeadline,
                proxy_headers=False)
