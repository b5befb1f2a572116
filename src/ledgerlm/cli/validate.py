"""`ledgerlm validate`: gate policy, validator rounds (open, queue, commit, reveal, tally), reputation."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import typer

from ledgerlm.cli.session import Session, Table, console, counted, session, shortened
from ledgerlm.config import write_private
from ledgerlm.errors import LedgerError
from ledgerlm.times import format_time
from ledgerlm.units import format_amount

app = typer.Typer(help="Validation: automatic gates and staked validator rounds.", no_args_is_help=True)
round_app = typer.Typer(help="Inspect validator rounds.", no_args_is_help=True)
app.add_typer(round_app, name="round")


def _secrets(s: Session, round_id: int, address: str) -> Path:
    """Votes and salt stay on the validator's machine between commit and reveal."""
    return s.home.root / "validator" / f"round-{round_id}-{address}.json"


def _assigned(r: dict) -> set[str]:
    """The validators a round assigned something to score (its stake snapshot also holds stakers it could not
    assign, such as a contributor with only their own records in it)."""
    return {v for validators in r["assignments"].values() for v in validators}


def _pending(path: Path) -> Path:
    return path.with_name(path.stem + ".sending.json")


def _parse_votes(votes: str | None, votes_file: Path | None) -> dict[int, int]:
    shape = "votes must look like 12=80,13=20 (contribution=score 0..100)"
    if votes_file is not None:
        try:
            raw = json.loads(votes_file.read_text())
            return {int(k): int(v) for k, v in raw.items()}
        except OSError as exc:
            raise LedgerError(f"{votes_file} cannot be read: {exc.strerror or exc}", field="votes_file") from None
        except (ValueError, AttributeError, TypeError):
            raise LedgerError(f"{votes_file} must hold a JSON object {{\"ID\": SCORE}}: {shape}",
                              field="votes_file") from None
    if votes:
        out = {}
        for pair in votes.split(","):
            found = re.fullmatch(r"\s*([0-9]+)\s*=\s*(-?[0-9]+)\s*", pair)
            if found is None:
                raise LedgerError(f"{shape}; {pair!r} is not ID=SCORE", field="votes")
            out[int(found[1])] = int(found[2])
        return out
    raise LedgerError("give --votes ID=SCORE,... or --votes-file FILE", field="votes")


@app.command()
def policy(
    ctx: typer.Context,
    name: str,
    file: Path | None = typer.Option(None, "--file", help="JSON gate policy to set (omit to show)."),
    as_key: str | None = typer.Option(None, "--as", help="The Datanet owner's key (to set)."),
):
    """Show or set which gates reject and which only flag, with their thresholds."""
    s = session(ctx)
    if file is None:
        return s.emit(s.client().validation.policy(name), lambda p: console.print_json(data=p))
    if as_key is None:
        raise LedgerError("setting a policy needs --as OWNER_KEY", field="as")
    try:
        body = json.loads(file.read_text())
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8 (UnicodeDecodeError) or not JSON
        raise LedgerError(f"{file}: {exc}", field="file") from None
    s.emit(s.client().validation.set_policy(s.unlock(as_key), name, body), lambda p: console.print_json(data=p))


@app.command("open")
def open_round(ctx: typer.Context, name: str, as_key: str = typer.Option(..., "--as", help="The Datanet owner's key.")):
    """Run the gates on pending data and open a round for the rest, assigned by stake."""
    s = session(ctx)
    r = s.client().validation.open_round(s.unlock(as_key), name)
    s.emit(r, lambda r: console.print(
        f"[green]round {r['id']}[/] on {r['datanet']}: gates passed {r['gated'].get('pass', 0)}, flagged "
        f"{r['gated'].get('flag', 0)}, rejected {r['gated'].get('reject', 0)}; {counted(len(r['assignments']), 'contribution')} "
        f"to {counted(len(_assigned(r)), 'validator')}; commit until {format_time(r['commit_deadline'])}, reveal until {format_time(r['reveal_deadline'])}"))


@app.command()
def queue(ctx: typer.Context, as_key: str = typer.Option(..., "--as", help="Validator key (or address).")):
    """Contributions you are assigned to score, with their data and gate flags."""
    from ledgerlm.cli.chain import resolve_address

    s = session(ctx)
    address = resolve_address(s, as_key)
    # A local key signs a read request, so assignments from private Datanets show their data.
    client = s.client() if as_key == address or as_key.lower().startswith("0x") else s.reading_client(as_key)
    items = client.validation.queue(address)

    def render(items):
        table = Table("round", "id", "phase", "source", "data", "flags")
        for i in items:
            table.add_row(str(i["round_id"]), "—" if i["contribution_id"] is None else str(i["contribution_id"]),
                          i["phase"], i["source"],
                          (i["payload"] or i.get("withheld") or "")[:70], ", ".join(f["gate"] for f in i["flags"]))
        console.print(table)

    s.emit(items, render)


@app.command()
def commit(
    ctx: typer.Context,
    round_id: int,
    as_key: str = typer.Option(..., "--as", help="The validator's key (signs the commitment)."),
    votes: str | None = typer.Option(None, help="Scores 0..100: ID=SCORE,ID=SCORE"),
    votes_file: Path | None = typer.Option(None, help='JSON {"ID": SCORE}.'),
):
    """Commit a hash of your scores; the scores and salt are kept locally for the reveal."""
    s = session(ctx)
    scores = _parse_votes(votes, votes_file)
    client = s.reading_client(as_key)  # the key unlocked once: it signs the reads below and the commitment
    account = client.reader
    client.validation.round(round_id)  # an unknown round is named as such, before any vote is weighed
    assigned = {int(i["contribution_id"]) for i in client.validation.queue(account.address)
                if int(i["round_id"]) == round_id and i.get("contribution_id") is not None}
    stray = sorted(set(scores) - assigned)
    if stray:  # a score the round never asked for is ignored at the reveal, and the real assignment goes unscored
        raise LedgerError(f"contribution(s) {', '.join(map(str, stray))} are not assigned to {account.address} in round "
                          f"{round_id}; yours: {', '.join(map(str, sorted(assigned))) or 'none open'} "
                          f"(`ledgerlm validate queue --as KEY`)", field="votes")
    salt = secrets.token_bytes(32)
    path = _secrets(s, round_id, account.address)
    pending = _pending(path)
    # Kept before the commit is sent: a commit the node took whose salt was lost (the CLI killed, the disk full)
    # could never be revealed, and the validator counted as absent. It becomes the round's secret once the node
    # answers; until then the one committed earlier, if any, stays (`reveal` tries both).
    write_private(pending, json.dumps({"votes": scores, "salt": salt.hex()}))
    r, _ = client.validation.commit(account, round_id, scores, salt)
    os.replace(pending, path)
    s.emit(r, lambda r: console.print(f"committed {len(scores)} score(s) to round {round_id}; reveal after {format_time(r['commit_deadline'])}"))


@app.command()
def reveal(ctx: typer.Context, round_id: int, as_key: str = typer.Option(..., "--as", help="The validator's key (signs the reveal).")):
    """Reveal the scores and salt you committed."""
    s = session(ctx)
    account = s.unlock(as_key)
    path = _secrets(s, round_id, account.address)
    # the secret of the last commit the node answered, then one sent but never answered (it may have landed)
    kept = [p for p in (path, _pending(path)) if p.exists()]
    if not kept:
        raise LedgerError(f"no committed votes for round {round_id} in {path.parent}", field="round")
    for i, candidate in enumerate(kept):
        try:
            saved = json.loads(candidate.read_text())
            votes, salt = {int(k): v for k, v in saved["votes"].items()}, bytes.fromhex(saved["salt"])
        except (ValueError, KeyError, TypeError, AttributeError):
            if i + 1 < len(kept):
                continue
            raise LedgerError(f"the votes kept for round {round_id} in {candidate} cannot be read", field="round") from None
        try:
            r = s.client().validation.reveal(account, round_id, votes, salt)
            break
        except LedgerError as exc:
            if exc.field == "reveal" and i + 1 < len(kept):  # not the votes committed: the next kept
                continue
            raise
    s.emit(r, lambda r: console.print(f"revealed in round {round_id} ({len(r['revealed'])} of {len(r['committed'])} revealed)"))


@app.command()
def tally(ctx: typer.Context, round_id: int, as_key: str = typer.Option(..., "--as", help="Any key: signs the TallyRound (anyone may tally once the reveal ends).")):
    """Close a round after its reveal deadline: decisions, reputation, slashing."""
    s = session(ctx)
    r = s.client().validation.tally(s.unlock(as_key), round_id)
    s.emit(r, _render_round)


@round_app.command("show")
def show(ctx: typer.Context, round_id: int,
         as_key: str | None = typer.Option(None, "--as", help="Key that signs the read (a private Datanet's round).")):
    """One round: assignments, who committed and revealed, and the tally."""
    s = session(ctx)
    s.emit(s.reading_client(as_key).validation.round(round_id), _render_round)


def _render_round(r: dict) -> None:
    rules = r["rules"]
    console.print(f"[bold]round {r['id']}[/] on {r['datanet']}: {r['state']}  accept at a score of "
                  f"{rules['accept_threshold']}+, votes clipped beyond {rules['clip_distance']} of the consensus, "
                  f"quorum {rules['quorum_bps'] / 100:g}% of the assigned stake")
    if r["state"] == "open":
        console.print(f"  commit until {format_time(r['commit_deadline'])}, reveal until {format_time(r['reveal_deadline'])}")
    console.print(f"  committed {len(r['committed'])}, revealed {len(r['revealed'])} of {len(_assigned(r))} "
                  "validators")
    if r["tally"]:
        table = Table("contribution", "decision", "consensus", "votes")
        for cid, o in r["tally"]["contributions"].items():
            table.add_row(cid, o["decision"], str(o["consensus"]), ", ".join(f"{shortened(v, 8)}={s}" for v, s in o["votes"].items()))
        console.print(table)
        table = Table("validator", "stake (LGR)", "assigned", "revealed", "clipped", "agreement")
        for v, o in r["tally"]["validators"].items():
            # agreement_points sums each assigned contribution's agreement in bps: their mean, as a percentage
            agreement = int(o["agreement_points"]) // int(o["assigned"]) if int(o["assigned"]) else 0
            table.add_row(v, format_amount(int(o["stake"])), str(o["assigned"]), "yes" if o["revealed"] else "no",
                          str(o["clipped"]), f"{agreement / 100:g}%")
        console.print(table)
        for sl in r["tally"].get("slashed", []):
            console.print(f"  [red]slashed[/] {sl['account']} {format_amount(int(sl['amount']))} LGR: {sl['reason']}")


@app.command()
def reputation(ctx: typer.Context, who: str):
    """Contributor and validator reputation (basis points; 5000 is neutral)."""
    from ledgerlm.cli.chain import resolve_address

    s = session(ctx)
    s.emit(s.client().validation.reputation(resolve_address(s, who)), lambda r: console.print_json(data=r))
