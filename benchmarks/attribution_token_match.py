"""How the receipt should list rows without evidence: in the answer's summed-gradient order, or by each contributor's token match (each answer token scored alone).

Run:  python benchmarks/attribution_token_match.py [--seeds 0-5] [--entities 8] [--epochs 10]
                                                   [--models-dir DIR] [--work DIR]

On SmolLM2's tuning split only (the test split is not looked at: `benchmarks/attribution.py`
reports it), one fine-tune per seed with the node's defaults (the evaluation's settings: rank 8,
10 epochs; `--work DIR` keeps them, and a later run with the same DIR reuses them). Every
question's answer is attributed as a node attributes it (float64 model, the node's index and
evidence); each answer token's own gradient (the gradient of its loss alone) is scored against
every row, and contributors are ranked:

  gradient (rule 18, baseline)  a contributor's best row against the answer's summed gradient
  token match (rule 19)         per token, a contributor's best row; the mean over tokens,
                                weighed by the node's content weights (`attribute.token_match`)
  token match, learned          the same, each token weighed by what fine-tuning taught it,
                                max(0, log p_adapter - log p_base) (one pass with the adapter off)
  token match, both             content weight x what fine-tuning taught
  token votes                   each token's best row's contributor gets the token's content weight
  token votes, learned          ... gets what fine-tuning taught the token

Contributors paid by evidence come first in every order (as on a receipt), so the orders differ
only where evidence leaves the question (the receipt's own tier between the two, rows holding a
rare span of the answer in the gradient's order, is not modelled: it is the same for every
order): the style questions (the stylist's capitals and " !!"
applied to another contributor's fact), which no span ties to a record. Contributor precision@1
per question kind, gradient alone and paid first, and the time a node spends per answer on the
summed gradient and on the token gradients. Prints the tables and writes
benchmarks/results/attribution_token_match.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from attribution_eval_seeds import seeds_of  # noqa: E402  (benchmarks/ is the script's directory)
from attribution_style_ranking import style_per_seed  # noqa: E402
from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

ORDERS = ("gradient (rule 18, baseline)", "token match (rule 19)", "token match, learned",
          "token match, both", "token votes", "token votes, learned")
KINDS = ("all", "paraphrase", "short", "indirect", "style")


def fine_tuned(base, tokenizer, config, seed: int, entities: int, work: Path):
    """Seed `seed`'s tuning split trained and indexed with the node's defaults (reused from `work`)."""
    from ledgerlm.attribution.attribute import load_attributor
    from ledgerlm.attribution.calibration import CalibrationSettings
    from ledgerlm.attribution.index import build_index
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import _train_config
    from ledgerlm.factory import train

    data = make_fact_tracing_set("tuning", entities, seed)
    out = work / f"tuning-{seed}"
    if not (out / "done").exists():
        model = train(base, data.records, _train_config(config), out).model
        build_index(out, data.records, base=base, loaded=(model, tokenizer), save=True,
                    calibration=CalibrationSettings())
        (out / "done").write_text("indexed\n")
    return data, load_attributor(out, base=base)


def learned(model, example) -> np.ndarray:
    """What fine-tuning taught each answer token: max(0, log p_adapter - log p_base)."""
    from ledgerlm.attribution.features import answer_token_logprobs

    tuned = answer_token_logprobs(model, example)
    with model.disable_adapter():
        plain = answer_token_logprobs(model, example)
    return np.clip(tuned - plain, 0.0, None)


def orders(index, feature, grads, weights, gains, mode) -> dict[str, np.ndarray]:
    """Order name -> one score per contributor code."""
    from ledgerlm.attribution.attribute import match_scores

    owners = index.owner_codes()
    n = int(owners.max()) + 1
    whole = index.gradient_scores(feature, mode)
    best_row = np.full(n, -np.inf)
    np.maximum.at(best_row, owners, whole)
    per_token = index.gradient_scores(grads, mode)
    best = np.full((len(per_token), n), -np.inf)
    for t, row_scores in enumerate(per_token):
        np.maximum.at(best[t], owners, row_scores)
    content = np.asarray(weights[:len(best)], dtype=np.float64)
    gains = gains[:len(best)]

    def mean(w):
        return (w[:, None] * best).sum(0) / (w.sum() or 1.0)

    def votes(w):
        v = np.zeros(n)
        np.add.at(v, best.argmax(1), w)
        return v

    return {ORDERS[0]: best_row, ORDERS[1]: match_scores(index, grads, list(weights), mode),
            ORDERS[2]: mean(gains), ORDERS[3]: mean(content * gains),
            ORDERS[4]: votes(content), ORDERS[5]: votes(gains)}


def rank_of(truth: int, scores: np.ndarray, paid: dict) -> int:
    """1-based rank of contributor code `truth`: paid contributors first (by what they are
    paid), then the rest by `scores`; ties go against the truth."""
    key = [(paid.get(c, 0) > 0, paid.get(c, 0), float(s)) for c, s in enumerate(scores)]
    return 1 + sum(k > key[truth] or (k == key[truth] and c != truth)
                   for c, k in enumerate(key) if c != truth)


def run_seed(base, tokenizer, config, seed: int, entities: int, work: Path) -> list[dict]:
    from ledgerlm.attribution.attribute import (
        AttributionSettings,
        gather_evidence,
        prepare_answer,
        result_from_evidence,
    )
    from ledgerlm.attribution.features import answer_feature, answer_token_features

    data, node = fine_tuned(base, tokenizer, config, seed, entities, work)
    index, model = node.index, node.model
    settings = AttributionSettings()
    mode = index.config.score_mode
    code = {e.contributor: int(c) for e, c in zip(index.examples, index.owner_codes())}
    found = []
    for q in data.queries:
        query = prepare_answer(node.tokenizer, q.prompt, q.answer,
                               index.calibration.settings.restated_weight)
        t0 = time.perf_counter()
        feature = answer_feature(model, index.projector, query.example, query.weights[0])
        t1 = time.perf_counter()
        grads = answer_token_features(model, index.projector, query.example,
                                      settings.match_tokens)
        t2 = time.perf_counter()
        result = result_from_evidence(index, gather_evidence(index, feature, query, settings),
                                      settings)
        paid = {code[c.contributor]: c.bps for c in result.contributors}
        by_order = orders(index, feature, grads, query.weights[0],
                          learned(model, query.example), mode)
        truth = code[q.contributor]
        found.append({"seed": seed, "kind": q.kind, "tokens": len(grads),
                      "feature_s": t1 - t0, "tokens_s": t2 - t1,
                      "gradient": {n: rank_of(truth, s, {}) for n, s in by_order.items()},
                      "then": {n: rank_of(truth, s, paid) for n, s in by_order.items()}})
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-5", help="tuning-split seeds: 0-5 or 0,2,4")
    parser.add_argument("--entities", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the fine-tunes here (a later run reuses them)")
    args = parser.parse_args(argv)

    import torch

    from ledgerlm.evals.attribution.harness import EvalConfig, _base_model
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    config = EvalConfig(model="smollm2", entities=args.entities, epochs=args.epochs,
                        models_dir=str(args.models_dir) if args.models_dir else None)
    seeds = seeds_of(args.seeds)
    found: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ledgerlm-token-match-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        base = _base_model(config, work, print)
        tokenizer = load_tokenizer(base)
        for seed in seeds:
            print(f"tuning split, seed {seed}")
            found += run_seed(base, tokenizer, replace(config, seed=0), seed, args.entities, work)
    tables, summary = [], {}
    for ranking, label in (("gradient", "the order alone"),
                           ("then", "contributors paid by evidence first, then the order")):
        table = ResultTable(f"Tuning split, seeds {args.seeds}: contributor precision@1, {label}",
                            ["order", *KINDS])
        summary[ranking] = {}
        for order in ORDERS:
            cells = []
            for kind in KINDS:
                hits = [f[ranking][order] == 1 for f in found if kind in ("all", f["kind"])]
                summary[ranking].setdefault(order, {})[kind] = float(np.mean(hits))
                cells.append(f"{np.mean(hits):.2f}")
            table.add_row(order, *cells)
        tables.append(table)
    tables.append(style_per_seed("Style questions' contributor precision@1 per seed, paid first",
                                 ORDERS, seeds, found))
    cost = ResultTable("Per answer on this machine (float64 model, one thread; median)",
                       ["pass", "seconds", "answer tokens"])
    cost.add_row("the answer's summed gradient (every receipt)",
                 f"{np.median([f['feature_s'] for f in found]):.2f}",
                 f"{np.median([f['tokens'] for f in found]):.0f}")
    cost.add_row("its tokens' gradients (the token match)",
                 f"{np.median([f['tokens_s'] for f in found]):.2f}", "")
    tables.append(cost)
    for t in tables:
        t.print()
    payload = {"seeds": seeds, "entities": args.entities, "epochs": args.epochs,
               "summary": summary, "questions": found}
    write_result("attribution_token_match", payload, tables,
                 notes=[f"SmolLM2, tuning split only; one torch thread; total "
                        f"{time.perf_counter() - started:.0f} s"])
    return payload


if __name__ == "__main__":
    main()
