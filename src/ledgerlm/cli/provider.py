"""`ledgerlm provider`: offer hardware for paid training or serving jobs, submit jobs, run and report them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn

from ledgerlm.cli.session import Table, console, session
from ledgerlm.errors import LedgerError
from ledgerlm.units import format_amount, parse_amount

app = typer.Typer(help="Compute providers: offers of hardware at a price per job, jobs paid from escrow, and "
                       "spot-checks that slash a provider caught cheating.", no_args_is_help=True)

KIND_HELP = "train (LoRA steps on the base model) or serve (greedy answers of the base model)."


@app.command()
def offer(
    ctx: typer.Context,
    kind: str = typer.Option(..., "--kind", help=KIND_HELP),
    price: str = typer.Option(..., "--price", help="LGR per job, e.g. 2 or 0.5."),
    base_model: str = typer.Option(..., "--base-model", help="A base model this node holds (`ledgerlm models base`)."),
    hardware: str = typer.Option(..., "--hardware", help="What runs the jobs, e.g. 'cpu: 16 cores' or '1x H100'."),
    as_key: str = typer.Option(..., "--as", help="The provider's key; it must have stake under the provider role "
                                                 "(`ledgerlm stake AMOUNT --role provider`)."),
):
    """Offer this hardware for jobs of one kind at a price per job (signed OfferCompute)."""
    s = session(ctx)
    result = s.client().providers.offer(s.unlock(as_key), kind=kind, hardware=hardware, base_model=base_model,
                                        price=parse_amount(price, field="price"))
    s.emit(result, lambda o: console.print(
        f"[green]offer {o['id']}[/]: {o['kind']} jobs on {o['base_model']} ({o['hardware']}) at "
        f"{format_amount(int(o['price']))} LGR per job, {format_amount(int(o['stake']))} LGR staked"))


@app.command()
def withdraw(
    ctx: typer.Context,
    offer_id: int = typer.Argument(..., help="One of your open offers."),
    as_key: str = typer.Option(..., "--as", help="The provider's key."),
):
    """Stop taking new jobs on an offer (signed WithdrawOffer); jobs already taken still run and pay."""
    s = session(ctx)
    result = s.client().providers.withdraw(s.unlock(as_key), offer_id)
    s.emit(result, lambda o: console.print(f"offer {o['id']} {o['state']}"))


@app.command("list")
def list_offers(
    ctx: typer.Context,
    kind: str | None = typer.Option(None, "--kind", help="Only offers of this kind."),
    provider: str | None = typer.Option(None, "--provider", help="Only this provider's offers."),
):
    """Open offers, cheapest first."""
    s = session(ctx)

    def render(rows):
        table = Table("id", "kind", "provider", "base model", "hardware", "price (LGR)", "stake (LGR)")
        for o in rows:
            table.add_row(str(o["id"]), o["kind"], o["provider"], o["base_model"], o["hardware"],
                          format_amount(int(o["price"])), format_amount(int(o["stake"])))
        console.print(table)

    s.emit(s.client().providers.offers(kind=kind, provider=provider), render)


@app.command()
def jobs(
    ctx: typer.Context,
    provider: str | None = typer.Option(None, "--provider", help="Only jobs of this provider."),
    requester: str | None = typer.Option(None, "--requester", help="Only jobs of this requester."),
    as_key: str | None = typer.Option(None, "--as", help="Read as this key: its own jobs come with spec, result "
                                                        "and spot-check details."),
):
    """Jobs with their payment and spot-check state."""
    s = session(ctx)

    def render(rows):
        table = Table("id", "kind", "offer", "provider", "requester", "amount (LGR)", "epoch", "state", "slashed")
        for j in rows:
            table.add_row(str(j["id"]), j["kind"], str(j["offer_id"]), j["provider"], j["requester"],
                          format_amount(int(j["amount"])), str(j["epoch"]), j["state"],
                          format_amount(int(j["slash_amount"])) if j["slash_amount"] else "-")
        console.print(table)

    s.emit(s.reading_client(as_key).providers.jobs(provider=provider, requester=requester), render)


@app.command()
def submit(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., exists=True, dir_okay=False, help="The job spec, a JSON file: for train "
                                "{texts, steps, batch_size, learning_rate, rank, seed, max_len}; for serve "
                                "{prompts, max_new_tokens}."),
    kind: str = typer.Option(..., "--kind", help=KIND_HELP),
    pay: str = typer.Option(..., "--pay", help="Most LGR to pay for the job (signs a spending cap of that much for "
                                               "the open epoch)."),
    offer_id: int = typer.Option(0, "--offer", min=0, help="The offer to take [default: the cheapest that fits --pay, "
                                                           "on --base-model]."),
    base_model: str = typer.Option("", "--base-model", help="The base model the job must run on: needed without "
                                                            "--offer (an offer on another model may be cheaper)."),
    as_key: str = typer.Option(..., "--as", help="The requester's key; it pays from its escrow (`ledgerlm "
                                                 "deposit`)."),
):
    """Accept an offer for one job (signed AcceptOffer); its price is taken from escrow at once and paid to the
    provider at the epoch close if the job passes its spot-check (refunded otherwise)."""
    s = session(ctx)
    if not offer_id and not base_model:
        raise LedgerError("name the base model the job must run on (--base-model), or the offer to take (--offer)",
                          field="base_model")
    try:
        body = json.loads(spec.read_text())
    except OSError as exc:
        raise LedgerError(f"{spec}: {exc}", field="spec") from None
    except ValueError as exc:  # not UTF-8 (UnicodeDecodeError) or not JSON
        raise LedgerError(f"{spec}: not JSON ({exc})", field="spec") from None
    job = s.client().providers.submit(s.unlock(as_key), kind=kind, spec=body,
                                      amount=parse_amount(pay, field="pay"), offer_id=offer_id,
                                      base_model=base_model, sign_cap=True)
    s.emit(job, lambda j: console.print(
        f"[green]job {j['id']}[/] on offer {j['offer_id']} ({j['provider']}): paid "
        f"{format_amount(int(j['amount']))} LGR into epoch {j['epoch']} (tx {j['payment_tx']})"))


@app.command()
def run(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="A job matched to one of your offers."),
    as_key: str = typer.Option(..., "--as", help="The provider's key; it signs the report."),
):
    """Do a job's work on this machine (the base model from this home) and report it (signed ReportJob); the
    node spot-checks it before answering."""
    from ledgerlm.factory.basemodels import get_model
    from ledgerlm.providers import run_job

    s = session(ctx)
    client = s.reading_client(as_key)  # the spec is readable by the job's provider and requester only
    account = client.reader
    job = client.providers.job(job_id)
    if job["provider"] != account.address:
        raise LedgerError(f"job {job_id} belongs to provider {job['provider']}, not {account.address}",
                          field="job_id")
    base = get_model(s.home.models, job["base_model"])
    with Progress(TextColumn("job {task.fields[job]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console, disable=s.as_json) as bar:
        task = bar.add_task("work", job=job_id, total=None)
        result, files = run_job(base, job["kind"], job["spec"],
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    reported = client.providers.report(account, job_id, result, files)
    s.emit(reported, lambda j: console.print(
        f"job {j['id']}: [{'green' if j['state'] == 'verified' else 'red'}]{j['state']}[/] by spot-check"
        + (f"; slashed {format_amount(int(j['slash_amount']))} LGR (tx {j['slash_tx']})" if j["slash_amount"] else "")))
