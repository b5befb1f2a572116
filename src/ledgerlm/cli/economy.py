"""`ledgerlm epoch close|verify|list`, `claim`, `earnings`: settlement from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ledgerlm.cli.chain import resolve_address
from ledgerlm.cli.session import Table, console, counted, session
from ledgerlm.errors import LedgerError
from ledgerlm.units import format_amount

epoch_app = typer.Typer(help="Settlement epochs: close, list, verify, sweep.", no_args_is_help=True)


@epoch_app.command("close")
def close(ctx: typer.Context):
    """Close the open epoch (or finish one a crash interrupted): settle, post the root, publish payouts."""
    s = session(ctx)
    result = s.client()._request("POST", "/economy/epochs/close")

    def render(r):
        if r["state"] == "empty":
            console.print(r["message"])
            return
        console.print(f"[green]epoch {r['epoch']} {r['state']}[/]: {counted(r['receipts'], 'receipt')}, "
                      f"{counted(r['consumers'], 'consumer')} charged {format_amount(int(r['charged']))} LGR, slashed stake "
                      f"{format_amount(int(r['rewards']))}, {counted(r['chunks'], 'settlement chunk')}")
        console.print(f"  root {r['root']}  total {format_amount(int(r['total']))} LGR  files {r['files']}")

    s.emit(result, render)


@epoch_app.command("list")
def list_epochs(ctx: typer.Context):
    """Every epoch with its state, root and totals."""
    s = session(ctx)
    rows = s.client()._request("GET", "/economy/epochs")

    def render(rs):
        table = Table("epoch", "state", "receipts", "total LGR", "root")
        for r in rs:
            table.add_row(str(r["epoch"]), r["state"], str(r.get("receipts", "")),
                          format_amount(int(r["total"])) if r["total"] else "", r["root"] or "")
        console.print(table)

    s.emit(rows, render)


@epoch_app.command("show")
def show(ctx: typer.Context, number: int = typer.Argument(..., help="Epoch number.")):
    """One epoch: state, totals, its chain id and each consumer's debit, with any shortfall (owed but not charged
    because the consumer lowered or revoked their cap, or emptied their escrow, before settlement)."""
    s = session(ctx)
    shown = s.client()._request("GET", f"/economy/epochs/{number}")

    def render(e):
        console.print(f"epoch {e['epoch']} [bold]{e['state']}[/]  root {e['root'] or '-'}  "
                      f"total {format_amount(int(e['total'] or 0))} LGR")
        if e.get("chain_epoch"):
            console.print(f"  distributor epoch id {e['chain_epoch']}")
        console.print(f"  charged {format_amount(int(e.get('charged') or 0))} LGR, shortfall "
                      f"{format_amount(int(e.get('shortfall') or 0))} LGR")
        if int(e.get("arrears") or 0):
            console.print(f"  of which {format_amount(int(e['arrears']))} LGR owed from earlier epochs")
        table = Table("consumer", "state", "owed LGR", "charged LGR", "carried to later LGR", "why")
        for d in e["debits"]:
            carried = format_amount(int(d["carried"])) if int(d["carried"]) else ""
            if d["charged_in"]:
                carried += f" (charged in epoch {', '.join(map(str, d['charged_in']))})"
            table.add_row(d["consumer"], d["state"], format_amount(int(d["owed"])),
                          format_amount(int(d["amount"]) if d["state"] != "unpaid" else 0), carried, d["reason"] or "")
        console.print(table)

    s.emit(shown, render)


def _published(path: Path, field: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError(f"cannot read {path}: {exc}", field=field) from None


@epoch_app.command("verify")
def verify(
    ctx: typer.Context,
    number: int = typer.Argument(..., help="Epoch number."),
    payouts: Path | None = typer.Option(None, help="A published payouts.json to check instead of the node's."),
    receipts: Path | None = typer.Option(None, help="A published receipts.json to check instead of the node's."),
    rpc: str | None = typer.Option(None, "--rpc", help="An EVM JSON-RPC URL of the node's chain: read the "
                                   "distributor's record and the share holders from it yourself instead of "
                                   "through the node."),
    as_key: str | None = typer.Option(None, "--as", help="Key of an owner or member of private Datanets, whose "
                                      "share allocations only they may read; without it their holders are left "
                                      "unchecked (and named)."),
):
    """Check each receipt against the node's signature and each cut receipt against the split it was signed with,
    recompute the payouts and root from the published receipts and payout file and check the chain, including each
    shares pool's split against its token's holders at the closing block."""
    from ledgerlm.economy.receipt_audit import earlier_epochs
    from ledgerlm.economy.verify import audit_epoch, chain_holdings, node_holdings

    s = session(ctx)
    client = s.reading_client(as_key)
    payout_file = _published(payouts, "payouts") if payouts else client._request(
        "GET", f"/economy/epochs/{number}/payouts")
    receipt_file = _published(receipts, "receipts") if receipts else client._request(
        "GET", f"/economy/epochs/{number}/receipts")
    readable = {a["ref"] for a in client.shares.list()}  # a private Datanet's shares: its members only
    shared = [p for p in payout_file["pools"] if p["kind"] == "shares" and p["asset"] in readable]
    unchecked = sorted({p["asset"] for p in payout_file["pools"] if p["kind"] == "shares"} - readable)
    if rpc:
        from ledgerlm.chain.contracts import DistributorClient, TokenClient
        from ledgerlm.chain.rpc import open_rpc

        info = client._request("GET", "/chain/info")
        chain = open_rpc(rpc, expected_chain_id=int(info["chain_id"]))
        addresses = info["contracts"] or {}
        if "EpochDistributor" not in addresses:
            raise LedgerError("the node names no deployed contracts to verify against", field="rpc")
        distributor = DistributorClient(chain, addresses["EpochDistributor"],
                                        TokenClient(chain, addresses["LedgerToken"]))
        funding = distributor.epoch(int(payout_file.get("chain_epoch") or number))
        holders = chain_holdings(chain, payout_file, {p["asset"]: client.shares.show(p["asset"]) for p in shared})
    else:
        record = client._request("GET", f"/economy/epochs/{number}/chain")
        funding = None
        if record:
            from ledgerlm.chain import EpochFunding

            funding = EpochFunding(number, record["root"], int(record["total"]), int(record["claimed"]),
                                   int(record["funded_at"]), int(record["posted_at"]), bool(record["swept"]))
        holders = node_holdings(client, shared)
    earlier = {}  # the receipts files of the epochs that cut this one's arrears or may have settled its receipts
    for since in earlier_epochs(receipt_file):
        beside = receipts.parent.parent / str(since) / "receipts.json" if receipts else None
        try:
            earlier[since] = _published(beside, "receipts") if beside and beside.exists() else client._request(
                "GET", f"/economy/epochs/{since}/receipts")
        except LedgerError:  # not to be had: the audit names what it left unchecked
            continue
    audit = audit_epoch(payout_file, receipt_file, funding, holders, earlier)
    problems = audit.problems
    withheld = sorted({p["datanet"] for p in payout_file["pools"] if p.get("withheld")})
    result = {"epoch": number, "ok": not problems, "root": payout_file["root"], "problems": problems,
              "holders_unchecked": unchecked, "pools_withheld": withheld, "receipts_unchecked": audit.unchecked}
    note = (f"\n  holders of {', '.join(unchecked)} not checked: private Datanets; pass --as a member's key"
            if unchecked else "")
    note += (f"\n  the pools of {', '.join(withheld)} checked by their sum only: private Datanets; pass --as a "
             "member's key" if withheld else "")
    note += "".join(f"\n  {line}" for line in audit.unchecked)
    s.emit(result, lambda r: console.print(
        (f"[green]epoch {number} verified[/]: root {r['root']} matches the receipts, the payout file and the chain"
         if r["ok"] else f"[red]epoch {number} does not verify[/]\n  " + "\n  ".join(r["problems"])) + note))
    if problems:
        raise typer.Exit(1)


@epoch_app.command("sweep")
def sweep(
    ctx: typer.Context,
    number: int = typer.Argument(..., help="Epoch number."),
    key: str | None = typer.Option(None, "--key", help="Keyring key holding SWEEPER_ROLE [default: the home's "
                                                      "admin key, unlocked with LEDGERLM_ADMIN_PASSPHRASE]."),
    force: bool = typer.Option(False, "--force", help="Sweep an epoch this node has not posted yet: its payees "
                                                      "can then never claim, and the node gives the epoch up."),
):
    """After the claim window, send what an epoch left unclaimed to the treasury (admin only).

    An epoch the node has not posted (still open, or a close that has not finished) is refused unless --force:
    the contract lets it be swept a claim window after its first funding, so that a node that never finishes
    cannot strand funds, but its payees then never get them."""
    from ledgerlm.identity.node_keys import ADMIN_PASSPHRASE_ENV, node_passphrase, unlock_keystore

    s = session(ctx)
    if key:
        admin = s.unlock(key)
    else:
        admin = unlock_keystore(s.home.admin_key_path, node_passphrase(ADMIN_PASSPHRASE_ENV, "admin"), "admin")
    client = s.client()
    state = client._request("GET", f"/economy/epochs/{number}")["state"]
    if state not in ("posted", "published", "swept") and not force:
        raise LedgerError(f"epoch {number} is {state} on this node: its root is not posted, so sweeping it would "
                          "leave its payees nothing to claim (pass --force to give it up)", field="epoch", status=409)
    # the distributor's record names the epoch's id there: this node's address above its number
    record = client._request("GET", f"/economy/epochs/{number}/chain")
    if record is None:
        raise LedgerError(f"epoch {number} of this node holds nothing in the distributor to sweep", field="epoch")
    tx = client.chain.send(admin, "EpochDistributor", "sweep", [int(record["epoch"])])
    swept = next((e["args"] for e in tx.get("events", []) if e["name"] == "Swept"), {})
    result = {"epoch": number, "tx_hash": tx["tx_hash"], "amount": str(swept.get("amount", 0)),
              "treasury": swept.get("treasury")}
    s.emit(result, lambda r: console.print(f"[green]swept[/] epoch {number}: {format_amount(int(r['amount']))} LGR "
                                           f"to {r['treasury']} (tx {r['tx_hash']})"))


def claim(
    ctx: typer.Context,
    as_key: str = typer.Option(..., "--as", help="Key whose payouts to claim (signs and pays the gas)."),
    epoch: int | None = typer.Option(None, "--epoch", help="Claim this epoch only."),
    all_epochs: bool = typer.Option(False, "--all", help="Claim every unclaimed epoch."),
    for_account: str | None = typer.Option(None, "--account", help="Claim for another address or key (the tokens "
                                                                   "still go to it; you only pay the gas)."),
):
    """Claim payouts from the EpochDistributor with their Merkle proofs."""
    s = session(ctx)
    if (epoch is None) == (not all_epochs):
        raise LedgerError("give exactly one of --epoch N or --all", field="epoch")
    signer = s.unlock(as_key)
    client = s.client()
    payee = resolve_address(s, for_account) if for_account else signer.address
    owed = client._request("GET", f"/economy/earnings/{payee}")["epochs"]
    todo = [e for e in owed if e["claimable"] and not e["claimed"] and (epoch is None or e["epoch"] == epoch)]
    if epoch is not None and not todo:
        raise LedgerError(f"{payee} has nothing to claim in epoch {epoch}", field="epoch", status=404)
    done = []
    for e in todo:
        tx = client.chain.send(signer, "EpochDistributor", "claim",
                               [int(e["chain_epoch"]), payee, int(e["amount"]), e["proof"]])
        done.append({"epoch": e["epoch"], "amount": e["amount"], "tx_hash": tx["tx_hash"]})
    s.emit({"account": payee, "claimed": done}, lambda r: console.print(
        "\n".join(f"[green]claimed[/] epoch {c['epoch']}: {format_amount(int(c['amount']))} LGR (tx {c['tx_hash']})"
                  for c in r["claimed"]) or "nothing left to claim"))


def earnings(ctx: typer.Context, who: str = typer.Argument(..., help="Address or key name."),
             as_key: str | None = typer.Option(None, "--as", help="Key of an owner or member of private Datanets, "
                                               "which are named among the sources only to them.")):
    """What an account earned, per epoch and per source, and what it has not claimed yet."""
    s = session(ctx)
    result = s.reading_client(as_key)._request("GET", f"/economy/earnings/{resolve_address(s, who)}")

    def render(r):
        table = Table("epoch", "LGR", "claimed", "roles", "datanets", "models", "rounds", "receipts")
        for e in r["epochs"]:
            src = e["sources"]
            table.add_row(str(e["epoch"]), format_amount(int(e["amount"])), "yes" if e["claimed"] else "no",
                          ", ".join(f"{k} {format_amount(int(v))}" for k, v in src["roles"].items()),
                          ", ".join(src["datanets"]), ", ".join(src["models"]),
                          ", ".join(map(str, src["rounds"])), str(len(src["receipts"])))
        console.print(f"[bold]{r['address']}[/]  earned {format_amount(int(r['total']))} LGR, "
                      f"unclaimed {format_amount(int(r['unclaimed']))}")
        console.print(table)

    s.emit(result, render)


def deposit(
    ctx: typer.Context,
    amount: str = typer.Argument(..., help="LGR to move into escrow, e.g. 20 or 2.5."),
    as_key: str = typer.Option(..., "--as", help="The consumer's key (approves, then deposits)."),
):
    """Deposit LGR into the PaymentEscrow, from which epoch closes settle your calls."""
    from ledgerlm.cli.chain import require_tokens
    from ledgerlm.units import parse_positive_amount

    s = session(ctx)
    consumer = s.unlock(as_key)
    client = s.client()
    wei = parse_positive_amount(amount, field="amount")
    require_tokens(client, consumer, wei, amount, "deposit")
    escrow = client.chain.info()["contracts"]["PaymentEscrow"]
    client.chain.send(consumer, "LedgerToken", "approve", [escrow, wei])
    tx = client.chain.send(consumer, "PaymentEscrow", "deposit", [wei])
    balance = client.chain.account(consumer.address)["escrow"]
    s.emit({"consumer": consumer.address, "amount": str(wei), "escrow": str(balance), "tx_hash": tx["tx_hash"]},
           lambda r: console.print(f"[green]deposited[/] {amount} LGR; escrow balance "
                                   f"{format_amount(int(r['escrow']))} LGR (tx {r['tx_hash']})"))
