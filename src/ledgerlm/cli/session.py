"""What every CLI command shares: the home, the node it talks to, and how results are printed."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table as RichTable
from typer.core import TyperGroup

from ledgerlm.config import Home
from ledgerlm.errors import LedgerError

# Wide enough that no hash, address or error line is ever folded, and tables take their natural width.
PIPE_WIDTH = 100_000
# the operator credential of a node this home does not run (operating it from afar); the home's own is never sent there
OPERATOR_TOKEN_ENV = "LEDGERLM_OPERATOR_TOKEN"


class Output(Console):
    """A rich console that wraps to the terminal for people and never wraps when piped to a file or program.

    Output that may be piped carries hashes, addresses and one-line errors that people copy and grep;
    a fold at column 80 (or at whatever `COLUMNS` says) would break them.
    """

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal:
            return super().size
        return ConsoleDimensions(PIPE_WIDTH, super().size.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)

    def print(self, *objects, **kwargs) -> None:
        if not self.is_terminal:
            kwargs.setdefault("soft_wrap", True)
        super().print(*objects, **kwargs)


console = Output()
err_console = Output(stderr=True)


class Table(RichTable):
    """A rich table whose cells fold onto more lines in a narrow terminal instead of ending in "…": an
    address or hash cut short cannot be copied or checked."""

    def add_column(self, header="", *args, overflow="fold", **kwargs) -> None:
        super().add_column(header, *args, overflow=overflow, **kwargs)


def shortened(value: str, keep: int) -> str:
    """A hash or address cut to `keep` characters in a terminal's table, whole when piped for grep and copying."""
    value = str(value)
    return value[:keep] + "…" if console.is_terminal and len(value) > keep + 1 else value


@dataclass
class Session:
    home: Home
    node_url: str | None
    as_json: bool
    _client: Any = None
    _closers: list = field(default_factory=list)

    def client(self):
        """A client of the running node: `--node URL`, the server already serving this home, or
        the same app run in-process over the home."""
        if self._client is not None:
            return self._client
        from ledgerlm.client import NodeClient

        url = self.node_url or running_node_url(self.home)
        if url:
            self._client = NodeClient.connect(url, operator_token=self.operator_token(url),
                                              known_nodes=self.known_nodes())
        else:
            from fastapi.testclient import TestClient

            from ledgerlm.api import create_app
            from ledgerlm.node import Node

            self.home.require()
            app = create_app(lambda: Node.open(self.home))
            # In-process calls come from this machine: a loopback client address, as on a socket.
            http = TestClient(app, base_url="http://localhost", client=("127.0.0.1", 50000))
            http.__enter__()
            self._closers.append(lambda: http.__exit__(None, None, None))
            self._client = NodeClient(http, operator_token=self.operator_token())
        self._closers.append(self._client.close)
        return self._client

    def reading_client(self, as_key: str | None):
        """The client, signing short-lived read requests as `as_key` when one is given."""
        client = self.client()
        if as_key:
            client.reader = self.unlock(as_key)
        return client

    def known_nodes(self):
        """This home's pins of node URLs to the key and domain each reported (the nodes it serves follow theirs)."""
        from ledgerlm.identity.known_nodes import KnownNodes

        return KnownNodes(self.home.known_nodes_path, own_urls=[n["url"] for n in running_nodes(self.home)])

    def operator_token(self, url: str | None = None) -> str | None:
        """The operator credential sent with every request to `url` (None: in-process) so operator routes work:
        the home's own to a node this home runs (and in-process), never to another `--node URL`, whose operator
        could use it on this home's node; to another node, LEDGERLM_OPERATOR_TOKEN where set."""
        own = url is None or any(_same_node(url, node["url"]) for node in running_nodes(self.home))
        if not own:
            return os.environ.get(OPERATOR_TOKEN_ENV, "").strip() or None
        path = self.home.operator_token_path
        if path.exists():
            return path.read_text().strip()
        if self.home.exists() and not (self.node_url or running_node_url(self.home)):
            from ledgerlm.node import read_operator_token

            return read_operator_token(self.home)  # a home created before operator tokens existed
        return None

    def keyring(self):
        from ledgerlm.identity import Keyring  # eth-account loads only for commands that use keys

        return Keyring(self.home.keys)

    def unlock(self, name: str):
        from ledgerlm.identity import passphrase_from_env

        passphrase = passphrase_from_env()
        if passphrase is None:
            if not sys.stdin.isatty():
                raise LedgerError(f"key {name!r} needs a passphrase: set LEDGERLM_PASSPHRASE", field="passphrase")
            passphrase = typer.prompt(f"Passphrase for key {name!r}", hide_input=True)
        return self.keyring().unlock(name, passphrase)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:
                pass

    def emit(self, data: Any, render: Callable[[Any], None] | None = None) -> None:
        if self.as_json or render is None:
            # stdlib json: balances in wei exceed the 64-bit integers orjson writes.
            sys.stdout.write(json.dumps(_plain(data), indent=2) + "\n")
        else:
            render(data)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 receipt', '2 receipts': a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _plain(data: Any) -> Any:
    if callable(getattr(data, "model_dump", None)):  # a pydantic model, told apart without importing pydantic
        return data.model_dump(by_alias=True)
    if isinstance(data, list):
        return [_plain(d) for d in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if hasattr(data, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(data)
    return data


def record_running(home: Home, url: str) -> Path:
    """Record this process as serving `home` at `url`, beside the records of other nodes on the home."""
    running_nodes(home)  # drops the records of nodes that have ended
    home.running_dir.mkdir(parents=True, exist_ok=True)
    path = home.running_dir / f"{os.getpid()}.json"
    partial = path.with_suffix(".partial")  # a reader never sees half a record
    partial.write_text(json.dumps({"url": url, "pid": os.getpid(), "started": time.time()}))
    os.replace(partial, path)
    return path


def running_nodes(home: Home) -> list[dict]:
    """The `ledgerlm serve` processes still alive on this home, first started first; the records of
    processes that have ended are removed."""
    records = []
    # node.json: the single record of a node started by an earlier version
    paths = [*sorted(home.running_dir.glob("*.json")), home.root / "node.json"] if home.root.exists() else []
    for path in paths:
        try:
            record = json.loads(path.read_text())
            pid, url = int(record["pid"]), str(record["url"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)
            continue
        records.append({"url": url, "pid": pid, "started": float(record.get("started") or 0)})
    return sorted(records, key=lambda r: r["started"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # a process of another user: alive, though not ours to signal
        return True
    except (OSError, OverflowError):
        return False
    return True


def _same_node(url: str, served: str) -> bool:
    """Whether `url` reaches the node served at `served`: same scheme and port, and the same host or both this
    machine's (a node bound to every address answers on loopback too)."""
    from urllib.parse import urlsplit

    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
    try:
        a, b = urlsplit(url.strip()), urlsplit(served.strip())
        ports = (a.port or (443 if a.scheme == "https" else 80), b.port or (443 if b.scheme == "https" else 80))
    except ValueError:
        return False
    hosts = ((a.hostname or "").lower(), (b.hostname or "").lower())
    same_host = hosts[0] == hosts[1] or (hosts[0] in local and hosts[1] in local)
    return a.scheme == b.scheme and ports[0] == ports[1] and same_host


def running_node_url(home: Home) -> str | None:
    """The URL of a `ledgerlm serve` still alive on this home (the first started), if there is one."""
    nodes = running_nodes(home)
    return nodes[0]["url"] if nodes else None


def new_passphrase(needed_by: str, prompt: str = "Passphrase") -> str:
    """The passphrase for a key about to be written: LEDGERLM_PASSPHRASE, else asked twice at a terminal."""
    from ledgerlm.identity import passphrase_from_env

    passphrase = passphrase_from_env()
    if passphrase is not None:
        return passphrase
    if not sys.stdin.isatty():
        raise LedgerError(f"{needed_by} needs a passphrase: set LEDGERLM_PASSPHRASE", field="passphrase")
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)


def session(ctx: typer.Context) -> Session:
    return ctx.find_root().obj


def report(s: Session | None, exc: LedgerError) -> None:
    """Print a LedgerError the way every command does: same message, on stderr or as JSON."""
    if s is not None and s.as_json:
        sys.stdout.write(orjson.dumps({"error": exc.to_dict()}).decode() + "\n")
    else:
        where = f" ({exc.field})" if exc.field else ""
        err_console.print(f"[bold red]error{escape(where)}:[/] {escape(exc.message)}", highlight=False)


def global_options_first(args: list[str]) -> list[str]:
    """`--json` and `--home DIR` written after the command (`ledgerlm datanet list --json`), moved before it, where
    the root command reads them; `--node` stays put, since `gateway` has a `--node` of its own."""
    start = 0
    while start < len(args) and args[start].startswith("-"):  # the root's own options, before the command
        start += 2 if args[start] in ("--home", "--node") else 1
    moved, rest, i = [], [], start
    while i < len(args):
        if args[i] == "--":  # everything after it is an argument
            rest += args[i:]
            break
        if args[i] == "--json" or args[i].startswith("--home="):
            moved.append(args[i])
        elif args[i] == "--home" and i + 1 < len(args):
            moved += args[i:i + 2]
            i += 1
        else:
            rest.append(args[i])
        i += 1
    return args[:start] + moved + rest


def _literal_help(command, seen: set | None = None, *, own: bool = True) -> None:
    """Help texts say `[default: 1337]` as text: rich markup would take the brackets for a style and drop them.
    `own`: escape the command's own options too (not when its help is printed as plain text)."""
    seen = set() if seen is None else seen
    if id(command) in seen:
        return
    seen.add(id(command))
    for param in getattr(command, "params", []) if own else ():
        if getattr(param, "help", None) and "[" in param.help and "\\[" not in param.help:
            param.help = escape(param.help)
    for sub in getattr(command, "commands", {}).values():
        _literal_help(sub, seen)


class LedgerGroup(TyperGroup):
    """The root command group: any LedgerError from any command exits 1 with its message."""

    def main(self, args=None, *rest, **kwargs):
        _literal_help(self, own=sys.stderr.isatty())  # the root's own help is plain text off a terminal (below)
        # Usage errors drawn in a rich box fold at the box's width; written to a file or a pipe they
        # print the way click does, with "Error: ..." on one unbroken line.
        markup = self.rich_markup_mode
        if not sys.stderr.isatty():
            self.rich_markup_mode = None
        try:
            self.given = global_options_first(list(sys.argv[1:] if args is None else args))
            return super().main(self.given, *rest, **kwargs)
        except BrokenPipeError:
            # the reader went away (`ledgerlm --help | head -3`): nothing more to say, and nowhere to say it
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        finally:
            self.rich_markup_mode = markup

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            report(ctx.obj, exc)
            ctx.exit(1)
        except Exception as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            option = getattr(exc, "option_name", None)
            number = type(exc).__name__ == "NoSuchOption" and bool(option) and \
                option.lstrip("-").replace(".", "", 1).isdigit()
            if number:
                # "-1" where a number goes is read as an option: say what it is, not that no such option exists;
                # click names only its first digit ("-2" of "-25"): the whole word is in what was typed
                typed = next((a for a in getattr(self, "given", ()) if a.startswith(option) and _numeric(a)), option)
                exc.message = (f"{typed} is read as an option: a negative number is not a valid value here "
                               f"(write `-- {typed}` after the options to pass it as it is)")
            if _is_usage_error(exc) and ctx.params.get("as_json"):
                # a usage error (a missing or mistyped argument, an unknown command) as the JSON every other error is
                # with --json, which the root read before the command failed; the exit code stays click's
                name = getattr(getattr(exc, "param", None), "name", None) or (None if number else option)
                error = LedgerError(exc.format_message(), field=name, status=400)
                sys.stdout.write(orjson.dumps({"error": error.to_dict()}).decode() + "\n")
                ctx.exit(exc.exit_code)
            # Usage errors and exits belong to the CLI framework; LEDGERLM_DEBUG shows tracebacks.
            if type(exc).__module__.startswith(("typer", "click")) or os.environ.get("LEDGERLM_DEBUG"):
                raise
            if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
                # a request checked on this side before it is sent (pydantic): its first problem, in one line
                first = exc.errors()[0]
                name = ".".join(str(part) for part in first.get("loc", ())) or None
                reason = str(first.get("msg", exc)).removeprefix("Value error, ")
                report(ctx.obj, LedgerError(reason, field=name))
                ctx.exit(1)
            report(ctx.obj, LedgerError(f"unexpected {type(exc).__name__}: {exc} (set LEDGERLM_DEBUG=1 for the traceback)"))
            ctx.exit(2)


def _numeric(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _is_usage_error(exc: Exception) -> bool:
    """A click usage error, from click itself or from the copy of click typer carries."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)
