"""Receipts of an evaluation-seeds run against retraining's verdicts on the same draws, without retraining again.

Run:  python benchmarks/attribution_loco_receipts.py \
          --receipts benchmarks/results/attribution_eval_seeds-smollm2.json \
          --loco benchmarks/results/attribution_loco-smollm2.json

`benchmarks/attribution_loco.py` fine-tunes a model without each contributor and names, per question,
the contributor whose absence lowers the answer's log-likelihood most (deciding the question when
that drop beats the runner-up's by more than the spread of three whole-Datanet fine-tunes). Its
whole-Datanet fine-tune is the one `benchmarks/attribution_eval_seeds.py` attributes for the same
model, split and seed (the same configuration; training is deterministic), so the receipts of a
later attribution rule can be scored against the kept verdicts: this reads both JSON files and
reports, per question kind, how often the receipts' top contributor is the one retraining names
(on the questions it decides), beside the receipts the verdicts were kept with, and the planted
labels (the stylist alone, and both teachers of a style answer). Writes
benchmarks/results/attribution_loco_receipts.json and .md (`--out`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attribution_loco import decisive  # noqa: E402
from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402


def compare(receipts: dict, loco: dict) -> list[dict]:
    """One row per question both runs hold: its kind, retraining's verdict, and each ranking's top."""
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set

    if receipts.get("model") != loco.get("model") or receipts.get("split", "test") != loco.get("split"):
        raise SystemExit("--receipts and --loco must be runs of the same model and split")
    by_seed = {run["seed"]: run for run in receipts["runs"]}
    rows = []
    for run in loco["runs"]:
        if run["seed"] not in by_seed or "tops" not in by_seed[run["seed"]]:
            continue
        data = make_fact_tracing_set(loco["split"], loco["entities"], run["seed"])
        teachers = {q.answer: [data.roles[c] for c in q.responsible] for q in data.queries}
        tops = {t["answer"]: t["receipt"] for t in by_seed[run["seed"]]["tops"]}
        for q in run["questions"]:
            rows.append({"seed": run["seed"], "kind": q["kind"], "answer": q["answer"],
                         "decided": decisive(q), "retraining": q["retraining"],
                         "receipt": tops[q["answer"]], "kept_receipt": q["receipt"],
                         "label": q["label"], "teachers": teachers[q["answer"]]})
    return rows


def tables(rows: list[dict]) -> list[ResultTable]:
    def rate(among, ok) -> str:
        return f"{sum(map(ok, among))} of {len(among)}" if among else "-"

    table = ResultTable(
        "On the questions retraining decides: how often each names the contributor whose absence "
        "lowers the answer's log-likelihood most",
        ["questions", "decided", "receipts (this rule)", "receipts kept with the verdicts",
         "label: the stylist alone", "label: both teachers", "receipts unchanged (all questions)"])
    order = ("paraphrase", "short", "indirect", "style")
    for kind in [*sorted({r["kind"] for r in rows}, key=order.index), "all"]:
        qs = [r for r in rows if kind in ("all", r["kind"])]
        decided = [r for r in qs if r["decided"]]
        table.add_row(kind, f"{len(decided)} of {len(qs)}",
                      rate(decided, lambda r: r["receipt"] == r["retraining"]),
                      rate(decided, lambda r: r["kept_receipt"] == r["retraining"]),
                      rate(decided, lambda r: r["label"] == r["retraining"]),
                      rate(decided, lambda r: r["retraining"] in r["teachers"]),
                      rate(qs, lambda r: r["receipt"] == r["kept_receipt"]))
    style = ResultTable("Style questions, one by one",
                        ["seed", "answer", "retraining", "decided", "receipts (this rule)",
                         "receipts kept", "teachers"])
    for r in (r for r in rows if r["kind"] == "style"):
        style.add_row(str(r["seed"]), r["answer"], r["retraining"], "yes" if r["decided"] else "no",
                      r["receipt"], r["kept_receipt"], ", ".join(r["teachers"]))
    return [table, style]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=Path, required=True,
                        help="an attribution_eval_seeds.py JSON (with per-question tops)")
    parser.add_argument("--loco", type=Path, required=True, help="an attribution_loco.py JSON")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results)")
    args = parser.parse_args(argv)
    receipts, loco = json.loads(args.receipts.read_text()), json.loads(args.loco.read_text())
    rows = compare(receipts, loco)
    if not rows:
        raise SystemExit("the two runs share no seed with per-question receipts")
    shown = tables(rows)
    for table in shown:
        table.print()
    payload = {"receipts": str(args.receipts), "loco": str(args.loco),
               "rule": receipts.get("rule"), "questions": rows}
    write_result("attribution_loco_receipts", payload, shown, json_path=args.out, notes=[
        f"receipts: {args.receipts} (attribution rule {receipts.get('rule', 'before 21')}); "
        f"verdicts: {args.loco} ({loco['date']})"])
    return payload


if __name__ == "__main__":
    main()
