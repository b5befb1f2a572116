"""`ledgerlm datanet`: create Datanets, contribute signed data, review, publish and export versions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ledgerlm.cli.chain import resolve_address
from ledgerlm.cli.session import Table, console, counted, session, shortened
from ledgerlm.datanets import MAX_REVIEW_BATCH, DatanetError, DatanetSpec
from ledgerlm.errors import LedgerError
from ledgerlm.times import format_time
from ledgerlm.units import format_amount, parse_amount

READ_AS_HELP = "Key that signs the read request: needed for a private Datanet (its owner or a member)."

app = typer.Typer(help="Datanets: community datasets built from signed contributions.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Lowercase name, e.g. med-qa."),
    as_key: str = typer.Option(..., "--as", help="Key of the owner who signs."),
    description: str = typer.Option("", help="What the Datanet is for."),
    tags: str = typer.Option("", help="Comma-separated tags."),
    licence: str = typer.Option("CC-BY-4.0", help="Licence of the data (SPDX id)."),
    schema: Path | None = typer.Option(None, help="JSON Schema file for records; omit for a documents Datanet."),
    visibility: str = typer.Option("public", help="public or private."),
    owner_share: int = typer.Option(0, "--owner-share", help="Basis points of the Datanet's revenue shares its "
                                    "owner keeps when they are issued; the rest go to contributors by data "
                                    "valuation (change it with `datanet owner-share` until then)."),
):
    """Create a Datanet owned by the signing key."""
    s = session(ctx)
    if schema is not None:
        try:
            schema_value = json.loads(schema.read_text())
        except FileNotFoundError as exc:
            raise DatanetError(f"schema file {schema} does not exist", field="schema") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatanetError(f"schema file {schema} is not valid JSON: {exc}", field="schema") from exc
    else:
        schema_value = "documents"
    try:
        spec = DatanetSpec(
            name=name, description=description, tags=[t.strip() for t in tags.split(",") if t.strip()],
            licence=licence, schema=schema_value, visibility=visibility, owner_share_bps=owner_share,
        )
    except Exception as exc:  # pydantic's ValidationError: report the first field
        raise _spec_error(exc) from exc
    account = s.unlock(as_key)
    datanet = s.client().create_datanet(spec, account)
    s.emit(datanet, lambda d: console.print(f"[green]created Datanet {d.name}[/] ({d.kind}) owned by {d.owner}"
                                            + (f"\n  on chain: tx {d.chain_tx}" if d.chain_tx else "")))


def _spec_error(exc: Exception) -> LedgerError:
    errors = getattr(exc, "errors", None)
    if errors:
        first = errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else None
        message = str(first["msg"]).removeprefix("Value error, ")
        return DatanetError(f"{field}: {message}", field=field)
    return DatanetError(str(exc))


@app.command("list")
def list_datanets(ctx: typer.Context, as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP)):
    """List Datanets with their contribution counts and latest version (private ones to their members)."""
    s = session(ctx)

    def render(items):
        table = Table("name", "kind", "owner", "pending", "accepted", "rejected", "versions", "latest root")
        for d in items:
            latest = shortened(d.versions[-1].root, 18) if d.versions else "-"
            table.add_row(d.name, d.kind, shortened(d.owner, 10), str(d.counts["pending"]), str(d.counts["accepted"]),
                          str(d.counts["rejected"]), str(len(d.versions)), latest)
        console.print(table)

    s.emit(s.reading_client(as_key).datanets(), render)


@app.command()
def show(ctx: typer.Context, name: str, as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP)):
    """Show one Datanet: spec, counts, versions with Merkle roots and chain transactions."""
    s = session(ctx)

    def render(d):
        console.print(f"[bold]{d.name}[/] ({d.kind}, {d.visibility}, licence {d.licence})  owner {d.owner}")
        if d.description:
            console.print(f"  {d.description}")
        console.print(f"  tags: {', '.join(d.tags) or '-'}   created {format_time(d.created_at)}   chain tx: {d.chain_tx or '-'}")
        console.print(f"  owner share of revenue shares: {d.owner_share_bps} bps")
        console.print("  contributions: " + ", ".join(f"{k} {v}" for k, v in d.counts.items()))
        if d.versions:
            table = Table("version", "root", "contributions", "contributors", "published", "chain tx")
            for v in d.versions:
                table.add_row(str(v.number), v.root, str(v.contribution_count), str(v.contributor_count),
                              format_time(v.created_at), v.chain_tx or "-")
            console.print(table)

    s.emit(s.reading_client(as_key).datanet(name), render)


@app.command()
def contribute(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Datanet to contribute to."),
    paths: list[Path] = typer.Argument(..., help="Files: JSONL, JSON, CSV, Parquet, text, Markdown, PDF, DOCX."),
    as_key: str = typer.Option(..., "--as", help="Key of the contributor who signs."),
    skip_duplicates: bool = typer.Option(False, "--skip-duplicates", help="Store only records not already in the Datanet."),
):
    """Upload files as one signed contribution batch (all stored, or none)."""
    s = session(ctx)
    for p in paths:
        if not p.is_file():
            raise DatanetError(f"{p} is not a readable file", field="paths")
    account = s.unlock(as_key)
    total = sum(p.stat().st_size for p in paths)
    with console.status(f"uploading {len(paths)} file(s), {total:,} bytes…", spinner="dots"):
        receipt = s.client().contribute(name, paths, account, skip_duplicates=skip_duplicates)
    s.emit(receipt, lambda r: console.print(
        f"[green]stored {r.contribution_count} contribution(s)[/] in {r.datanet} "
        f"(ids {r.first_contribution_id}–{r.first_contribution_id + r.contribution_count - 1}, upload {r.upload_id})"
        + (f", skipped {r.skipped_duplicates} duplicate(s)" if r.skipped_duplicates else "")
        + f"\n  receipt signed by node {r.node}: {shortened(r.node_signature, 20)}"
    ))


@app.command()
def contributions(
    ctx: typer.Context,
    name: str,
    state: str | None = typer.Option(None, help="pending, accepted, rejected or withdrawn."),
    limit: int = typer.Option(50, min=1, help="How many to list."),
    offset: int = typer.Option(0, help="Skip this many."),
    payload: bool = typer.Option(False, "--payload", help="Include the data itself."),
    as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP),
):
    """List contributions, with the reasons and history behind their state."""
    s = session(ctx)
    items = s.reading_client(as_key).contributions(name, state=state, limit=limit, offset=offset, payload=payload, events=True)

    def render(items):
        columns = ["id", "state", "contributor", "source", "reason", "evidence"] + (["data"] if payload else [])
        table = Table(*columns)
        for c in items:
            data = [] if not payload else [c.payload if isinstance(c.payload, str) or c.payload is None
                                           else json.dumps(c.payload, ensure_ascii=False)]
            table.add_row(str(c.id), c.state, shortened(c.contributor, 10), c.source, c.reason or "", _evidence(c),
                          *[(d or "")[:200] + ("…" if d and len(d) > 200 else "") for d in data])
        console.print(table)

    s.emit(items, render)


def _evidence(c) -> str:
    """What decided a contribution: gate findings or validators' votes, from its last event."""
    details = (c.events[-1].get("details") if c.events else None) or {}
    if details.get("findings"):
        return "; ".join(f"{f['gate']}/{f['code']}" for f in details["findings"])
    if details.get("votes"):
        return f"consensus {details['consensus']}; votes " + ", ".join(
            f"{shortened(v, 8)}={s}" for v, s in details["votes"].items())
    return ""


@app.command()
def contribution(ctx: typer.Context, contribution_id: int, as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP)):
    """Show one contribution with its data and history."""
    s = session(ctx)
    s.emit(s.reading_client(as_key).contribution(contribution_id), lambda c: console.print_json(data=c.model_dump()))


@app.command()
def withdraw(ctx: typer.Context, contribution_id: int, as_key: str = typer.Option(..., "--as", help="The contributor's key (only they may withdraw their contribution).")):
    """Withdraw your contribution: its data is deleted and leaves every future version."""
    s = session(ctx)
    c = s.client().withdraw(contribution_id, s.unlock(as_key))
    s.emit(c, lambda c: console.print(f"[yellow]contribution {c.id} withdrawn[/]"))


def _review(ctx: typer.Context, ids: list[str], all_pending: str | None, as_key: str, accept: bool, reason: str):
    s = session(ctx)
    if bool(ids) == bool(all_pending):
        raise DatanetError("give contribution ids (e.g. 7 or 3-40,45) or --all-pending DATANET"
                           + (", not both" if ids else ""), field="ids")
    client = s.reading_client(as_key)  # the owner may have to read a private Datanet's pending ids
    if all_pending:
        wanted, name = _pending_ids(client, all_pending), all_pending
        if not wanted:
            raise DatanetError(f"Datanet {all_pending!r} has no pending contributions", field="all_pending")
    else:
        wanted = parse_ids(ids)
        if len(wanted) == 1:
            c = client.review(wanted[0], s.unlock(as_key), accept=accept, reason=reason)
            return s.emit(c, lambda c: console.print(f"contribution {c.id} is now [bold]{c.state}[/]"))
        name = client.contribution(wanted[0]).datanet
    account = s.unlock(as_key)
    # One signature per batch; a review larger than the node takes at once is signed in parts.
    batches = [client.review_many(name, wanted[k:k + MAX_REVIEW_BATCH], account, accept=accept, reason=reason)
               for k in range(0, len(wanted), MAX_REVIEW_BATCH)]
    result = batches[0].model_copy(update={"contribution_ids": [i for b in batches for i in b.contribution_ids]})
    s.emit(result, lambda r: console.print(
        f"{counted(len(r.contribution_ids), 'contribution')} of {r.datanet} are now [bold]{r.state}[/]: "
        f"{format_ids(r.contribution_ids)}"))


def _pending_ids(client, name: str) -> list[int]:
    ids: list[int] = []
    while True:
        page = client.contributions(name, state="pending", limit=MAX_REVIEW_BATCH, offset=len(ids))
        ids += [c.id for c in page]
        if len(page) < MAX_REVIEW_BATCH:
            return ids


def parse_ids(tokens: list[str]) -> list[int]:
    """"3-40,45 50" -> [3, ..., 40, 45, 50]: ids and inclusive ranges, each id once, in the order given."""
    ids: dict[int, None] = {}
    for token in (t for arg in tokens for t in arg.split(",") if t.strip()):
        first, _, last = token.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise DatanetError(f"{token!r} is not a contribution id or a range like 3-40", field="ids") from None
        if lo < 1 or hi < lo:
            raise DatanetError(f"{token!r}: a range runs from a positive id up to a larger one", field="ids")
        if hi - lo >= 1_000_000:
            raise DatanetError(f"{token!r} spans more than a million ids", field="ids")
        ids.update(dict.fromkeys(range(lo, hi + 1)))
    if not ids:
        raise DatanetError("no contribution ids given", field="ids")
    return list(ids)


def format_ids(ids: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


IDS_HELP = "Contribution ids and ranges: 7, 3-40, or 3-40,45."
ALL_PENDING_HELP = "Every pending contribution of this Datanet (instead of ids)."


@app.command()
def accept(ctx: typer.Context, ids: list[str] = typer.Argument(None, help=IDS_HELP, show_default=False),
           as_key: str = typer.Option(..., "--as", help="The Datanet owner's key."),
           all_pending: str | None = typer.Option(None, "--all-pending", metavar="DATANET", help=ALL_PENDING_HELP),
           reason: str = typer.Option("", help="Why.")):
    """Accept pending contributions (Datanet owner); many at once are signed as one action."""
    _review(ctx, ids or [], all_pending, as_key, True, reason)


@app.command()
def reject(ctx: typer.Context, ids: list[str] = typer.Argument(None, help=IDS_HELP, show_default=False),
           as_key: str = typer.Option(..., "--as", help="The Datanet owner's key."),
           all_pending: str | None = typer.Option(None, "--all-pending", metavar="DATANET", help=ALL_PENDING_HELP),
           reason: str = typer.Option("", help="Why.")):
    """Reject pending contributions (Datanet owner); many at once are signed as one action."""
    _review(ctx, ids or [], all_pending, as_key, False, reason)


@app.command()
def publish(ctx: typer.Context, name: str, as_key: str = typer.Option(..., "--as", help="The owner's key.")):
    """Publish accepted contributions as a new immutable version with a Merkle root."""
    s = session(ctx)
    v = s.client().publish(name, s.unlock(as_key))
    s.emit(v, lambda v: console.print(
        f"[green]{v.datanet} version {v.number}[/]: {counted(v.contribution_count, 'contribution')} from "
        f"{counted(v.contributor_count, 'contributor')}\n  root {v.root}" + (f"\n  on chain: tx {v.chain_tx}" if v.chain_tx else "")
    ))


@app.command()
def export(
    ctx: typer.Context,
    name: str,
    version: int = typer.Option(..., "--version", help="Version number."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, parquet or hf (a datasets.load_from_disk directory)."),
    out: Path | None = typer.Option(None, "--out", help="Output path [default: NAME-vN.FORMAT]."),
    as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP),
    pay: str | None = typer.Option(
        None, "--pay", help="Most LGR you agree to pay from escrow for the licence to export a priced private "
                            "version (signs a PayAccess and a spending cap of that much for the open epoch); a "
                            "licence you already hold for the version is used without paying again."),
):
    """Write exactly the data of one version."""
    s = session(ctx)
    if fmt not in ("jsonl", "parquet", "hf"):
        raise DatanetError(f"unknown format {fmt!r}: use jsonl, parquet or hf", field="format")
    out = out or Path(f"{name}-v{version}" + ("" if fmt == "hf" else f".{fmt}"))
    licence = None
    client = s.reading_client(as_key)
    from ledgerlm.datanets.export import check_export_path

    check_export_path(Path(out), fmt)  # before a licence is bought: a refused path must cost nothing
    if pay is not None:
        if client.reader is None:
            raise DatanetError("--pay needs --as KEY: the key whose escrow pays", field="as")
        licence = client.buy_export_licence(name, version, client.reader, parse_amount(pay))
    result = client.export(name, version, fmt, out)
    result["licence"] = licence
    s.emit(result, lambda r: console.print(f"[green]wrote[/] {r['path']} ({fmt})"))


@app.command()
def manifest(ctx: typer.Context, name: str, version: int = typer.Option(..., "--version", help="Version number."),
             as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP)):
    """Print a version's manifest: its leaves (id, content hash, contributor) and root."""
    s = session(ctx)
    s.emit(s.reading_client(as_key).manifest(name, version))


@app.command()
def members(ctx: typer.Context, name: str, as_key: str | None = typer.Option(None, "--as", help=READ_AS_HELP)):
    """List who besides the owner may use a private Datanet."""
    s = session(ctx)
    s.emit(s.reading_client(as_key).members(name),
           lambda m: console.print("\n".join(m) if m else f"{name} has no members besides its owner"))


@app.command("owner-share")
def owner_share(
    ctx: typer.Context, name: str,
    bps: int = typer.Argument(..., help="Basis points (0-10000) of the revenue shares' supply the owner keeps."),
    as_key: str = typer.Option(..., "--as", help="The Datanet owner's key."),
):
    """Set (signed SetOwnerShare) the owner's share the Datanet's policy names for its revenue shares; `shares
    issue` allocates it, and it is fixed once they are issued."""
    s = session(ctx)
    result = s.client().set_owner_share(name, bps, s.unlock(as_key))
    s.emit(result, lambda r: console.print(f"[green]{name}[/]: the owner keeps {r['owner_share_bps']} bps of its "
                                           "revenue shares when they are issued"))


@app.command("add-member")
def add_member(
    ctx: typer.Context, name: str, address: str = typer.Argument(..., help="Address or key name of the new member."),
    as_key: str = typer.Option(..., "--as", help="The Datanet owner's key."),
):
    """Let an address read, export, train on and contribute to a private Datanet (signed AddMember)."""
    s = session(ctx)
    result = s.client().add_member(name, resolve_address(s, address), s.unlock(as_key))
    s.emit(result, lambda m: console.print(f"[green]{name} members[/]: {', '.join(m)}"))


@app.command()
def price(
    ctx: typer.Context, name: str,
    amount: str | None = typer.Argument(None, help="LGR to charge for training on it or exporting it (one licence each); omit to show the prices."),
    version: int = typer.Option(0, help="The version priced (0: every version without its own price)."),
    as_key: str | None = typer.Option(None, "--as", help="The owner's key (to set a price) or a member's (to read)."),
):
    """Show or set (signed SetAccessPrice) what members pay from escrow to train on a private Datanet; the
    payments are the Datanet's revenue, paid to its share holders (or its contributors) at the epoch close."""
    s = session(ctx)
    if amount is None:
        result = s.reading_client(as_key).access_prices(name)
    else:
        if as_key is None:
            raise LedgerError("setting a price needs the owner's key: --as OWNER", field="as")
        result = s.client().set_access_price(name, parse_amount(amount), s.unlock(as_key), version=version)

    def render(r):
        console.print(f"{name}: {format_amount(int(r['default']))} LGR to train on any version")
        for v, p in r["versions"].items():
            console.print(f"  version {v}: {format_amount(int(p))} LGR")

    s.emit(result, render)


@app.command("remove-member")
def remove_member(
    ctx: typer.Context, name: str, address: str = typer.Argument(..., help="Address or key name of the member."),
    as_key: str = typer.Option(..., "--as", help="The Datanet owner's key."),
):
    """Take a member's access to a private Datanet away (signed RemoveMember)."""
    s = session(ctx)
    result = s.client().remove_member(name, resolve_address(s, address), s.unlock(as_key))
    s.emit(result, lambda m: console.print(f"[yellow]{name} members[/]: {', '.join(m) or 'none besides the owner'}"))
