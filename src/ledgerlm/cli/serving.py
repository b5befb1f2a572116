"""`ledgerlm apikey` and `ledgerlm receipts`: paying for calls and reading what each call paid whom."""

from __future__ import annotations

import typer

from ledgerlm.cli.chain import resolve_address
from ledgerlm.cli.session import Table, console, session
from ledgerlm.errors import LedgerError
from ledgerlm.times import format_time as when
from ledgerlm.units import format_amount, parse_amount

apikey_app = typer.Typer(help="Consumer API keys for the OpenAI-compatible API, under a standing spending cap.",
                         no_args_is_help=True)
receipts_app = typer.Typer(help="Signed receipts: one per completion, with its fee split.", no_args_is_help=True)


@apikey_app.command("create")
def create(
    ctx: typer.Context,
    as_key: str = typer.Option(..., "--as", help="The consumer's key: it signs the escrow spending cap."),
    cap: str | None = typer.Option(None, "--cap", help="Most LGR this node may debit per cap period (a day by "
                                                       "default) [default: the consumer's escrow balance]."),
    days: int = typer.Option(30, min=1, max=3650, help="Days the node has to relay the signed cap to the escrow."),
):
    """Make an `sk-lgr-` API key under a standing spending cap you sign for this node (it replaces your earlier
    cap for the node, on chain); the key is shown once."""
    s = session(ctx)
    account = s.unlock(as_key)
    client = s.client()
    if cap is None:
        amount = int(client.chain.account(account.address).get("escrow", 0))
    else:
        amount = parse_amount(cap, field="cap")
    key, record = client.serving.create_key(account, amount, days=days)
    s.emit({"api_key": key, **record}, lambda r: console.print(
        f"[green]API key[/] {r['api_key']}\n  for {r['consumer']}, cap {format_amount(int(r['cap']))} LGR per cap "
        f"period (nonce {r['nonce']})\n  [yellow]store it now: the node keeps only its hash[/]"))


@apikey_app.command("cap")
def set_cap(
    ctx: typer.Context,
    as_key: str = typer.Option(..., "--as", help="The consumer: sends the transaction from its own key."),
    cap: str = typer.Option(..., "--cap", help="New most LGR this node may debit per cap period; 0 revokes."),
):
    """Lower, raise or revoke (`--cap 0`) on chain, yourself, the spending cap you give this node: it binds every
    debit not yet settled, and no cap you signed before can come back."""
    from ledgerlm.chain.contracts import cap_nonce

    s = session(ctx)
    account = s.unlock(as_key)
    client = s.client()
    amount = parse_amount(cap, field="cap")
    settler = client._request("GET", "/apikeys/terms")["settler"]
    sent = client.chain.send(account, "PaymentEscrow", "setSpendingCap", [settler, amount, cap_nonce()])
    standing = {**client.spending_cap(account.address), "tx": sent.get("tx_hash")}
    s.emit(standing, lambda r: console.print(
        f"[green]spending cap[/] of {r['consumer']} for node {r['settler']}: {format_amount(int(r['cap']))} LGR per "
        f"period, {format_amount(int(r['left']))} left until {when(r['period_ends_at'])}"))


@apikey_app.command("list")
def list_keys(
    ctx: typer.Context,
    consumer: str | None = typer.Option(None, help="Only this address or key name's API keys."),
):
    """API keys by id: prefix of their hash, consumer, epoch, cap and whether revoked."""
    s = session(ctx)
    client = s.client()
    keys = client.serving.keys(resolve_address(s, consumer) if consumer else None)
    # the cap a key was made with may since have been lowered, raised or revoked on chain (`apikey cap`)
    standing = {c: client.spending_cap(c)["cap"] for c in {k["consumer"] for k in keys}}
    for k in keys:
        k["cap_on_chain"] = standing[k["consumer"]]

    def render(rows):
        table = Table("id", "hash prefix", "consumer", "epoch", "cap signed (LGR)", "cap on chain (LGR)", "relay signed cap by",
                      "revoked")
        for k in rows:
            table.add_row(str(k["id"]), k["prefix"], k["consumer"], str(k["epoch"]), format_amount(int(k["cap"])),
                          format_amount(int(k["cap_on_chain"])), when(k["deadline"]),
                          when(k["revoked_at"]) if k["revoked_at"] else "")
        console.print(table)

    s.emit(keys, render)


@apikey_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: int = typer.Argument(..., help="The key's id (see `apikey list`)."),
    as_key: str = typer.Option(..., "--as", help="The consumer the key belongs to."),
):
    """Revoke an API key: calls with it are refused from now on."""
    s = session(ctx)
    record = s.client().serving.revoke_key(s.unlock(as_key), key_id)
    s.emit(record, lambda r: console.print(f"[green]revoked[/] key {r['id']} ({r['prefix']}…)"))


@apikey_app.command("budget")
def budget(
    ctx: typer.Context,
    api_key: str = typer.Option(..., "--key", envvar="LEDGERLM_API_KEY", help="The sk-lgr- key [env LEDGERLM_API_KEY]."),
):
    """What a key may still spend: cap per period, settled this period, escrow balance, being withdrawn, unsettled fees, remaining."""
    s = session(ctx)
    standing = s.client().serving.budget(api_key)
    s.emit(standing, lambda b: console.print(
        f"key {b['key']['prefix']}… of {b['consumer']}, open epoch {b['epoch']}\n"
        f"  cap {format_amount(int(b['cap']))} per period  settled this period {format_amount(int(b['spent']))}  "
        f"escrow {format_amount(int(b['escrow_balance']))}  being withdrawn {format_amount(int(b['withdrawing']))}  "
        f"unsettled {format_amount(int(b['unsettled']))}\n"
        f"  [bold]remaining {format_amount(int(b['remaining']))} LGR[/]"))


@receipts_app.command("list")
def list_receipts(
    ctx: typer.Context,
    account: str | None = typer.Option(None, "--account", help="Consumer or payee address, or a key name."),
    model: str | None = typer.Option(None, "--model", help="Only this model's receipts."),
    state: str | None = typer.Option(None, "--state", help="attributing or final."),
    limit: int = typer.Option(50, min=1, max=1000, help="At most this many (up to 1,000), newest first."),
    before: str | None = typer.Option(None, "--before", help="The next page: receipts older than this receipt id "
                                                             "(the last one listed)."),
):
    """Receipts newest first: model, consumer, tokens, fee and state."""
    if state not in (None, "attributing", "final"):
        raise LedgerError(f"unknown state {state!r}: use attributing or final", field="state")
    s = session(ctx)
    rows = s.client().serving.receipts(account=resolve_address(s, account) if account else None, model=model,
                                       state=state, limit=limit, before=before)

    def render(receipts):
        table = Table("id", "created", "model", "consumer", "tokens (in+out)", "fee (LGR)", "epoch", "state")
        for r in receipts:
            table.add_row(r["id"], when(r["created_at"]), r["model_id"], r["consumer"] or "free",
                          f"{r['prompt_tokens']}+{r['completion_tokens']}", format_amount(int(r["fee"])),
                          str(r["epoch"]), r["state"])
        console.print(table)

    s.emit(rows, render)


def _attribution_line(receipt: dict) -> str:
    """What the receipt's attribution says, in words: who the evidence pays, and the data pool's part."""
    found = receipt.get("attribution")
    if receipt["state"] == "attributing":
        return "attribution: still running; the split is final once it has"
    if not found:
        return "attribution: none (nothing was said, or the model has no Datanet)"
    if found.get("error"):
        return f"attribution: {found['error']}"
    evidence = int(found.get("evidence_bps", 0))
    paid = ", ".join(f"{who} {bps} bps" for who, bps in sorted((found.get("contributor_bps") or {}).items(),
                                                                key=lambda kv: -int(kv[1])))
    line = (f"attribution: evidence covers {evidence} of the contributor share's 10000 bps"
            + (f" ({paid})" if paid else "") + f"; {10_000 - evidence} bps to the Datanet's data pool")
    return line + (" (the record-level part is withheld: a private Datanet)" if "withheld" in found else "")


@receipts_app.command("show")
def show(ctx: typer.Context, receipt_id: str = typer.Argument(..., help="The receipt id (the response's id)."),
         as_key: str | None = typer.Option(
             None, "--as", help="The receipt's consumer: a signed read request fetches your own copy, with the "
                                "prompt and answer (`--json` > FILE, then `ledgerlm attribute --verify FILE`).")):
    """One receipt: its split recomputed here and the node's signature checked here; with `--as` its consumer's
    full copy, whose request hash is checked too."""
    s = session(ctx)
    shown = s.client().serving.receipt(receipt_id, s.unlock(as_key) if as_key else None)

    def render(data):
        r, checks = data["receipt"], data["checks"]
        console.print(f"[bold]{r['id']}[/]  {r['model_id']}  epoch {r['epoch']}  {r['state']}  {when(r['created_at'])}")
        console.print(f"  consumer {r['consumer'] or 'free call'}   tokens {r['prompt_tokens']} + "
                      f"{r['completion_tokens']} at {format_amount(int(r['price_per_1k']))} LGR per 1k = "
                      f"[bold]{format_amount(int(r['fee']))} LGR[/]")
        table = Table("role", "account", "datanet", "amount (LGR)")
        for p in r["payouts"]:
            table.add_row(p["role"], p["account"] or "(pool)", p["datanet"] or "", format_amount(int(p["amount"])))
        console.print(table)
        for root in r["datanet_roots"]:
            console.print(f"  trained on {root['datanet']} v{root['version']} root {root['root']}")
        console.print("  " + _attribution_line(r), markup=False)
        request = r.get("request") or {}
        if "completion" in request:
            if request.get("messages"):
                for message in request["messages"]:
                    console.print(f"  asked ({message.get('role', '?')}): {message.get('content', '')}", markup=False)
            else:
                console.print(f"  asked: {request.get('prompt')}", markup=False)
            console.print(f"  answered: {request['completion']}", markup=False)
        ok = lambda v: "[green]yes[/]" if v else "[red]NO[/]"  # noqa: E731
        console.print(f"  fee is tokens x price {ok(checks['fee_recomputed'])}   "
                      f"split sums to fee {ok(checks['split_sums_to_fee'])}   split recomputed "
                      f"{ok(checks['split_recomputed'])}   pays its attribution's contributors "
                      f"{ok(checks.get('attribution_pays_its_contributors', True))}   body matches "
                      f"{ok(checks['body_matches'])}"
                      + ("   (prompt and answer included)" if checks["request_checked"] else ""))
        console.print(f"  signature valid {ok(checks['signature_valid'])} (signer {checks['signer']}), "
                      f"signed by this node {ok(checks['signed_by_this_node'])}")

    s.emit(shown, render)
