"""Which answer tokens the gradient should listen to: the node's content weights against weights by what fine-tuning taught.

Run:  python benchmarks/attribution_learned_tokens.py --model smollm2 --models-dir DIR --seeds 0-2
      python benchmarks/attribution_learned_tokens.py --seeds 0-2        (tiny model, quicker)
      ... --split tuning          (the split a setting is chosen on; the test split is the default)

An answer's gradient feature is the gradient of a weighted sum of its tokens' losses. The node
weighs a token 1 when it carries content and 0.2 when it restates the question or is punctuation
(`restatement.py`). Most of an answer's loss, though, sits on tokens the base model already
predicted as well or as badly before fine-tuning (a made-up name spelled in capitals): their
gradients say little about which training rows taught the answer. "Learned" weighs each token by
how much the fine-tuning raised its log-probability, max(0, log p_adapter - log p_base), one extra
forward pass with the adapter switched off. Per seed (the test split, the node's defaults
otherwise; `--split tuning` for the tuning split) this prints the gradient-alone precision@1 of the responsible contributor and record,
per question kind, for:

  content (node)     the node's content weights (the baseline)
  learned            the fine-tuning's gain per token
  content x learned  both
  per-token          the node's content weights on each token's unit gradient (index.per_token_query)

beside BM25 over question and answer on the same questions. Gradient alone: no span evidence, so
the figures show what the gradient would name where no text is shared (the receipts' paid
ranking puts span evidence first). Writes benchmarks/results/attribution_learned_tokens[-MODEL].json
and .md, with a -tuning suffix for the tuning split (`--out`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from attribution_eval_seeds import fine_tuned, mean_sem, over_seeds, seeds_of  # noqa: E402
from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

WEIGHTINGS = ("content (node)", "learned", "content x learned", "per-token")
KINDS = ("all", "paraphrase", "short", "indirect", "style")


def token_gain(model, example) -> list[float]:
    """max(0, log p_adapter - log p_base) of each answer token, scaled so the largest is 1."""
    import numpy as np

    from ledgerlm.attribution.features import answer_token_logprobs

    tuned = answer_token_logprobs(model, example)
    with model.disable_adapter():
        before = answer_token_logprobs(model, example)
    gain = np.clip(tuned - before, 0.0, None)
    top = float(gain.max())
    return [float(g) / top if top > 0 else 1.0 for g in gain]


def one_seed(args, seed: int, work: Path, say) -> dict:
    import numpy as np

    from ledgerlm.attribution.attribute import prepare_answer
    from ledgerlm.attribution.features import answer_feature
    from ledgerlm.evals.attribution.baselines import bm25_scores
    from ledgerlm.evals.attribution.harness import tracing_by_kind

    started = time.perf_counter()
    data, t = fine_tuned(args, seed, work, say, args.split)
    tokenizer, index = t.tokenizer, t.index
    rows_records = [e.record for e in index.examples]
    rows_contributors = [e.contributor for e in index.examples]
    restated = index.calibration.settings.restated_weight
    say(f"seed {seed}: scoring {len(data.queries)} questions four ways")
    scores: dict[str, list] = {w: [] for w in WEIGHTINGS}
    for q in data.queries:
        prepared = prepare_answer(tokenizer, q.prompt, q.answer, restated)
        content = list(prepared.weights[0])
        learned = token_gain(t.model, prepared.example)
        for name, weights, per_token in (
                ("content (node)", content, False), ("learned", learned, False),
                ("content x learned", [a * b for a, b in zip(content, learned)], False),
                ("per-token", content, True)):
            feature = answer_feature(t.model, index.projector, prepared.example, weights,
                                     per_token=per_token)
            scores[name].append(index.gradient_scores(feature, "cosine"))
    methods = {name: np.stack(s) for name, s in scores.items()}
    indexed = [data.records[r] for r in rows_records]
    methods["bm25"] = bm25_scores(indexed, [f"{q.prompt} {q.answer}" for q in data.queries])
    tracing = tracing_by_kind(methods, data.queries, rows_records, rows_contributors)
    return {"seed": seed, "records": len(data.records), "questions": len(data.queries),
            "tracing": tracing, "seconds": time.perf_counter() - started}


def tables(runs: list[dict], model: str, split: str) -> list[ResultTable]:
    methods = (*WEIGHTINGS, "bm25")
    out = []
    for level in ("contributor", "record"):
        table = ResultTable(
            f"{split.capitalize()} split, {model}: gradient-alone {level} precision@1 per question kind, by the "
            f"answer tokens' weights (BM25 over question and answer beside them)",
            ["seed", "weights", *KINDS])
        for run in runs:
            for m in methods:
                table.add_row(str(run["seed"]), m, *(
                    f"{run['tracing'][k][m][f'{level}_p1']:.2f}" for k in KINDS))
        if len(runs) > 1:
            for m in methods:
                table.add_row(f"mean of {len(runs)}", m, *(
                    "{:.2f} ± {:.2f}".format(*mean_sem(
                        [r["tracing"][k][m][f"{level}_p1"] for r in runs])) for k in KINDS))
        out.append(table)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-2", help="seeds to draw, e.g. 0-2 or 0,3")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is pulled (--model smollm2)")
    parser.add_argument("--entities", type=int, default=None,
                        help="people per split (default: 24 tiny, 8 smollm2)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--split", choices=("test", "tuning"), default="test")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.entities = args.entities or (8 if args.model == "smollm2" else 24)

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    seeds = seeds_of(args.seeds)
    runs = over_seeds(seeds, lambda seed, work, say: one_seed(args, seed, work, say))
    shown = tables(runs, args.model, args.split)
    for table in shown:
        table.print()
    payload = {"model": args.model, "split": args.split, "entities": args.entities, "epochs": args.epochs,
               "seeds": seeds, "weightings": list(WEIGHTINGS), "runs": runs,
               "seconds": time.perf_counter() - started}
    write_result("attribution_learned_tokens" + ("" if args.model == "tiny" else f"-{args.model}")
                 + ("" if args.split == "test" else f"-{args.split}"),
                 payload, shown, json_path=args.out, notes=[
                     f"one torch thread; total {payload['seconds']:.0f} s",
                     "gradient alone (cosine against the node's index rows); the index, the "
                     "calibration and the receipts are the node's defaults and are not changed"])
    return payload


if __name__ == "__main__":
    main()
