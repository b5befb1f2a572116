"""`ledgerlm attribute` and `ledgerlm eval attribution`: who shaped an answer, and how well we know."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ledgerlm.cli.session import Table, console, session, shortened
from ledgerlm.errors import LedgerError

eval_app = typer.Typer(help="Measure the system against ground truth.", no_args_is_help=True)


def attribute(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="A fine-tuned model id (see `ledgerlm models list`)."),
    prompt: str | None = typer.Option(None, "--prompt", help="The question or instruction."),
    answer: str | None = typer.Option(None, "--answer", help="The answer to attribute [default: generate it]."),
    max_new_tokens: int = typer.Option(64, help="Tokens to generate when no --answer is given."),
    verify: str | None = typer.Option(
        None, "--verify", metavar="RECEIPT",
        help="Recompute the attribution of a receipt and compare it field by field: a file (the JSON "
             "`attribute --json` prints, or a serving receipt with its prompt and completion, as "
             "`receipts show ID --as KEY --json` prints it), or with --as a receipt id, whose consumer's copy is "
             "fetched from the node; exit status 1 on a mismatch, 0 when identical or different only within "
             "rounding tolerance."),
    as_key: str | None = typer.Option(
        None, "--as", help="Key that signs the request [default: the home's operator credential, sent only to "
                           "this home's own node]; with --verify ID, the receipt's consumer."
    ),
):
    """Which contributions shaped this answer: top examples, the evidence-backed share (bps) per
    contribution and contributor, and the part left to the Datanet's data pool."""
    s = session(ctx)
    if verify is not None:
        _verify(s, verify, as_key)
        return
    if not model or not prompt:
        raise LedgerError("--model and --prompt are required (or --verify RECEIPT)",
                          field="model" if not model else "prompt")
    account = s.unlock(as_key) if as_key else None
    result = s.client().attribute(model, prompt, answer, max_new_tokens, account)

    def render(r):
        console.print(f"[bold]answer[/]{' (generated)' if r['generated'] else ''}: {r['answer']}")
        console.print(f"evidence covers {r['evidence_bps']} bps of the contributor share (paid to "
                      f"contributors); {r['pool_bps']} bps go to the Datanet's data pool")
        if r["unattributed"]:
            gradient = (f"gradient score {r['gradient_bar']:.4f}" if r["gradient_bar"] < 1 else
                        "the gradient pays nothing on this index: its training was too small to "
                        "calibrate it")
            console.print("[yellow]unattributed[/]: no training example cleared the calibrated bars "
                          f"({gradient}; spans of {r['span_min_tokens']} tokens)")
        table = Table("contribution", "contributor", "gradient score", "token match", "gradient evidence",
                      "span evidence", "longest span (tokens)", "combined")
        for e in r["examples"]:
            table.add_row(str(e["contribution_id"]), shortened(e["contributor"], 12), f"{e['gradient']:.4f}",
                          f"{e.get('match', 0.0):.4f}", f"{e['gradient_evidence']:.3f}", f"{e['span']:.3f}",
                          str(e["longest_span"]), f"{e['combined']:.3f}")
        console.print(table)
        table = Table("contributor", "share (bps)")
        for c in r["contributors"]:
            table.add_row(c["contributor"], str(c["bps"]))
        console.print(table)

    s.emit(result, render)


def _verify(s, given: str, as_key: str | None) -> None:
    from ledgerlm.attribution.verify import read_receipt, receipt_from, verify_receipt

    account = s.unlock(as_key) if as_key else None
    if Path(given).exists() or not as_key:
        receipt = read_receipt(Path(given))
    else:  # a receipt id: the consumer's own copy, with the prompt and answer, from the node
        shown = s.client().serving.receipt(given, account)
        receipt = receipt_from(shown, f"receipt {given}")
    # recomputed on the node under the key's signature (or the operator's credential, on the home's own node)
    check = verify_receipt(receipt, lambda m, p, a: s.client().attribute(m, p, a, 64, account))
    outcome = {"verified": check.verified, "identical": check.identical, "model": check.model,
               "differences": check.differences, "mismatches": check.mismatches,
               "evidence_bps": check.recomputed["evidence_bps"], "pool_bps": check.recomputed["pool_bps"],
               "contributors": check.recomputed["contributors"]}

    def render(r):
        split = (f"{r['evidence_bps']} bps to {len(r['contributors'])} contributors, {r['pool_bps']} bps "
                 "to the pool")
        if r["identical"]:
            console.print(f"verified: the recomputed attribution matches the receipt bit for bit ({split})")
        elif r["verified"]:
            console.print(f"[yellow]verified within rounding tolerance[/]: gradient scores differ in their "
                          f"last digits (as between a GPU and a CPU), and so do these ({split}):")
        else:
            console.print("[red]differs[/] from the receipt:")
        for line in r["differences"]:
            console.print(f"  {line}")

    s.emit(outcome, render)
    if not check.verified:
        raise typer.Exit(1)


@eval_app.command("attribution")
def eval_attribution(
    ctx: typer.Context,
    model: str = typer.Option("tiny", help="tiny (built in-process) or smollm2."),
    entities: int = typer.Option(24, help="Fictional people in each split's generated Datanet."),
    epochs: int = typer.Option(15, help="Fine-tuning epochs."),
    lds_subsets: int = typer.Option(12, help="Retrainings on random halves for the LDS, per split (0 to skip)."),
    lds_seeds: int = typer.Option(1, help="Models trained per LDS subset (other seeds), their answer losses averaged."),
    lds_variants: bool = typer.Option(True, "--lds-variants/--no-lds-variants", help="Score the K-FAC/EK-FAC, per-token and checkpoint-ensemble variants in the LDS (the most memory)."),
    out: Path = typer.Option(Path("attribution-eval.json"), help="Where to write every figure as JSON."),
):
    """Attribution quality on the test split (settings chosen on the tuning split): fact tracing
    against random, BM25 and MiniLM, what is paid, the false-payout rate on unrelated prompts,
    contradicted answers, LDS per method, and cost."""
    # Checked before minutes of training, not after.
    if model not in ("tiny", "smollm2"):
        raise LedgerError(f"unknown model {model!r}: use tiny or smollm2", field="model")
    if lds_seeds < 1:
        raise LedgerError("lds_seeds must be at least 1", field="lds_seeds")
    if not out.parent.is_dir():
        raise LedgerError(f"{out.parent} is not a directory to write the report in", field="out")
    from dataclasses import asdict, replace

    from ledgerlm.evals.attribution import EvalConfig, report_tables, run_attribution_eval

    s = session(ctx)
    config = replace(EvalConfig(), model=model, entities=entities, epochs=epochs,
                     lds_subsets=lds_subsets, lds_seeds=lds_seeds, lds_variants=lds_variants)
    with console.status("evaluating attribution…") as status:
        report = run_attribution_eval(config, say=lambda m: status.update(m))
    data = asdict(report)
    out.write_text(json.dumps(data, indent=2, default=str))

    def render(_):
        for table in report_tables(report):
            console.print(table.rich())
        console.print(f"wrote {out}")

    s.emit({"out": str(out), "null_false_payout_rate": report.test["null_false_payout_rate"],
            "own_null_false_payout_rate": report.test["own_null_false_payout_rate"],
            "chosen_score_mode": report.tuning["chosen_score_mode"]}, render)
