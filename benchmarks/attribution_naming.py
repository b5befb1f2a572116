"""What a shared answer span pays when the prompt's wording matches another contributor's records.

Run:  python benchmarks/attribution_naming.py [--entities 24] [--epochs 15] [--towns 6]
                                              [--no-tuning]

Two Datanets, each attributed twice with the same model, index and answer features: with the
span naming rule the index now uses (a pair held by few rows names them; the prompt's rarest
material decides, `SpanIndex._shares`) and with the baseline it replaces (the row holding the most
of the prompt's rare pairs wins by its margin over the runner-up, pairs counted, not weighed).

  wording  planted facts where every town is the birthplace of one person per contributor, each
           contributor writing in a wording of their own, and each question names a person in
           another contributor's wording (ledgerlm.evals.attribution.wording); plus the same
           questions with a town the person was not born in, which no record supports.
  tuning   the evaluation's tuning split (ledgerlm.evals.attribution, tiny model, the settings
           the evaluation chose: cosine, final adapter, min_span_rows 4): what is paid, the
           contributor precision@1 of the paid ranking, unrelated prompts and contradicted
           answers. The test split is not looked at.

Prints the tables and writes benchmarks/results/attribution_naming.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from report import write_result  # noqa: E402  (benchmarks/ is the script's directory)

from ledgerlm.attribution.spans import SpanIndex  # noqa: E402
from ledgerlm.evals.table import ResultTable  # noqa: E402

RULES = ("pairs counted (baseline)", "pairs weighed by rarity", "weighed, power 2")


class CountedSpanIndex(SpanIndex):
    """The naming rule before this change, kept as the baseline: naming pairs counted."""

    def _naming_pairs(self, context, max_examples):
        if not context:
            return {}
        cut = max(2 * max_examples, self.n_rows // 5)
        return {p: 1 for p in set(pairwise(context)) if self.count(list(p)) <= cut}

    def _shares(self, rows, naming, max_examples, *, named_only=False, through=True):
        if len(rows) == 1:
            return [1.0]
        if not naming:
            return [0.0] * len(rows)
        found = []
        for r in rows.tolist():
            tokens = self.tokens[self.offsets[r]:self.offsets[r + 1] - 1].tolist()
            found.append(set(naming) & set(pairwise(tokens)))
        common = set.intersection(*found)
        weights = [1.0 + len(f - common) for f in found]
        first, second = sorted(weights, reverse=True)[:2]
        top = weights.index(first)
        return [(first - second) / first if i == top else 0.0 for i in range(len(weights))]


class SquaredSpanIndex(SpanIndex):
    naming_power = 2


def with_rule(index, rule: str):
    if rule == RULES[1]:
        return index
    kind = CountedSpanIndex if rule == RULES[0] else SquaredSpanIndex
    s = index.spans
    return replace(index, spans=kind(s.tokens, s.offsets, s.suffix_array, s.char_lengths,
                                     s.word_tokens))


def attribute_both(index, model, tokenizer, queries):
    """Per rule, the AttributionResult and the combined evidence per row of every query."""
    from ledgerlm.attribution.attribute import (
        AttributionSettings,
        gather_evidence,
        prepare_answer,
        result_from_evidence,
    )
    from ledgerlm.attribution.features import answer_feature

    settings = AttributionSettings(score_mode="cosine")
    out = {rule: ([], []) for rule in RULES}
    indexes = {rule: with_rule(index, rule) for rule in RULES}
    for prompt, answer in queries:
        prepared = prepare_answer(tokenizer, prompt, answer,
                                  index.calibration.settings.restated_weight)
        feature = answer_feature(model, index.projector, prepared.example, prepared.weights[0])
        for rule, ix in indexes.items():
            evidence = gather_evidence(ix, feature, prepared, settings)
            combined = np.zeros(len(index))
            combined[evidence.rows] = evidence.combined
            gradient = np.zeros(len(index))
            gradient[evidence.rows] = evidence.gradient
            scores = ix.gradient_scores(feature, "cosine")
            out[rule][0].append(result_from_evidence(ix, evidence, settings))
            out[rule][1].append(_evidence_then_gradient(combined, scores))
    return out


def _evidence_then_gradient(combined, gradient):
    ranks = np.argsort(np.argsort(gradient, kind="stable"), kind="stable")
    return np.where(combined > 0, combined + 1e3, 0.0) + (ranks + 1) / (len(ranks) + 2)


def payment(results, queries) -> dict:
    right = [sum(c.bps for c in r.contributors if c.contributor == q.contributor)
             for r, q in zip(results, queries)]
    evidence = [r.evidence_bps for r in results]
    # which signal the evidence of wrong contributors' rows came from (10,000 x evidence)
    parts = {"span": [], "candidate": [], "gradient": []}
    for r, q in zip(results, queries):
        wrong = [e for e in r.examples if e.contributor != q.contributor]
        parts["span"].append(sum(e.span for e in wrong))
        parts["candidate"].append(sum(e.candidate for e in wrong))
        parts["gradient"].append(sum(e.combined - e.span - e.candidate for e in wrong))
    return {"queries": len(results), "right": float(np.mean(right)),
            "wrong_from": {k: 1e4 * float(np.mean(v)) for k, v in parts.items()},
            "wrong": float(np.mean([e - r for e, r in zip(evidence, right)])),
            "pool": float(np.mean([10_000 - e for e in evidence])),
            "paid_wrong": float(np.mean([e - r > 0 for e, r in zip(evidence, right)])),
            "top_paid_is_right": float(np.mean([bool(r.contributors) and
                                                r.contributors[0].contributor == q.contributor
                                                for r, q in zip(results, queries)]))}


def wording_run(work: Path, towns: int, say) -> dict:
    from ledgerlm.attribution import build_index
    from ledgerlm.evals.attribution.wording import make_wording_set
    from ledgerlm.factory import (
        TrainConfig,
        load_tokenizer,
        register_local,
        tiny_random_model,
        train,
    )

    data = make_wording_set(towns)
    texts = [r["question"] + " " + r["answer"] for r in data.records]
    base = register_local(work / "models", "tiny-wording",
                          tiny_random_model(work / "tiny-wording", texts))
    say(f"wording: fine-tuning a tiny model on {len(data.records)} records")
    config = TrainConfig(rank=4, alpha=8, dropout=0.0, epochs=4, lr=1e-2, batch_size=2,
                         max_len=64, eval_split=0.0, warmup=0.0, seed=0)
    model = train(base, data.records, config, work / "wording-model").model
    tokenizer = load_tokenizer(base)
    index = build_index(work / "wording-model", data.records, dim=256, loaded=(model, tokenizer))
    out = {}
    for kind, queries in (("named in another's wording", data.queries),
                          ("town the records do not give", data.absent)):
        found = attribute_both(index, model, tokenizer, [(q.prompt, q.answer) for q in queries])
        out[kind] = {rule: payment(found[rule][0], queries) for rule in RULES}
    out["records"] = len(data.records)
    return out


def tuning_run(work: Path, entities: int, epochs: int, say) -> dict:
    from ledgerlm.attribution import build_index
    from ledgerlm.attribution.calibration import CalibrationSettings
    from ledgerlm.evals.attribution.facts import QUERY_KINDS, make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import EvalConfig, _base_model, _train_config
    from ledgerlm.evals.attribution.metrics import rank_metrics
    from ledgerlm.evals.attribution.nulls import unrelated_queries
    from ledgerlm.factory import load_tokenizer, train

    config = replace(EvalConfig(), entities=entities, epochs=epochs)
    base = _base_model(config, work, say)
    tokenizer = load_tokenizer(base)
    data = make_fact_tracing_set("tuning", config.entities, config.seed)
    say(f"tuning split: fine-tuning on {len(data.records)} records")
    model = train(base, data.records, _train_config(config), work / "tuning-model").model
    index = build_index(work / "tuning-model", data.records, base=base, dim=config.dim,
                        damping=config.damping, loaded=(model, tokenizer),
                        calibration=replace(CalibrationSettings(), min_span_rows=4))
    index.tokenizer = tokenizer
    rows = [e.record for e in index.examples]
    owners = [e.contributor for e in index.examples]
    say(f"tuning split: attributing {len(data.queries)} queries, "
        f"{len(data.contradicted)} contradicted, {len(unrelated_queries())} unrelated")
    found = attribute_both(index, model, tokenizer, [(q.prompt, q.answer) for q in data.queries])
    nulls = attribute_both(index, model, tokenizer, unrelated_queries())
    contradicted = attribute_both(index, model, tokenizer,
                                  [(q.prompt, q.answer) for q in data.contradicted])
    out = {}
    for rule in RULES:
        results, ranked = found[rule]
        kinds = {}
        for kind in ("all",) + QUERY_KINDS:
            idx = [i for i, q in enumerate(data.queries) if kind in ("all", q.kind)]
            qs = [data.queries[i] for i in idx]
            kinds[kind] = {**payment([results[i] for i in idx], qs),
                           "contributor_p1": rank_metrics(np.stack([ranked[i] for i in idx]), qs,
                                                          rows, owners).contributor_p1}
        to_record = [sum(c.bps for c in r.contributions
                         if c.contribution_id == data.records[q.records[0]]["_contribution_id"])
                     for r, q in zip(contradicted[rule][0], data.contradicted)]
        out[rule] = {"kinds": kinds,
                     "null_false_payout_rate": float(np.mean([r.evidence_bps > 0
                                                              for r in nulls[rule][0]])),
                     "null_mean_evidence_bps": float(np.mean([r.evidence_bps
                                                              for r in nulls[rule][0]])),
                     "bps_to_contradicted_record": float(np.mean(to_record))}
    out["records"] = len(data.records)
    return out


def tables(report: dict) -> list[ResultTable]:
    out = []
    w = report["wording"]
    t = ResultTable("Wording probe — mean bps of the contributor share: right / wrong / pool; "
                    "share of queries paying a wrong contributor",
                    ["queries", *RULES])
    for kind in ("named in another's wording", "town the records do not give"):
        n = w[kind][RULES[0]]["queries"]
        t.add_row(f"{kind} ({n})", *(_cell(w[kind][rule]) for rule in RULES))
    out.append(t)
    t = ResultTable("Wording probe — what the wrong contributors' evidence came from, mean bps: "
                    "shared span / span candidate picked by the gradient / gradient alone",
                    ["queries", *RULES])
    for kind in ("named in another's wording", "town the records do not give"):
        t.add_row(kind, *(" / ".join(f"{w[kind][rule]['wrong_from'][k]:.0f}"
                                     for k in ("span", "candidate", "gradient")) for rule in RULES))
    out.append(t)
    if "tuning" in report:
        tu = report["tuning"]
        t = ResultTable("Tuning split — what is paid (cosine), mean bps: right / wrong / pool; "
                        "contributor precision@1 of the paid ranking", ["queries", *RULES])
        for kind, v in tu[RULES[0]]["kinds"].items():
            t.add_row(f"{kind} ({v['queries']})",
                      *(f"{_bps(tu[rule]['kinds'][kind])}, P@1 "
                        f"{tu[rule]['kinds'][kind]['contributor_p1']:.2f}" for rule in RULES))
        t.add_row("null_false_payout_rate (unrelated prompts)",
                  *(f"{tu[rule]['null_false_payout_rate']:.3f}" for rule in RULES))
        t.add_row("bps to the record a contradicted answer contradicts",
                  *(f"{tu[rule]['bps_to_contradicted_record']:.0f}" for rule in RULES))
        out.append(t)
    return out


def _bps(v: dict) -> str:
    return f"{v['right']:.0f} / {v['wrong']:.0f} / {v['pool']:.0f}"


def _cell(v: dict) -> str:
    return f"{_bps(v)}; {v['paid_wrong']:.2f} paid wrong"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--towns", type=int, default=6)
    parser.add_argument("--no-tuning", action="store_true", help="the wording probe only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    started, cpu = time.perf_counter(), time.process_time()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ledgerlm-naming-") as tmp:
        report = {"wording": wording_run(Path(tmp), args.towns, say)}
        if not args.no_tuning:
            report["tuning"] = tuning_run(Path(tmp), args.entities, args.epochs, say)
    report["config"] = {**vars(args), "out": str(args.out) if args.out else None}
    report["cpu_seconds"] = time.process_time() - cpu
    found = tables(report)
    for table in found:
        table.print()
    notes = [f"the baseline (pairs counted) and the new rule attribute the same answers with the "
             f"same model, index and features; CPU {report['cpu_seconds']:.0f} s, one torch thread",
             "tuning split only: the test split is not looked at"]
    write_result("attribution_naming", report, found, notes=notes, json_path=args.out)
    return report


if __name__ == "__main__":
    main()

