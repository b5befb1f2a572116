"""Proof of Attribution on planted facts it was never tuned on, trained and indexed as a node does, with the model's own answers.

Run:  python benchmarks/attribution_heldout.py [--model smollm2 --models-dir DIR]
                                              [--contributors 8] [--facts-each 12]
                                              [--lds-subsets 16] [--lds-queries 24]

Every attribution setting was chosen on the evaluation's own generator (people, towns, pets;
`ledgerlm.evals.attribution.facts`). This Datanet comes from another one, ModelFactory's
(`benchmarks/facts.py`, report seed): invented organisations with a banner colour, a city, a
mascot, a founding year or an instrument, whose values are ordinary words several records
share, asked in wordings the records never use. `--contributors` x `--facts-each` facts are
dealt at random to the contributors. The model is fine-tuned with ModelFactory's defaults (LoRA
rank 16 on every projection; every record trained on) and indexed by the node's own observer
with its default settings; answers are attributed as serving attributes them (`load_attributor`:
the model in float64). Nothing is chosen on this data.

Reported beside BM25 over question and answer:
- the reference answer (the record's sentence) to each paraphrased question: contributor and
  record precision@1 of the receipt's order, and what is paid (right / wrong / data pool);
- the model's own greedy answer to each paraphrased question, apart for answers that name the
  planted value and those that do not: what is paid, and the rows paid on gradient evidence
  alone (how many were the responsible record);
- an answer giving another organisation's value for the same attribute: what the record it
  contradicts is paid;
- the evaluation's unrelated prompts (not the calibration's): false payouts on their fixed
  answers and on the model's own answers (an own answer that repeats an organisation's invented
  name borrows from the Datanet and is counted apart);
- with `--lds-subsets` > 0, LDS over retrains on random halves (same training settings), on
  `--lds-queries` queries with reference answers.

Beside the receipts' gradient features (8,192 count-sketched numbers), the exact LoRA gradients
of the same adapter (every LoRA weight unprojected, the template head left out as the index
leaves it out) rank the reference answers and enter the LDS table: the goal is that the
projected gradient keeps at least 90% of their LDS. `--no-exact` leaves them out.

The tiny model (the default, a quick run of the whole path) does not learn these facts: its
base was pre-trained on facts about people, and it names none of the planted values. The figures
to read are SmolLM2's (`--model smollm2`).

Prints tables and writes benchmarks/results/attribution_heldout.json and .md (`--out`).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from facts import ATTRIBUTES, REPORT_SEED, generate_facts  # noqa: E402
from report import write_result  # noqa: E402
from rich.console import Console  # noqa: E402

from ledgerlm.evals.attribution.facts import TracingQuery, contributor_address  # noqa: E402
from ledgerlm.evals.table import ResultTable  # noqa: E402

console = Console(width=160)


def heldout_datanet(contributors: int, facts_each: int, seed: int = 0,
                    facts_seed: int = REPORT_SEED):
    """Attributed records, a paraphrased query per record (its sentence as the reference answer),
    a contradicting answer per record, and each record's planted value. `facts_seed` draws the
    facts: the report seed by default, any other for a Datanet no figure was ever taken on."""
    from ledgerlm.attribution.index import record_content_hash

    facts = generate_facts(contributors * facts_each, facts_seed)
    owners = [contributor_address(f"organisation keeper {k}") for k in range(contributors)
              for _ in range(facts_each)]
    random.Random(seed).shuffle(owners)
    rng = random.Random(seed + 1)
    records, queries, contradicted = [], [], []
    for i, (fact, owner) in enumerate(zip(facts, owners)):
        plain = fact.record()
        records.append({**plain, "_contribution_id": i + 1, "_contributor": owner,
                        "_content_hash": record_content_hash(plain)})
        queries.append(TracingQuery("paraphrase", fact.paraphrase, fact.answer, owner, (i,)))
        values, _asked, _para, sentence = ATTRIBUTES[fact.attribute]
        other = rng.choice([v for v in values if v != fact.value])
        contradicted.append(TracingQuery("contradicted", fact.paraphrase,
                                         sentence.format(e=fact.entity, v=other), owner, (i,)))
    return records, queries, contradicted, facts


def train_settings(config, lr: float | None = None):
    """The training settings of the held-out run and of every retrain on its halves: ModelFactory's
    defaults for SmolLM2 (what `ledgerlm factory train` runs); the tiny model needs a higher rate
    to learn in as many epochs. `config` is the run's EvalConfig."""
    from ledgerlm.evals.attribution.harness import _train_config
    from ledgerlm.factory import TrainConfig

    settings = (replace(TrainConfig(), epochs=config.epochs, eval_split=0.0, seed=config.seed)
                if config.model == "smollm2" else
                replace(_train_config(config), rank=16, alpha=32.0, lr=3e-3))
    return replace(settings, lr=lr) if lr else settings


def half_masks(seed: int, rows: int, halves: int) -> np.ndarray:
    """The LDS retrains' halves, in order: `halves` draws of rows // 2 rows from one stream."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((halves, rows), dtype=bool)
    for j in range(halves):
        masks[j, rng.choice(rows, rows // 2, replace=False)] = True
    return masks


def lds_batch(tokenizer, queries: list, chosen):
    """One packed batch of the LDS queries' reference answers (`chosen` positions in `queries`)."""
    from ledgerlm.attribution.features import answer_example
    from ledgerlm.factory import collate, pack_examples

    examples = [replace(answer_example(tokenizer, queries[i].prompt, queries[i].answer), index=k)
                for k, i in enumerate(chosen)]
    return collate(pack_examples(examples, max(len(e.input_ids) for e in examples), 0))


def retrain_losses(base, records: list[dict], rows, keep: np.ndarray, settings, out: Path,
                   batch) -> np.ndarray:
    """Train on the rows `keep` marks and return each LDS query's answer loss, in query order."""
    import torch

    from ledgerlm.factory import example_losses, train

    model = train(base, [records[r] for r, k in zip(rows, keep) if k], settings, out).model
    with torch.no_grad():
        ids, per_example = example_losses(model, batch)
    return per_example.numpy()[np.argsort(ids.numpy())]


def answer_cosines(model, tokenizer, projector, features: np.ndarray, prompt: str, answer: str,
                   restated_weight: float) -> np.ndarray:
    """Cosine of every row of `features` with the answer's gradient projected by `projector`,
    computed as receipts compute it (content weights, template head left out)."""
    from ledgerlm.attribution.attribute import prepare_answer
    from ledgerlm.attribution.features import answer_feature
    from ledgerlm.evals.attribution.baselines import cosine_rows

    prepared = prepare_answer(tokenizer, prompt, answer, restated_weight)
    gradient = answer_feature(model, projector, prepared.example, prepared.weights[0])
    return cosine_rows(features, gradient.astype(features.dtype))


def names_value(answer: str, value: str) -> bool:
    return re.search(rf"\b{re.escape(value)}\b", answer, re.IGNORECASE) is not None


def _receipt(result) -> dict:
    """What one attribution paid: evidence bps and each paid record with its evidence."""
    return {"evidence_bps": result.evidence_bps,
            "records": [{"record": e.record, "contributor": e.contributor,
                         "span": e.span, "longest_span": e.longest_span,
                         "gradient_evidence": e.gradient_evidence, "combined": e.combined}
                        for e in result.examples if e.combined > 0]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is (ledgerlm models pull)")
    parser.add_argument("--contributors", type=int, default=8)
    parser.add_argument("--facts-each", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: ModelFactory's for SmolLM2, 3e-3 for tiny)")
    parser.add_argument("--lds-subsets", type=int, default=0)
    parser.add_argument("--lds-queries", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-exact", action="store_true",
                        help="leave out the exact LoRA gradients (about 2 GB for SmolLM2's rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--facts-seed", type=int, default=REPORT_SEED,
                        help="seed of the planted facts (default the report seed; another draws "
                             "organisations and values no committed figure was taken on)")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the fine-tuned model and index here, and with --lds-subsets the "
                             "retrains' masks and losses (lds.npz; default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_heldout.json)")
    args = parser.parse_args(argv)

    import torch

    from ledgerlm.attribution import load_attributor
    from ledgerlm.attribution.attribute import greedy_answer, load_model
    from ledgerlm.config import NodeConfig
    from ledgerlm.evals.attribution.baselines import bm25_scores, exact_projector, exact_row_gradients
    from ledgerlm.evals.attribution.harness import (
        EXACT_HEAD,
        EvalConfig,
        _base_model,
        _payment,
        bps_to_records,
        query_signals,
    )
    from ledgerlm.evals.attribution.metrics import lds, rank_metrics
    from ledgerlm.evals.attribution.nulls import unrelated_queries
    from ledgerlm.factory import load_tokenizer, train
    from ledgerlm.node import _attribution_observer

    torch.set_num_threads(1)
    started = time.perf_counter()
    records, queries, contradicted, facts = heldout_datanet(args.contributors, args.facts_each,
                                                            args.seed, args.facts_seed)
    entity_names = {f.entity for f in facts}
    config = EvalConfig(model=args.model, models_dir=args.models_dir, epochs=args.epochs,
                        seed=args.seed)
    settings = train_settings(config, args.lr)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ledgerlm-attr-heldout-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        say = console.log
        base = _base_model(config, work, say)
        tokenizer = load_tokenizer(base)
        out = work / "model"
        say(f"fine-tuning {args.model} on {len(records)} held-out records "
            f"({args.contributors} contributors), {args.epochs} epochs")
        # the node's observer: its default feature source, width and calibration
        node = NodeConfig()
        features = _attribution_observer(node.attribution_feature_epochs, node.attribution_last_blocks,
                                         node.attribution_per_token, node.attribution_dim)(settings, base)
        t0 = time.perf_counter()
        trained = train(base, records, settings, out, on_batch_end=features.on_batch_end,
                        capture_batch=features.capture_batch)
        seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        built = features.finish(out, records, base, trained)
        seconds["index_build"] = time.perf_counter() - t0
        say(f"trained in {seconds['train']:.0f} s, index built in {seconds['index_build']:.0f} s "
            f"({built['indexed_examples']} rows)")
        served, _tok = load_model(out, base)  # the precision a node answers in
        del trained
        attributor = load_attributor(out, base=base)
        t = SimpleNamespace(model=attributor.model, tokenizer=tokenizer, index=attributor.index)
        mode = attributor.settings.score_mode or attributor.index.config.score_mode
        rows = [e.record for e in t.index.examples]
        row_owners = [e.contributor for e in t.index.examples]

        def signals(prompt: str, answer: str):
            return query_signals(t, prompt, answer, exact=False)

        exact_scores = None
        if not args.no_exact:
            say(f"exact LoRA gradients of the {len(rows)} records and the reference answers")
            t0 = time.perf_counter()
            exact = exact_projector(t.model, t.index.projector.head)
            # float32 rows, a few records at a time: SmolLM2's rank-16 adapter has about 5M weights
            exact_rows = np.concatenate([
                exact_row_gradients(t.model, tokenizer, records, rows[i:i + 8], exact,
                                    max_len=settings.max_len).astype(np.float32)
                for i in range(0, len(rows), 8)])
            restated = t.index.calibration.settings.restated_weight
            exact_scores = np.stack([answer_cosines(t.model, tokenizer, exact, exact_rows, q.prompt,
                                                    q.answer, restated) for q in queries])
            del exact_rows
            seconds["exact_gradients"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say(f"attributing {len(queries)} reference answers")
        reference = [signals(q.prompt, q.answer) for q in queries]
        texts = [f"{q.prompt} {q.answer}" for q in queries]
        methods = {"bm25": bm25_scores([records[r] for r in rows], texts),
                   "random": np.random.default_rng(args.seed).random((len(queries), len(rows))),
                   **{name: np.stack([s.scores[name] for s in reference])
                      for name in (f"combined:{mode}", "span", f"grad:{mode}")},
                   **({EXACT_HEAD: exact_scores} if exact_scores is not None else {})}
        tracing = {name: rank_metrics(s, queries, rows, row_owners).__dict__
                   for name, s in methods.items()}
        reference_paid = _payment([s.paid[mode] for s in reference], queries)

        say(f"generating and attributing the model's own answers to {len(queries)} questions")
        own = []
        for q, fact in zip(queries, facts):
            answer = greedy_answer(served, tokenizer, q.prompt, args.max_new_tokens)
            paid = signals(q.prompt, answer).paid[mode] if answer.strip() else None
            own.append((q, fact, answer, paid))
        own_split = {}
        for label, keep in (("naming the value", True), ("not naming it", False)):
            chosen = [(q, p) for q, f, a, p in own if p is not None and names_value(a, f.value) == keep]
            own_split[label] = (_payment([p for _, p in chosen], [q for q, _ in chosen])
                                if chosen else {"queries": 0})
        gradient_only = [(e.row, q) for q, _f, _a, p in own if p is not None
                         for e in p.examples if e.combined > 0 and e.span == 0]
        own_summary = {
            "queries": len(own), "empty": sum(p is None for *_x, p in own),
            "names_the_value": float(np.mean([names_value(a, f.value) for _q, f, a, _p in own])),
            "payment": own_split,
            "rows_paid_on_gradient_alone": len(gradient_only),
            "of_them_the_responsible_record": sum(rows[r] in q.records for r, q in gradient_only),
            "examples": [{"prompt": q.prompt, "answer": a, "value": f.value,
                          "names_the_value": names_value(a, f.value),
                          **(_receipt(p) if p else {"evidence_bps": 0, "records": []}),
                          "right_contributor": q.contributor,
                          "contributors": {c.contributor: c.bps for c in p.contributors} if p else {}}
                         for q, f, a, p in own],
        }

        say("contradicted answers and unrelated prompts")
        against = [signals(q.prompt, q.answer).paid[mode] for q in contradicted]
        fixed = unrelated_queries()
        nulls = [signals(p, a).paid[mode] for p, a in fixed]
        own_nulls = []
        for prompt, _a in unrelated_queries():
            answer = greedy_answer(served, tokenizer, prompt, 48)
            if answer.strip():
                borrows = sorted(n for n in entity_names
                                 if re.search(rf"\b{re.escape(n)}\b", answer, re.IGNORECASE))
                own_nulls.append((prompt, answer, borrows, signals(prompt, answer).paid[mode]))
        clean = [p for _pr, _a, b, p in own_nulls if not b]
        honesty = {
            "contradicted": {"queries": len(contradicted),
                             "bps_to_contradicted_record": bps_to_records(against, contradicted,
                                                                          records),
                             "bps_to_record_when_supported": bps_to_records(
                                 [s.paid[mode] for s in reference], queries, records),
                             "mean_evidence_bps": float(np.mean([r.evidence_bps for r in against])),
                             "paid": [{"answer": q.answer, "contradicted_record": q.records[0],
                                       **_receipt(r)}
                                      for q, r in zip(contradicted, against) if r.evidence_bps > 0]},
            "null": {"queries": len(nulls),
                     "null_false_payout_rate": float(np.mean([r.evidence_bps > 0 for r in nulls])),
                     "mean_evidence_bps": float(np.mean([r.evidence_bps for r in nulls])),
                     "paid": [{"prompt": p, "answer": a, **_receipt(r)}
                              for (p, a), r in zip(fixed, nulls) if r.evidence_bps > 0]},
            "own_null": {"answers": len(own_nulls), "borrowing": len(own_nulls) - len(clean),
                         "null_false_payout_rate": float(np.mean([p.evidence_bps > 0 for p in clean]))
                         if clean else 0.0,
                         "examples": [{"prompt": pr, "answer": a, "borrows": b, **_receipt(p),
                                       "contributors": {c.contributor: c.bps for c in p.contributors}}
                                      for pr, a, b, p in own_nulls]},
        }
        seconds["attribution"] = time.perf_counter() - t0

        lds_result = None
        if args.lds_subsets > 0:
            chosen = sorted(np.random.default_rng(args.seed).choice(
                len(queries), min(args.lds_queries, len(queries)), replace=False).tolist())
            scores = {name: s[chosen] for name, s in methods.items()}
            scores[f"combined:{mode} + gradient"] = np.stack(
                [reference[i].scores[f"combined:{mode} + gradient"] for i in chosen])
            truth = np.zeros((len(chosen), len(rows)))
            for k, i in enumerate(chosen):
                truth[k, np.isin(rows, queries[i].records)] = 1.0
            scores["responsible records (ground truth)"] = truth
            del attributor, t, served
            batch = lds_batch(tokenizer, queries, chosen)
            masks, losses = list(half_masks(args.seed, len(rows), args.lds_subsets)), []
            t0 = time.perf_counter()
            for j, keep in enumerate(masks):
                say(f"  LDS retrain {j + 1}/{args.lds_subsets} on {int(keep.sum())} records")
                losses.append(retrain_losses(base, records, rows, keep, settings,
                                             work / f"lds-{j}", batch))
            seconds["lds_retrains"] = time.perf_counter() - t0
            if args.work:  # what any other score can be measured against without retraining
                np.savez(work / "lds.npz", queries=np.array(chosen), masks=np.stack(masks),
                         losses=np.stack(losses), rows=np.array(rows),
                         **{f"scores:{name}": s for name, s in scores.items()})
            lds_result = {"subsets": args.lds_subsets, "queries": len(chosen),
                          "methods": {name: lds(s, np.stack(masks), np.stack(losses))
                                      for name, s in scores.items()}}

    seconds["total"] = time.perf_counter() - started
    n = len(records)
    tables = [ResultTable(
        f"Held-out planted facts ({n} records, {args.contributors} contributors, {args.model}) — "
        "reference answers to paraphrased questions: precision@1 / MRR",
        ["method", "contributor", "record"])]
    for name, m in tracing.items():
        tables[0].add_row(name, f"{m['contributor_p1']:.2f} / {m['contributor_mrr']:.2f}",
                          f"{m['record_p1']:.2f} / {m['record_mrr']:.2f}")
    paid = ResultTable("What is paid, mean bps of the contributor share",
                       ["answers", "right", "wrong", "data pool", "top paid is right", "paid anyone"])

    def paid_row(label, p):
        if p.get("queries"):
            paid.add_row(f"{label} ({p['queries']})", f"{p['mean_bps_right']:.0f}",
                         f"{p['mean_bps_wrong']:.0f}", f"{p['mean_bps_pool']:.0f}",
                         f"{p['top_paid_is_right']:.2f}", f"{p['paid_anyone']:.2f}")

    paid_row("reference answers", reference_paid)
    for label, p in own_split.items():
        paid_row(f"the model's own answers {label}", p)
    tables.append(paid)
    honest = ResultTable("Honesty", ["what", "value"])
    honest.add_row("model's own answers naming the planted value",
                   f"{own_summary['names_the_value']:.2f}")
    honest.add_row("rows paid on gradient evidence alone in own answers (responsible record)",
                   f"{own_summary['rows_paid_on_gradient_alone']} "
                   f"({own_summary['of_them_the_responsible_record']})")
    c = honesty["contradicted"]
    honest.add_row(f"bps to the record a contradicting answer contradicts ({c['queries']})",
                   f"{c['bps_to_contradicted_record']:.0f}")
    honest.add_row("bps to the same record for its own sentence", f"{c['bps_to_record_when_supported']:.0f}")
    honest.add_row(f"null_false_payout_rate ({honesty['null']['queries']} unrelated prompts' fixed answers)",
                   f"{honesty['null']['null_false_payout_rate']:.3f}")
    o = honesty["own_null"]
    honest.add_row(f"false payout rate of the model's own answers to them "
                   f"({o['answers'] - o['borrowing']} that borrow no invented name)",
                   f"{o['null_false_payout_rate']:.3f}")
    tables.append(honest)
    paid_nulls = ResultTable("The model's own answers to unrelated prompts that paid anyone",
                             ["prompt", "answer", "borrows", "evidence bps"])
    for e in o["examples"]:
        if e["evidence_bps"] > 0:
            paid_nulls.add_row(e["prompt"], e["answer"], ", ".join(e["borrows"]) or "nothing",
                               str(e["evidence_bps"]))
    tables.append(paid_nulls)
    wrong = ResultTable("The model's own answers that paid a wrong contributor",
                        ["question", "answer", "planted value", "bps wrong", "bps right"])
    for e in own_summary["examples"]:
        bad = sum(v for k, v in e["contributors"].items() if k != e["right_contributor"])
        if bad:
            wrong.add_row(e["prompt"], e["answer"], e["value"], str(bad),
                          str(e["contributors"].get(e["right_contributor"], 0)))
    tables.append(wrong)
    if lds_result:
        table = ResultTable(f"LDS over {lds_result['subsets']} retrains on random halves, "
                            f"{lds_result['queries']} queries", ["method", "LDS", "± s.e."])
        for name, v in sorted(lds_result["methods"].items(), key=lambda kv: -kv[1]["mean"]):
            table.add_row(name, f"{v['mean']:.3f}", f"{v['sem']:.3f}")
        tables.append(table)
    for table in tables:
        table.print()
    payload = {"model": args.model, "records": n, "contributors": args.contributors,
               "epochs": args.epochs, "train_settings": asdict(settings), "score_mode": mode, "tracing": tracing,
               "reference_payment": reference_paid, "own_answers": own_summary, **honesty,
               "null_false_payout_rate": honesty["null"]["null_false_payout_rate"],
               "lds": lds_result, "seconds": seconds}
    write_result("attribution_heldout", payload, tables, json_path=args.out, notes=[
        f"one torch thread; train {seconds['train']:.0f} s, index build "
        f"{seconds['index_build']:.0f} s, attribution {seconds['attribution']:.0f} s, total "
        f"{seconds['total']:.0f} s",
        "the Datanet is ModelFactory's planted facts (benchmarks/facts.py, "
        + ("report seed" if args.facts_seed == REPORT_SEED else f"facts seed {args.facts_seed}")
        + "); every "
        "attribution setting is the node's default, chosen on the evaluation's other generator"])
    return payload


if __name__ == "__main__":
    main()
