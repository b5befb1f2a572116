"""How the gradient ranks contributors for answers no span ties to a record (the planted-facts "style" questions), by the order the receipt uses and by null-calibrated alternatives.

Run:  python benchmarks/attribution_style_ranking.py [--seeds 0,1] [--entities 8] [--epochs 10]
                                                     [--models-dir DIR]

On SmolLM2's tuning split only (the test split is not looked at), one fine-tune per seed (other
people, towns and contributors each seed; the evaluation's settings: rank 8, 10 epochs). Each
question's answer is scored against every indexed row (grad:cosine, the node's default), and
contributors are ranked five ways:

  max score (baseline)  the order a receipt lists rows without evidence in: a contributor's best row
  null-centred max      each row's score less its mean over the 64 shipped null answers
  null z max            the same, divided by the null answers' spread at that row
  summed above the null the sum over a contributor's rows of what their scores exceed the row's
                        99th null percentile by (a group's first-order influence, Koh et al. 2019)
  summed positive       the sum of a contributor's positive scores

and, as the receipt does, contributors paid by evidence first ("then"). Contributor precision@1
and MRR per question kind. Prints the tables and writes
benchmarks/results/attribution_style_ranking.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from report import write_result  # noqa: E402  (benchmarks/ is the script's directory)

from ledgerlm.evals.table import ResultTable  # noqa: E402

ORDERS = ("max score (baseline)", "null-centred max", "null z max", "summed above the null",
          "summed positive")


def contributor_scores(scores: np.ndarray, owners: np.ndarray, null: np.ndarray) -> dict:
    """Order name -> contributor -> score, from one answer's row scores and the null answers'
    (null answers, rows) scores."""
    mean, spread = null.mean(0), null.std(0) + 1e-9
    high = np.quantile(null, 0.99, axis=0)
    per_row = {ORDERS[0]: scores, ORDERS[1]: scores - mean, ORDERS[2]: (scores - mean) / spread}
    out = {name: {c: float(v[owners == c].max()) for c in set(owners)}
           for name, v in per_row.items()}
    out[ORDERS[3]] = {c: float(np.clip(scores - high, 0, None)[owners == c].sum())
                      for c in set(owners)}
    out[ORDERS[4]] = {c: float(np.clip(scores, 0, None)[owners == c].sum()) for c in set(owners)}
    return out


def rank_of(truth: str, scores: dict, paid: dict) -> int:
    """1-based rank of `truth`: contributors paid by evidence first (by what they are paid),
    then the rest by `scores`; ties go against the truth."""
    key = {c: (paid.get(c, 0.0) > 0, paid.get(c, 0.0), s) for c, s in scores.items()}
    return 1 + sum(k > key[truth] or (k == key[truth] and c != truth) for c, k in key.items()
                   if c != truth)


def style_per_seed(title: str, orders, seeds: list[int], found: list[dict]) -> ResultTable:
    """The style questions' contributor precision@1 per seed and order, contributors paid by
    evidence first (each question's "then" ranks)."""
    table = ResultTable(title, ["order", *[f"seed {s}" for s in seeds]])
    for order in orders:
        table.add_row(order, *[
            f"{np.mean([f['then'][order] == 1 for f in found if f['seed'] == s and f['kind'] == 'style']):.2f}"
            for s in seeds])
    return table


def run_seed(base, tokenizer, config, seed: int, entities: int, work: Path) -> list[dict]:
    from ledgerlm.attribution.attribute import (
        AttributionSettings,
        answer_feature,
        gather_evidence,
        prepare_answer,
    )
    from ledgerlm.attribution.calibration import CalibrationSettings, null_answers, null_features
    from ledgerlm.attribution.index import build_index
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import _train_config
    from ledgerlm.factory import train

    data = make_fact_tracing_set("tuning", entities, seed)
    out = work / f"tuning-{seed}"
    model = train(base, data.records, _train_config(config), out).model
    index = build_index(out, data.records, base=base, loaded=(model, tokenizer), save=False,
                        calibration=CalibrationSettings())
    nulls = null_answers(index, tokenizer, index.calibration.settings)
    null = index.gradient_scores(null_features(index, model, tokenizer, nulls,
                                               list(range(len(nulls.examples)))), "cosine")
    owners = np.array([e.contributor for e in index.examples])
    found = []
    for q in data.queries:
        prepared = prepare_answer(tokenizer, q.prompt, q.answer,
                                  index.calibration.settings.restated_weight)
        feature = answer_feature(model, index.projector, prepared.example, prepared.weights[0])
        evidence = gather_evidence(index, feature, prepared, AttributionSettings())
        paid: dict = {}
        for row, value in zip(evidence.rows, evidence.combined):
            paid[owners[row]] = paid.get(owners[row], 0.0) + float(value)
        by_order = contributor_scores(index.gradient_scores(feature, "cosine"), owners, null)
        found.append({"seed": seed, "kind": q.kind,
                      "gradient": {n: rank_of(q.contributor, s, {}) for n, s in by_order.items()},
                      "then": {n: rank_of(q.contributor, s, paid) for n, s in by_order.items()}})
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1", help="comma-separated tuning-split seeds")
    parser.add_argument("--entities", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from ledgerlm.evals.attribution.facts import QUERY_KINDS
    from ledgerlm.evals.attribution.harness import EvalConfig, _base_model
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    config = EvalConfig(model="smollm2", entities=args.entities, epochs=args.epochs,
                        models_dir=str(args.models_dir) if args.models_dir else None)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    found: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ledgerlm-style-") as work:
        base = _base_model(config, Path(work), print)
        tokenizer = load_tokenizer(base)
        for seed in seeds:
            print(f"tuning split, seed {seed}: fine-tuning {base.name}")
            found += run_seed(base, tokenizer, config, seed, args.entities, Path(work))
    tables, summary = [], {}
    for ranking, label in (("gradient", "gradient order only"),
                           ("then", "contributors paid by evidence first, then the order")):
        table = ResultTable(f"Tuning split, seeds {args.seeds}: contributor precision@1 / MRR, "
                            f"{label}", ["order", "all", *QUERY_KINDS])
        summary[ranking] = {}
        for order in ORDERS:
            cells = []
            for kind in ("all", *QUERY_KINDS):
                ranks = [f[ranking][order] for f in found if kind in ("all", f["kind"])]
                p1, mrr = float(np.mean([r == 1 for r in ranks])), float(np.mean([1 / r for r in ranks]))
                summary[ranking].setdefault(order, {})[kind] = {"p1": p1, "mrr": mrr,
                                                                "n": len(ranks)}
                cells.append(f"{p1:.2f} / {mrr:.2f}")
            table.add_row(order, *cells)
        tables.append(table)
    tables.append(style_per_seed("Style questions' contributor precision@1 per seed, paid first, "
                                 "then the order", ORDERS, seeds, found))
    for t in tables:
        t.print()
    payload = {"seeds": seeds, "entities": args.entities, "epochs": args.epochs,
               "summary": summary, "questions": found}
    write_result("attribution_style_ranking", payload, tables,
                 notes=[f"SmolLM2, tuning split only; one torch thread; total "
                        f"{time.perf_counter() - started:.0f} s"])
    return payload


if __name__ == "__main__":
    main()
