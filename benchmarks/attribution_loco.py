"""Who taught the model each answer, by retraining without each contributor, against the planted-facts labels and the receipts.

Run:  python benchmarks/attribution_loco.py [--split test] [--seeds 0-2]
      python benchmarks/attribution_loco.py --model smollm2 --models-dir DIR --entities 8 --seeds 0 --work DIR

The planted-facts generator labels each question with the contributor it holds responsible: the
person's record for a fact, the stylist for a fact answered in the stylist's capitals and " !!".
Those labels are an assumption about what the model learned. This benchmark measures it: for each
draw it fine-tunes on the whole Datanet (node defaults, as `attribution_eval_seeds.py` does) and
again once without each contributor's records (leave one contributor out); the contributor whose
absence lowers the answer's log-likelihood most taught the model that answer. Two more
fine-tunes on the whole Datanet with other training seeds give the retraining noise (the spread
of the answer's log-likelihood over the three): retraining decides a question only when the
largest drop beats the runner-up's by more than it. Per kind of question it reports how often
the generator's label is the contributor retraining finds, and the receipts' contributor
precision@1 (paid evidence, then the listing order) and BM25's against either. Writes benchmarks/results/attribution_loco[-MODEL].json
and .md (`--out`). `--work DIR` keeps each retrain's log-likelihoods, so a rerun skips them;
`--tables FILE` prints a written JSON's tables again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from attribution_eval_seeds import over_seeds, seeds_of  # noqa: E402
from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

MODE = "cosine"
PAID = f"combined:{MODE}"


def answer_logps(model, tokenizer, questions) -> list[float]:
    """Sum of the answer tokens' log-probabilities under `model`, per (prompt, answer)."""
    from ledgerlm.attribution.features import answer_example, answer_token_logprobs

    model.eval()
    return [float(answer_token_logprobs(model, answer_example(tokenizer, prompt, answer)).sum())
            for prompt, answer in questions]


def retrained_logps(config, base, tokenizer, records, questions, out: Path, say) -> list[float]:
    """Fine-tune on `records` (no index) and score the questions; cached as out/logps.json."""
    from ledgerlm.evals.attribution.harness import _train_config
    from ledgerlm.factory import train

    cached = out / "logps.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    say(f"  fine-tuning on {len(records)} records -> {out.name}")
    model = train(base, records, _train_config(config), out / "model").model
    logps = answer_logps(model, tokenizer, questions)
    out.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(logps))
    return logps


def one_seed(args, seed: int, work: Path, say) -> dict:
    import numpy as np

    from ledgerlm.evals.attribution.baselines import bm25_scores
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import EvalConfig, _base_model, _fine_tune, query_signals
    from ledgerlm.factory import load_tokenizer

    started = time.perf_counter()
    keep = Path(args.work) / f"{args.split}-{seed}" if args.work else work
    config = EvalConfig(model=args.model, models_dir=args.models_dir, entities=args.entities,
                        epochs=args.epochs, seed=seed)
    base = _base_model(config, work, say)
    tokenizer = load_tokenizer(base)
    data = make_fact_tracing_set(args.split, config.entities, seed)
    questions = [(q.prompt, q.answer) for q in data.queries]
    roles = sorted(set(data.roles.values()))
    say(f"{args.split} seed {seed}: {len(data.records)} records, {len(questions)} questions")

    whole = keep / "whole.json"
    if whole.is_file():
        full, receipt_top, bm25_top = json.loads(whole.read_text())
    else:
        t = _fine_tune(config, base, tokenizer, data.records, work / "model")
        full = answer_logps(t.model, tokenizer, questions)
        signals = [query_signals(t, p, a, exact=False) for p, a in questions]
        rows_contributors = [e.contributor for e in t.index.examples]
        indexed = [data.records[e.record] for e in t.index.examples]
        bm25 = bm25_scores(indexed, [f"{p} {a}" for p, a in questions])
        receipt_top = [data.roles[rows_contributors[int(np.argmax(s.scores[PAID]))]]
                       for s in signals]
        bm25_top = [data.roles[rows_contributors[int(np.argmax(b))]] for b in bm25]
        keep.mkdir(parents=True, exist_ok=True)
        whole.write_text(json.dumps([full, receipt_top, bm25_top]))

    without = {}
    for role in roles:
        kept = [r for r in data.records if data.roles[r["_contributor"]] != role]
        without[role] = retrained_logps(config, base, tokenizer, kept, questions,
                                        keep / f"without-{role}", say)
    others = [retrained_logps(replace(config, seed=seed + 1000 * k), base, tokenizer,
                              data.records, questions,
                              keep / ("another-seed" if k == 1 else f"another-seed-{k}"), say)
              for k in range(1, args.noise_seeds + 1)]
    per_question = []
    for i, q in enumerate(data.queries):
        drops = {role: full[i] - without[role][i] for role in roles}
        taught = max(drops, key=drops.get)
        per_question.append({
            "kind": q.kind, "prompt": q.prompt, "answer": q.answer,
            "label": data.roles[q.contributor], "retraining": taught,
            "receipt": receipt_top[i], "bm25": bm25_top[i],
            "logp": full[i], "drops": drops,
            # the spread of the answer's log-likelihood over fine-tunes of the whole Datanet
            # that differ only in training seed
            "noise": max(full[i], *(o[i] for o in others)) - min(full[i], *(o[i] for o in others)),
        })
    return {"seed": seed, "split": args.split, "questions": per_question,
            "seconds": time.perf_counter() - started}


def decisive(q: dict) -> bool:
    """Retraining names one contributor: its drop beats the runner-up's by more than the noise."""
    first, second = sorted(q["drops"].values(), reverse=True)[:2]
    return first - second > q["noise"]


def tables(runs: list[dict], model: str, split: str) -> list[ResultTable]:
    import numpy as np

    questions = [q for run in runs for q in run["questions"]]
    order = ("paraphrase", "short", "indirect", "style")
    kinds = sorted({q["kind"] for q in questions}, key=order.index)
    table = ResultTable(
        f"{split.capitalize()} split, {model}, {len(runs)} draw(s) — the contributor whose "
        f"absence lowers the answer's log-likelihood most, against the planted label, the receipts "
        f"and BM25 (agreement with retraining on the questions it decides)",
        ["questions", "n", "retraining decides", "label = retraining", "receipt = label",
         "receipt = retraining", "BM25 = retraining", "answer log-likelihood (median)",
         "top drop (median)", "noise (median)"])
    for kind in [*kinds, "all"]:
        qs = [q for q in questions if kind in ("all", q["kind"])]
        decided = [q for q in qs if decisive(q)]

        def rate(a: str, b: str, among: list[dict]) -> str:
            return f"{np.mean([q[a] == q[b] for q in among]):.2f}" if among else "-"

        table.add_row(kind, str(len(qs)), f"{len(decided)} of {len(qs)}",
                      rate("label", "retraining", decided), rate("receipt", "label", qs),
                      rate("receipt", "retraining", decided), rate("bm25", "retraining", decided),
                      f"{np.median([q['logp'] for q in qs]):.1f}",
                      f"{np.median([max(q['drops'].values()) for q in qs]):.1f}",
                      f"{np.median([q['noise'] for q in qs]):.1f}")
    disagreements = ResultTable(
        "Questions retraining decides against their planted label (the three largest drops of the "
        "answer's log-likelihood, in nats, without each contributor)",
        ["seed", "kind", "answer", "label", "retraining", "receipt", "drops", "noise"])
    for run in runs:
        for q in run["questions"]:
            if q["label"] != q["retraining"] and decisive(q):
                drops = ", ".join(f"{r} {d:.1f}" for r, d in
                                  sorted(q["drops"].items(), key=lambda x: -x[1])[:3])
                disagreements.add_row(str(run["seed"]), q["kind"], q["answer"], q["label"],
                                      q["retraining"], q["receipt"], drops, f"{q['noise']:.1f}")
    return [table, disagreements]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("tuning", "test"), default="test")
    parser.add_argument("--seeds", default="0-2", help="seeds to draw, e.g. 0-2 or 0,3,5")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is pulled (--model smollm2)")
    parser.add_argument("--entities", type=int, default=24, help="people per split")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--noise-seeds", type=int, default=2,
                        help="fine-tunes of the whole Datanet with other training seeds (the noise)")
    parser.add_argument("--work", default=None, help="keep the retrains' log-likelihoods here")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results)")
    parser.add_argument("--tables", type=Path, default=None,
                        help="print the tables of a JSON this benchmark wrote, and stop")
    args = parser.parse_args(argv)
    if args.tables:
        payload = json.loads(args.tables.read_text())
        for table in tables(payload["runs"], payload["model"], payload["split"]):
            table.print()
        return payload

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    seeds = seeds_of(args.seeds)
    runs = over_seeds(seeds, lambda seed, work, say: one_seed(args, seed, work, say))
    shown = tables(runs, args.model, args.split)
    for table in shown:
        table.print()
    payload = {"model": args.model, "split": args.split, "entities": args.entities,
               "epochs": args.epochs, "seeds": seeds, "runs": runs,
               "seconds": time.perf_counter() - started}
    name = "attribution_loco" + ("" if args.model == "tiny" else f"-{args.model}")
    write_result(name + ("" if args.split == "test" else f"-{args.split}"), payload, shown,
                 json_path=args.out, notes=[
                     f"one torch thread; total {payload['seconds']:.0f} s"
                     + (f" (fine-tunes already kept in {args.work} were read, not run again)"
                        if args.work else ""),
                     "each draw: one fine-tune on the whole Datanet (node defaults, receipts from "
                     "its index), one without each contributor, "
                     f"{args.noise_seeds} more on the whole Datanet with other training seeds "
                     "(the noise: the spread of an answer's log-likelihood over the "
                     f"{args.noise_seeds + 1} fine-tunes of the whole Datanet)"])
    return payload


if __name__ == "__main__":
    main()
