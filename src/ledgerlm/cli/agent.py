"""`ledgerlm agent`: create, inspect, pause and audit agents that act with their own keys and budgets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ledgerlm.cli.session import Session, Table, console, new_passphrase, session
from ledgerlm.errors import LedgerError
from ledgerlm.times import format_time as when
from ledgerlm.units import format_amount, parse_amount

app = typer.Typer(help="Agents: their own keys, budgets and policies, a kill switch and an audit trail.",
                  no_args_is_help=True)


def registry(s: Session):
    from ledgerlm.agents import AgentRegistry

    return AgentRegistry(s.home.root / "agents")


def public(record) -> dict:
    """An agent as printed (its API key stays encrypted in the home and is never shown)."""
    data = record.model_dump(exclude={"api_key"})
    data["policy"]["budget"] = str(record.policy.budget)
    return data


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the agent, e.g. buyer-1."),
    owner: str = typer.Option(..., "--owner", help="The owner's key: it funds the agent and signs nothing else."),
    budget: str = typer.Option(..., "--budget", help="Most LGR the agent spends on calls (deposited into escrow)."),
    per_epoch: bool = typer.Option(False, "--per-epoch", help="The budget renews every epoch."),
    allow_models: str | None = typer.Option(None, "--allow-models", help="Comma-separated model ids [default: any]."),
    allow_datanets: str | None = typer.Option(None, "--allow-datanets", help="Comma-separated Datanets [default: any]."),
    max_price: str | None = typer.Option(None, "--max-price", help="Dearest model price it may pay, LGR per 1k tokens."),
    stake: str = typer.Option("0", "--stake", help="LGR the agent stakes as a validator."),
    actions: str | None = typer.Option(None, "--actions", help="Comma-separated tools it may use [default: all]."),
):
    """Make the agent's encrypted key; the owner funds it and signs its policy for the node; the agent deposits,
    stakes and signs its own cap. If a step fails, run the same command again: it finishes the job and never
    funds twice."""
    from ledgerlm.agents import TOOLS, FundingPlan, create_agent, make_policy, parse_names

    s = session(ctx)
    passphrase = new_passphrase("the agent's key", "Passphrase for the agent's key")
    policy = make_policy(
        budget=parse_amount(budget, field="budget"), per_epoch=per_epoch, allow_models=parse_names(allow_models),
        allow_datanets=parse_names(allow_datanets),
        max_price_per_1k=parse_amount(max_price, field="max_price") if max_price else None,
        actions=parse_names(actions) if actions else list(TOOLS))
    plan = FundingPlan(budget=policy.budget, stake=parse_amount(stake, field="stake"))
    owner_account = s.unlock(owner)
    record = create_agent(s.client(), registry(s), s.keyring(), name=name, owner=owner_account, policy=policy,
                          plan=plan, passphrase=passphrase)
    s.emit(public(record), lambda r: console.print(
        f"[green]agent {r['name']}[/] {r['address']}\n  owner {r['owner']}, budget "
        f"{format_amount(policy.budget)} LGR{' per epoch' if per_epoch else ''} in escrow under a cap it signed"
        f" (epoch {r['key_epoch']}); key {r['key_name']}; the node enforces its policy"))


@app.command("list")
def list_agents(ctx: typer.Context):
    """Agents in this home: address, owner, budget and whether paused."""
    s = session(ctx)
    rows = [public(r) for r in registry(s).list()]

    def render(items):
        table = Table("name", "address", "owner", "budget (LGR)", "per epoch", "paused")
        for r in items:
            p = r["policy"]
            table.add_row(r["name"], r["address"], r["owner"], format_amount(int(p["budget"])),
                          "yes" if p["per_epoch"] else "", "[red]paused[/]" if p["paused"] else "")
        console.print(table)

    s.emit(rows, render)


@app.command("show")
def show(ctx: typer.Context, name: str):
    """One agent: its policy, what it spent (from the node's receipts) and its escrow standing."""
    s = session(ctx)
    record = registry(s).get(name)
    client = s.client()
    mine = [r for r in client.serving.every_receipt(account=record.address)
            if r["consumer"] == record.address]
    chain = client.chain.account(record.address)
    try:
        enforced = client.agents.standing(record.address)
    except LedgerError as exc:
        enforced = {"error": exc.message}
    data = {**public(record), "calls": len(mine), "spent": str(sum(int(r["fee"]) for r in mine)), "chain": chain,
            "node_policy": enforced}

    def render(d):
        p = d["policy"]
        console.print(f"[bold]{d['name']}[/] {d['address']}  owner {d['owner']}"
                      + ("  [red]PAUSED[/]" if p["paused"] else "")
                      + ("  [yellow]creation unfinished: rerun `agent create`[/]" if d["state"] != "ready" else ""))
        console.print(f"  budget {format_amount(int(p['budget']))} LGR{' per epoch' if p['per_epoch'] else ''}, "
                      f"spent {format_amount(int(d['spent']))} LGR in {d['calls']} call(s)")
        console.print(f"  models {', '.join(p['allow_models']) or 'any'}; Datanets {', '.join(p['allow_datanets']) or 'any'}"
                      f"; max price {format_amount(p['max_price_per_1k']) + ' LGR/1k' if p['max_price_per_1k'] is not None else 'none'}")
        console.print(f"  actions {', '.join(p['actions'])}")
        node_policy = d["node_policy"]
        console.print("  node enforces: " + (node_policy["error"] if "error" in node_policy else
                      f"owner {node_policy['owner']}, {'paused' if node_policy['policy']['paused'] else 'active'}, "
                      f"spent {format_amount(int(node_policy['spent']))} LGR in "
                      f"{'epoch ' + str(node_policy['epoch']) if node_policy['policy']['per_epoch'] else 'all'}"))
        console.print_json(data=d["chain"])

    s.emit(data, render)


OWNER_KEY = typer.Option(None, "--owner", help="The owner's key [default: the key in this home with the owner's "
                                                  "address].")


def _owner_key(s: Session, record, owner: str | None):
    if owner is None:
        names = [k.name for k in s.keyring().list() if k.address == record.owner]
        if not names:
            raise LedgerError(f"no key in this home has owner address {record.owner}: give it with --owner KEY",
                              field="owner")
        owner = names[0]
    account = s.unlock(owner)
    if account.address != record.owner:
        raise LedgerError(f"key {owner!r} ({account.address}) is not agent {record.name!r}'s owner ({record.owner})",
                          field="owner")
    return account


def _set_paused(ctx: typer.Context, name: str, paused: bool, owner: str | None) -> None:
    from ledgerlm.agents import change_policy

    s = session(ctx)
    record = registry(s).get(name)
    record = change_policy(s.client(), registry(s), name, _owner_key(s, record, owner), paused=paused)
    s.emit(public(record), lambda r: console.print(
        f"agent {r['name']} " + ("[red]paused[/]: the node refuses its next action" if paused else "[green]resumed[/]")))


@app.command("pause")
def pause(ctx: typer.Context, name: str, owner: str | None = OWNER_KEY):
    """Kill switch, signed by the owner: the node refuses the agent's next spend, contribution or vote, and every
    one after, until `resume`."""
    _set_paused(ctx, name, True, owner)


@app.command("resume")
def resume(ctx: typer.Context, name: str, owner: str | None = OWNER_KEY):
    """Let a paused agent act again (signed by its owner)."""
    _set_paused(ctx, name, False, owner)


@app.command("policy")
def policy(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The agent."),
    owner: str | None = OWNER_KEY,
    budget: str | None = typer.Option(None, "--budget", help="Most LGR it spends on calls [default: unchanged]."),
    per_epoch: bool | None = typer.Option(None, "--per-epoch/--in-total", help="The budget renews every epoch, or "
                                                                              "not [default: unchanged]."),
    allow_models: str | None = typer.Option(None, "--allow-models", help="Comma-separated model ids, or `any`."),
    allow_datanets: str | None = typer.Option(None, "--allow-datanets", help="Comma-separated Datanets, or `any`."),
    max_price: str | None = typer.Option(None, "--max-price", help="LGR per 1k tokens, or `none`."),
    actions: str | None = typer.Option(None, "--actions", help="Comma-separated tools it may use, or `all`."),
):
    """Change the agent's policy, signed by its owner; the node enforces it from the agent's next action. Its
    escrow and the cap it signed stay as they are."""
    from ledgerlm.agents import TOOLS, change_policy, make_policy, parse_names
    from ledgerlm.agents.funding import enforced_policy

    s = session(ctx)
    record = registry(s).get(name)
    owner_key = _owner_key(s, record, owner)
    # options left out stay as the node enforces them (a change made from another home or the SDK included); read
    # as the owner, to whom the node names the private Datanets the policy allows
    fields = enforced_policy(s.client(), record.address, reader=owner_key) or record.policy.model_dump()
    if budget is not None:
        fields["budget"] = parse_amount(budget, field="budget")
    if per_epoch is not None:
        fields["per_epoch"] = per_epoch
    if allow_models is not None:
        fields["allow_models"] = [] if allow_models == "any" else parse_names(allow_models)
    if allow_datanets is not None:
        fields["allow_datanets"] = [] if allow_datanets == "any" else parse_names(allow_datanets)
    if max_price is not None:
        fields["max_price_per_1k"] = None if max_price == "none" else parse_amount(max_price, field="max_price")
    if actions is not None:
        fields["actions"] = list(TOOLS) if actions == "all" else parse_names(actions)
    record = change_policy(s.client(), registry(s), name, owner_key, policy=make_policy(**fields))
    s.emit(public(record), lambda r: console.print(f"agent {r['name']}: policy changed; the node enforces it from "
                                                   "its next action"))


@app.command("audit")
def audit(ctx: typer.Context, name: str):
    """Every tool call the agent attempted: when, what, cost, receipt id, chain transactions, the settlement
    transaction of the epoch close that charged each receipt, refusals."""
    from ledgerlm.agents import AuditLog

    s = session(ctx)
    entries = AuditLog(registry(s).audit_path(name)).entries()
    registry(s).get(name)  # an unknown agent is an error, not an empty trail
    client = s.client() if any(e.receipt_id for e in entries) else None
    rows = []
    for e in entries:
        settlement = client.serving.receipt(e.receipt_id).get("settlement") if e.receipt_id else None
        rows.append({**e.model_dump(), "cost": str(e.cost), "settlement": settlement})

    def render(items):
        table = Table("when", "tool", "ok", "cost (LGR)", "receipt", "chain tx", "settled by", "refused because")
        for e in items:
            settled = e["settlement"]
            table.add_row(when(e["at"]), e["tool"], "yes" if e["ok"] else "[red]no[/]", format_amount(int(e["cost"])),
                          e["receipt_id"] or "", " ".join(e["tx_hashes"]),
                          f"epoch {settled['epoch']} {settled['tx'] or ''}".strip() if settled else "",
                          f"{e['field']}: {e['error']}" if e["error"] else "")
        console.print(table)

    s.emit(rows, render)


@app.command("run")
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The agent."),
    task: str = typer.Option(..., "--task", help="What the agent should do, in words."),
    max_steps: int = typer.Option(8, "--max-steps", help="Most tool calls in this run."),
    max_spend: str | None = typer.Option(None, "--max-spend", help="Most LGR this run may spend [default: the budget]."),
    model: str | None = typer.Option(None, "--model", help="The served model that drives the agent."),
    script: Path | None = typer.Option(None, "--script", help="Drive it with a JSON list of "
                                                              "{\"tool\", \"args\"} steps instead of a model."),
    files: Path | None = typer.Option(None, "--files", help="The folder `contribute` may upload files from "
                                                            "(paths relative to it); without it the run uploads "
                                                            "nothing."),
):
    """Run a tool-using loop as the agent, signed with its own key, within its policy and these limits."""
    from ledgerlm.agents import AgentWallet, ScriptedDriver, ServedModelDriver, run_task

    s = session(ctx)
    record = registry(s).get(name)
    wallet = AgentWallet(s.client(), registry(s), name, s.unlock(record.key_name))
    if (model is None) == (script is None):
        raise LedgerError("give exactly one driver: --model MODEL or --script FILE", field="model")
    if script is not None:
        if not script.exists():
            raise LedgerError(f"no script at {script}", field="script")
        driver = ScriptedDriver.from_json(script.read_text())
    else:
        driver = ServedModelDriver(wallet, model)
    result = run_task(wallet, task, driver, max_steps=max_steps,
                      max_spend=parse_amount(max_spend, field="max_spend") if max_spend else None, files=files)

    def render(r):
        for i, step in enumerate(r["steps"], 1):
            outcome = "[green]ok[/]" if step["ok"] else f"[red]refused[/] ({step['field']}: {step['error']})"
            console.print(f"{i}. {step['tool']} {json.dumps(step['args'])} {outcome}")
        console.print(f"stopped: {r['stopped']}; spent {format_amount(int(r['spent']))} LGR"
                      + (f"\nanswer: {r['answer']}" if r["answer"] else ""))

    s.emit(result.to_dict(), render)


def mcp(
    ctx: typer.Context,
    agent: str = typer.Option(..., "--agent", help="The agent whose key, policy and budget the tools use."),
):
    """Serve the agent's tools over the Model Context Protocol on stdin/stdout, for an agent framework."""
    import anyio

    from ledgerlm.agents import AgentWallet
    from ledgerlm.agents.mcp_server import serve_stdio

    s = session(ctx)
    record = registry(s).get(agent)
    wallet = AgentWallet(s.client(), registry(s), agent, s.unlock(record.key_name))
    anyio.run(serve_stdio, wallet)
