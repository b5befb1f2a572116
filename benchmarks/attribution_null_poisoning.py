"""What a contributor who uploads the shipped null answers, word for word or paraphrased, does to everyone else's attribution, before and after rules 13 to 16.

Run:  python benchmarks/attribution_null_poisoning.py [--hostile 0,4,16] [--epochs 10]
                                                     [--model tiny|smollm2 --models-dir DIR]
                                                     [--entities N] [--out FILE]

The null answers that calibrate an index's payment bars ship with the project
(ledgerlm.attribution.null_queries), so anyone can contribute them. For each `--hostile` count N,
the evaluation's tiny model (or SmolLM2-135M) is fine-tuned on the planted-facts test split (as
`benchmarks/attribution.py` does) plus N records from one more contributor, each a null answer
word for word with its question (spread over the list), and indexed by the node's build. The same
index is then attributed once per rule:

  rule 12     the calibration before (every null answer measured against every row) and no row
              left unpaid: the baseline, recalibrated on the same model;
  rule 13     the rows that state a null answer are left out of the bars' measure and are paid no
              evidence (calibration.py, attribute.py), recalibrated on the same model;
  rule 14     so are the rows of a contributor that alone raises the span bar which hold a null
              answer's rare span as long as the bar the other rows set;
  rule 15     so are those of several contributors that each alone hold a span setting the
              bar, left out together;
  rule 16 on  the node's row, labelled with its current rule: the same calibration, and the
              uploaders' records left in tie no answer to the Datanet, so an answer tied only
              through them earns no gradient evidence (rules 12 to 15 tie answers as before; rule
              17, a shared value tying no answer to a prompt that asks about no record, applies to
              every row).

With `--paraphrased` the uploads say the null answers in other words (PARAPHRASES), which rule 13
does not catch; with `--identities K` they come from K contributors in turn, which rule 14 does
not catch when two of them hold equally long spans.

Reported per count and rule: the gradient bar (cosine) and the span bar; what the reference
answers to the split's questions (84 by default) pay the right contributor, wrong ones and the
data pool; the share of the evaluation's 40 unrelated prompts that pay anyone
(`null_false_payout_rate`); and what the
hostile contributor is paid for the null answers it uploaded, asked their own questions. Prints
the table and writes benchmarks/results/attribution_null_poisoning.json and .md
(attribution_null_poisoning-smollm2.* for SmolLM2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from unittest.mock import patch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import ResultTable, write_result  # noqa: E402

HOSTILE = "0x" + "ee" * 20


def hostile_identity(k: int) -> str:
    """The address of the k-th identity the uploads are spread over (0: HOSTILE)."""
    return HOSTILE if k == 0 else "0x" + "ee" * 19 + f"{k:02x}"
# `--paraphrased`: the uploads say what these null answers say in other words (positions in the
# shipped list; the spread of 4 and of 16 uploads takes these)
PARAPHRASES = {
    0: "Adding two and two gives you four.",
    4: "Nine is the square root of 81.",
    8: "Paris is the capital city of France.",
    12: "No ocean is larger than the Pacific.",
    16: "Hi there! What can I do for you today?",
    20: "The chicken crossed the road to reach the other side.",
    24: "To grow, a plant needs water, light and air.",
    28: "Oxygen is the gas we breathe in.",
    32: "A quiet song of rain falls on the roof at night.",
    36: "Blue, green and red are colours.",
    40: "In English, gracias is thank you.",
    44: "Big and large mean the same.",
    48: "After Monday comes Tuesday.",
    52: "To make tea, pour boiling water over a tea bag and wait.",
    56: "Computers are machines that process information.",
    60: "The Mona Lisa was painted by Leonardo da Vinci.",
}


def one_at_a_time(sole_holders):
    """`calibration._sole_holders` as rule 14 had it: two contributors or more are left in."""
    def holders(*args):
        found = sole_holders(*args)
        return found if len(found) == 1 else set()
    return holders


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hostile", default="0,4,16",
                        help="comma-separated counts of null answers the hostile contributor uploads")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--paraphrased", action="store_true",
                        help="the uploads paraphrase the null answers instead of copying them "
                             "(counts of 4 and 16)")
    parser.add_argument("--identities", type=int, default=1,
                        help="how many contributor identities the uploads are spread over, in turn "
                             "(default 1: one hostile contributor)")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--entities", type=int, default=None,
                        help="people in the test split (default the evaluation's)")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is (ledgerlm models pull)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_null_poisoning.json, "
                             "-smollm2.json for SmolLM2)")
    args = parser.parse_args(argv)
    try:
        counts = [int(n) for n in args.hostile.split(",") if n.strip()]
        if not counts or min(counts) < 0:
            raise ValueError
    except ValueError:
        parser.error("--hostile: counts of 0 or more, such as 0,4,16")
    if args.identities < 1:
        parser.error("--identities: 1 or more")
    if args.paraphrased and any(n not in (0, 4, 16) for n in counts):
        parser.error("--paraphrased: counts of 0, 4 or 16 (the paraphrases written)")

    import numpy as np
    import torch

    from ledgerlm.attribution import calibration as calibration_rules
    from ledgerlm.attribution.attribute import RULE
    from ledgerlm.attribution.calibration import calibrate
    from ledgerlm.attribution.index import record_content_hash
    from ledgerlm.attribution.null_queries import NULL_QUERIES
    from ledgerlm.attribution.spans import SpanIndex
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import (
        EvalConfig,
        _base_model,
        _fine_tune,
        _payment,
        query_signals,
    )
    from ledgerlm.evals.attribution.nulls import unrelated_queries
    from ledgerlm.factory import load_tokenizer

    attribution_rules = sys.modules["ledgerlm.attribution.attribute"]
    torch.set_num_threads(1)
    started = time.perf_counter()
    config = EvalConfig(model=args.model, models_dir=args.models_dir, epochs=args.epochs)
    if args.entities:
        config = replace(config, entities=args.entities)
    data = make_fact_tracing_set("test", config.entities, config.seed)
    mode = "cosine"
    results = []
    identities = {hostile_identity(k) for k in range(args.identities)}
    with tempfile.TemporaryDirectory(prefix="ledgerlm-null-poisoning-") as work:
        base = _base_model(config, Path(work), print)
        tokenizer = load_tokenizer(base)
        for count in counts:
            positions = [i * len(NULL_QUERIES) // count for i in range(count)]
            uploaded = [NULL_QUERIES[i] for i in positions]
            hostile = [{"question": q, "answer": PARAPHRASES[i] if args.paraphrased else a}
                       for i, (q, a) in zip(positions, uploaded)]
            records = list(data.records) + [
                {**r, "_contribution_id": 100_000 + k,
                 "_contributor": hostile_identity(k % args.identities),
                 "_content_hash": record_content_hash(r)} for k, r in enumerate(hostile)]
            print(f"fine-tuning with {count} null answers uploaded", flush=True)
            t = _fine_tune(config, base, tokenizer, records, Path(work) / f"model-{count}")
            node = t.index.calibration
            recalibrated = partial(calibrate, t.index, t.model, tokenizer, node.settings,
                                   training_tokens=node.settings.training_tokens)
            # as before rule 15: only one contributor at a time may be left out
            with patch.object(calibration_rules, "_sole_holders",
                              one_at_a_time(calibration_rules._sole_holders)):
                before_15 = recalibrated()
            # as before rule 14: no row counts as paraphrasing a null answer
            with patch.object(calibration_rules, "_paraphrasing_rows",
                              lambda _i, _r, _s, _m, stated, longest: (stated, longest)):
                before_14 = recalibrated()
                # as before rule 13: no row counts as stating a null answer either
                with patch.object(SpanIndex, "rows_stating",
                                  lambda _self, _query: np.zeros(0, np.int64)):
                    before_13 = recalibrated()
            # rules 12 to 15 tie answers to the Datanet as before rule 16 (through any record
            # not left out, the uploaders' other records too)
            for rule, calibration, follows in (
                    ("rule 12", before_13, False), ("rule 13", before_14, False),
                    ("rule 14", before_15, False), ("rule 15", node, False),
                    (f"rule {RULE}", node, True)):
                t.index.calibration = calibration
                with patch.object(attribution_rules, "GENERIC_OWNERS_UNTIE", follows):
                    paid = [query_signals(t, q.prompt, q.answer, exact=False).paid[mode]
                            for q in data.queries]
                    nulls = [query_signals(t, p, a, exact=False).paid[mode]
                             for p, a in unrelated_queries()]
                    farmed = [query_signals(t, q, a, exact=False).paid[mode]
                              for q, a in uploaded]
                results.append({
                    "hostile": count, "rule": rule,
                    "gradient_bar": calibration.gradient_bar[mode],
                    "span_bar": calibration.span_min_tokens,
                    "rows_stating_null_answers": len(calibration.generic_rows()),
                    "payment": _payment(paid, data.queries),
                    "null_false_payout_rate": float(np.mean([r.evidence_bps > 0 for r in nulls])),
                    "hostile_bps_on_its_uploads": float(np.mean([
                        sum(c.bps for c in r.contributors if c.contributor in identities)
                        for r in farmed])) if farmed else 0.0})
                r = results[-1]
                print(f"{count} uploaded, {rule}: bars {r['gradient_bar']:.3f} / "
                      f"{r['span_bar']} tokens, right {r['payment']['mean_bps_right']:.0f} bps",
                      flush=True)
            t.index.calibration = node
    table = ResultTable(
        f"{'A contributor uploads' if args.identities == 1 else f'{args.identities} identities upload'}"
        f" null answers {'paraphrased' if args.paraphrased else 'word for word'}"
        f": {args.model}, test split "
        f"({len(data.queries)} questions), {args.epochs} epochs, grad mode {mode}",
        ["null answers uploaded", "rule", "gradient bar", "span bar (tokens)",
         "rows left out", "bps right", "bps wrong", "bps pool", "top paid is right",
         "null_false_payout_rate", "hostile's bps on its uploads"])
    for r in results:
        p = r["payment"]
        table.add_row(str(r["hostile"]), r["rule"], f"{r['gradient_bar']:.4f}", str(r["span_bar"]),
                      str(r["rows_stating_null_answers"]), f"{p['mean_bps_right']:.0f}",
                      f"{p['mean_bps_wrong']:.0f}", f"{p['mean_bps_pool']:.0f}",
                      f"{p['top_paid_is_right']:.2f}", f"{r['null_false_payout_rate']:.3f}",
                      "" if not r["hostile"] else f"{r['hostile_bps_on_its_uploads']:.0f}")
    table.print()
    payload = {"model": args.model, "paraphrased": args.paraphrased,
               "identities": args.identities, "epochs": args.epochs, "counts": counts, "results": results,
               "seconds": time.perf_counter() - started}
    name = ("attribution_null_poisoning" + ("" if args.model == "tiny" else f"-{args.model}")
            + ("-paraphrased" if args.paraphrased else "")
            + ("" if args.identities == 1 else f"-{args.identities}-identities"))
    write_result(name, payload, [table], json_path=args.out, notes=[
        "one torch thread; the hostile contributor's records are null answers with their "
        "questions, spread over the shipped list" + (", paraphrased" if args.paraphrased else "")
        + ("" if args.identities == 1 else f", from {args.identities} identities in turn")
        + "; rules 12, 13 and 14 are the same index recalibrated as before rule 13 (no row counts "
        "as stating a null answer), before rule 14 (no row counts as paraphrasing one) and before "
        "rule 15 (one contributor at a time may be left out); rules 12 to 15 pay gradient evidence "
        "as before rule 16, to any row",
        f"total {payload['seconds']:.0f} s"])
    return payload


if __name__ == "__main__":
    main()
