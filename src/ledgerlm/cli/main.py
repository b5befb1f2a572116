"""The `ledgerlm` command: global options, `init`, `serve`, and the room sub-commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ledgerlm.cli.session import LedgerGroup, Session, console, record_running, session
from ledgerlm.config import EMBEDDED, Home
from ledgerlm.errors import LedgerError

app = typer.Typer(
    cls=LedgerGroup,
    help="ledgerlm: Datanets, validation, fine-tuning, attributed inference and on-chain settlement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(None, "--home", envvar="LEDGERLM_HOME", help="Node home directory [default: ~/.ledgerlm]"),
    node: str | None = typer.Option(None, "--node", envvar="LEDGERLM_NODE", help="Talk to a running node at this URL instead of the home."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
):
    if not sys.stderr.isatty():
        # a redirected log gets no carriage-return bars ("Loading weights: 40%|...") from the model libraries;
        # read when they are first imported, which is after this
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    s = Session(Home.resolve(home), node, as_json)
    ctx.obj = s
    ctx.call_on_close(s.close)


@app.command()
def init(
    ctx: typer.Context,
    chain: str = typer.Option(EMBEDDED, "--chain-url", help="'embedded' (in-process EVM) or a JSON-RPC URL."),
    chain_id: int | None = typer.Option(
        None, "--chain-id", help="Chain id: of the embedded chain [default: 1337]; for --chain-url, checked against the chain."),
    db: str = typer.Option(
        "", "--db", envvar="LEDGERLM_DATABASE_URL",
        help="Database URL: postgresql://USER:PASSWORD@HOST:PORT/NAME, which several nodes may share "
             "(default: the SQLite file ledger.db in the home)."),
    blobs: str = typer.Option(
        "", "--blobs", help="Keep blobs in an S3-compatible bucket, s3://bucket/prefix [default: the home's blobs "
        "directory]. Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a boto3 profile)."),
    s3_endpoint_url: str = typer.Option(
        "", "--s3-endpoint-url", help="S3 endpoint for --blobs, e.g. http://127.0.0.1:9000 for a local server "
        "[default: AWS_ENDPOINT_URL_S3, else AWS]."),
):
    """Create the node home: config, database (SQLite in the home, or PostgreSQL with --db; migrated), blob
    store, node key."""
    from ledgerlm.node import Node

    s = session(ctx)
    node = Node.init(s.home, chain=chain, chain_id=chain_id, database_url=db, blobs=blobs,
                     s3_endpoint_url=s3_endpoint_url)
    try:
        info = {**node.info(), "database_url": node.db.display_url}  # the operator's own output: password masked
    finally:
        node.close()
    s.emit(info, lambda i: console.print(
        f"[green]ledgerlm home ready[/] at {i['home']}\n  node address {i['node_address']}\n"
        f"  chain {i['chain']} (id {i['chain_id']}), database {i['database_url']}, schema revision "
        f"{i['schema_revision']}\n  blobs {i['blobs']}"
    ))


@app.command()
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Interface to bind [default: config host, 127.0.0.1]."),
    port: int | None = typer.Option(None, help="Port [default: config port, 8547]."),
):
    """Run the node's HTTP API (OpenAPI docs at /docs) and the web dashboard (at /); CLI calls on this home go
    through it."""
    import uvicorn

    from ledgerlm.api import create_app

    s = session(ctx)
    config = s.home.load_config()
    host = host or config.host
    port = port or config.port
    if not 0 < port < 65536:
        raise LedgerError(f"port must be between 1 and 65535, not {port}", field="port")
    _require_free_port(host, port)
    if config.serving_engine != "builtin":  # a host that cannot run vLLM says so now, not at the first call
        from ledgerlm.serving.vllm_engine import serving_engine_kind

        console.print(f"serving engine: {serving_engine_kind(config.serving_engine)}")
    from ledgerlm.http_protocol import HeaderDeadline

    class RecordedServer(uvicorn.Server):
        """Records itself for CLI calls on this home once its port listens: written before, a call made right
        after `ledgerlm serve &` was refused a connection."""

        record = None

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                self.record = record_running(s.home, _local_url(host, port))

    server = RecordedServer(uvicorn.Config(create_app(lambda: _open_serving(s.home)), host=host, port=port,
                                           log_level="info", http=HeaderDeadline))
    try:
        console.print(f"[green]ledgerlm node[/] on http://{host}:{port}  (dashboard: /, API docs: /docs)")
        server.run()
    finally:
        if server.record is not None:
            server.record.unlink(missing_ok=True)


def _require_free_port(host: str, port: int) -> None:
    """Refuse a port another process listens on before the node loads (which takes a while), with the one-line
    error every refusal has, rather than uvicorn's after it."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise LedgerError(f"host {host!r} cannot be bound: {exc.strerror}", field="host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LedgerError(f"port {port} on {host} is in use by another process (another `ledgerlm serve`?); "
                                  "stop it or pass --port", field="port") from None
            raise LedgerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="port") from None


def _local_url(host: str, port: int) -> str:
    """The URL CLI calls on this machine reach a node bound to `host` at: a wildcard bind (0.0.0.0, ::) by
    loopback, and an IPv6 address in brackets (http://:::8547 is no URL)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _open_serving(home: Home):
    """The node `serve` runs, after it finished what a previous run left unfinished (anchors, slashes, share
    tokens, an epoch close, receipts awaiting attribution)."""
    from ledgerlm.node import Node

    node = Node.start(home)
    finished = {k: v for k, v in node.started.items() if k != "errors" and v}
    if finished:
        console.print("finished what a previous run left: " + ", ".join(f"{v} {k}" for k, v in finished.items()))
    for error in node.started.get("errors", []):
        console.print(f"[yellow]left for the next start[/]: {error}")
    return node


@app.command()
def info(ctx: typer.Context):
    """Show the node's version, chain id and address."""
    s = session(ctx)

    def render(i: dict) -> None:
        lines = [f"ledgerlm {i['ledgerlm']} node {i['node_address']}",
                 f"  chain {i['chain']} (id {i['chain_id']}), database {i.get('database', '-')}"]
        if i.get("home"):
            lines.append(f"  home {i['home']}")
        lines += [f"  {name} {address}" for name, address in (i.get("contracts") or {}).items()]
        console.print("\n".join(lines), highlight=False)

    s.emit(s.client().info(), render)


def _register_rooms() -> None:
    from ledgerlm.cli import (
        agent,
        attribution,
        chain,
        datanet,
        demo,
        economy,
        factory,
        gateway,
        keys,
        node,
        provider,
        serving,
        shares,
        validate,
    )

    app.add_typer(keys.app, name="keys")
    app.add_typer(node.app, name="node")
    app.add_typer(datanet.app, name="datanet")
    app.add_typer(chain.app, name="chain")
    app.add_typer(economy.epoch_app, name="epoch")
    app.command()(economy.claim)
    app.command()(economy.deposit)
    app.command()(demo.demo)
    app.command()(economy.earnings)
    app.add_typer(factory.models_app, name="models")
    app.add_typer(factory.app, name="factory")
    app.add_typer(validate.app, name="validate")
    app.add_typer(attribution.eval_app, name="eval")
    app.add_typer(serving.apikey_app, name="apikey")
    app.add_typer(serving.receipts_app, name="receipts")
    app.add_typer(agent.app, name="agent")
    app.add_typer(shares.app, name="shares")
    app.add_typer(provider.app, name="provider")
    app.command()(agent.mcp)
    app.command()(gateway.gateway)
    app.command()(attribution.attribute)
    for command in (chain.balance, chain.stake, chain.unstake, chain.withdraw, chain.transfer):
        app.command()(command)


_register_rooms()

