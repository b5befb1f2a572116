"""Benchmark of the attribution index's build cost against training time, on SmolLM2 or the tiny model.

Run:  python benchmarks/attribution_build_cost.py [--model smollm2|tiny] [--entities 6]
                                                 [--epochs 2] [--split test|tuning]
                                                 [--last-blocks 1,2,4] [--models-dir DIR]

Trains a LoRA adapter (the factory's default settings) on the test split's planted-facts Datanet
while `TrainingFeatures` collects the last epoch's gradient features, then builds the index from
them (calibration included), in wall and CPU seconds. The baseline, in the same run and on the
same trained model, is the index built by a separate pass over the final adapter (the node's
default). A second table times that build with its backward cut to the last K blocks and scores
every build's gradient ranking of the split's questions (precision@1, agreement with the whole
build). A third shows how steady the gradient bar is when only some null answers take a gradient
pass. Prints the tables and writes benchmarks/results/attribution_build_cost.json and .md.
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

from report import write_result  # noqa: E402  (benchmarks/ is the script's directory)
from rich.console import Console  # noqa: E402

from ledgerlm.attribution.features import DEFAULT_DIM  # noqa: E402
from ledgerlm.evals.attribution.facts import make_fact_tracing_set  # noqa: E402
from ledgerlm.evals.attribution.scale import index_build_cost  # noqa: E402
from ledgerlm.evals.table import ResultTable  # noqa: E402

console = Console(width=160)


def base_model(name: str, models_dir: Path | None, work: Path):
    from ledgerlm.factory import SMOLLM2_NAME, get_model, register_local, tiny_random_model

    if name == "smollm2":
        return get_model(models_dir or Path.home() / ".ledgerlm" / "models", SMOLLM2_NAME)
    texts = [f"{r['question']} {r['answer']}"
             for r in make_fact_tracing_set("tuning", 24, 1000).records]
    return register_local(work / "models", "tiny", tiny_random_model(work / "tiny", texts))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2")
    parser.add_argument("--entities", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("test", "tuning"), default="test",
                        help="the planted-facts split trained on and queried")
    parser.add_argument("--last-blocks", default="1,2,4",
                        help="comma-separated K: builds whose backward stops at the last K blocks")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable on a shared machine)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_build_cost.json)")
    args = parser.parse_args(argv)

    import torch

    from ledgerlm.factory import TrainConfig

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    facts = make_fact_tracing_set(args.split, args.entities, args.seed)
    records = facts.records
    last_blocks = tuple(int(k) for k in args.last_blocks.split(",") if k.strip())
    config = TrainConfig(epochs=args.epochs, eval_split=0.0, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="ledgerlm-build-cost-") as work:
        base = base_model(args.model, args.models_dir, Path(work))
        console.log(f"training {base.name} on {len(records)} records for {args.epochs} epoch(s), "
                    "collecting the last epoch's features")
        cost = index_build_cost(base, records, config, work, dim=args.dim, seed=args.seed,
                                queries=facts.queries, last_blocks=last_blocks)
    c = cost
    table = ResultTable(f"Index build against training: {c['base']}, {c['records']} records "
                        f"({args.split} split), "
                        f"{c['epochs']} epoch(s), default LoRA", ["what", "wall s", "CPU s"])
    table.rows += [
        ["training", f"{c['train_seconds']:.1f}", f"{c['train_cpu_seconds']:.1f}"],
        ["features collected inside the last epoch", f"{c['features_in_training_seconds']:.1f}",
         f"{c['features_in_training_cpu_seconds']:.1f}"],
        ["index rows and span index after training", f"{c['rows_seconds']:.1f}",
         f"{c['rows_cpu_seconds']:.1f}"],
        [f"calibration ({c['gradient_null_answers']} of {c['null_answers']} null answers "
         "take a gradient pass)", f"{c['calibration_seconds']:.1f}",
         f"{c['calibration_cpu_seconds']:.1f}"],
        ["index / training (collection + rows + calibration)", f"{c['index_over_train']:.2f}",
         f"{c['index_over_train_cpu']:.2f}"],
        ["baseline: build by a separate pass over the final adapter",
         f"{c['separate_pass_seconds']:.1f}", f"{c['separate_pass_cpu_seconds']:.1f}"],
        ["baseline: separate-pass build / training", f"{c['separate_over_train']:.2f}",
         f"{c['separate_over_train_cpu']:.2f}"],
    ]
    blocks = ResultTable(
        f"Separate-pass build (calibration included) by the last blocks its backward reaches; "
        f"grad:cosine ranking of the {c['queries']} {args.split}-split questions' answers",
        ["backward reaches", "CPU s", "build / training (CPU)", "record P@1", "contributor P@1",
         "Spearman with every block", "gradient bar (cosine)"])
    for k, b in c["by_last_blocks"].items():
        blocks.rows.append([
            "every block (node default)" if k == 0 else f"last {k} block(s)",
            f"{b['cpu_seconds']:.1f}", f"{b['over_train_cpu']:.2f}",
            f"{b.get('record_p1', float('nan')):.2f}", f"{b.get('contributor_p1', float('nan')):.2f}",
            f"{b.get('spearman_with_whole', float('nan')):.3f}", f"{b['gradient_bar_cosine']:.4f}"])
    stability = ResultTable(
        f"Gradient bar from {c['gradient_null_answers']} null answers against all "
        f"{c['null_answers']}: false payouts of the evaluation's {c['evaluation_null_prompts']} "
        "other null prompts (gradient score above the bar)",
        ["score mode", "bar", "false payouts", f"bar ({c['null_answers']})",
         f"false payouts ({c['null_answers']})"])
    for mode, s in c["bar_stability"].items():
        stability.rows.append([mode, f"{s['bar']:.4f}", f"{s['false_payout_rate']:.3f}",
                               f"{s['bar_all_null_answers']:.4f}",
                               f"{s['false_payout_rate_all_null_answers']:.3f}"])
    fewer = ResultTable(
        "Gradient bar from the first n null answers only (the same answers' best scores): false "
        f"payouts of the evaluation's {c['evaluation_null_prompts']} other null prompts",
        ["score mode", "null answers", "bar", "false payouts"])
    for mode, s in c["bar_stability"].items():
        for n, f in s["fewer"].items():
            fewer.rows.append([mode, str(n), f"{f['bar']:.4f}", f"{f['false_payout_rate']:.3f}"])
    fewer.rows += [[mode, str(c["gradient_null_answers"]), f"{s['bar']:.4f}",
                    f"{s['false_payout_rate']:.3f}"] for mode, s in c["bar_stability"].items()]
    for t in (table, blocks, stability, fewer):
        t.print()
    write_result("attribution_build_cost", cost, [table, blocks, stability, fewer],
                 json_path=args.out,
                 notes=[f"split: {args.split}; threads: torch {args.threads}; total "
                        f"{time.perf_counter() - started:.0f} s"])
    return cost


if __name__ == "__main__":
    main()
