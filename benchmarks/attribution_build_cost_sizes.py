"""Benchmark of the attribution index's build cost against training at several Datanet sizes, with the calibration rule before as the baseline.

Run:  python benchmarks/attribution_build_cost_sizes.py [--model smollm2|tiny] [--records 6,12,35]
                                                       [--epochs 10] [--split tuning|test]
                                                       [--models-dir DIR] [--dim 8192]
                                                       [--baseline-dim 2048]

Per size, trains a LoRA adapter (factory defaults, 10 epochs) on the first N records of the
split's planted-facts Datanet and times the node's index build (a pass over the final adapter,
calibration included) with the calibration rule — how many null answers take a gradient pass
follows the tokens training ran, none below the floor of 40 — and, in the same run on the same
model, with the rule before (the floor's 40 where the rule now grades none),
and with the wide side of every LoRA weight projected by a dense Gaussian matrix instead of a
count sketch, at the same width and at `--baseline-dim` (the index's projection before). Then
the build's parts alone, and what bars from fewer null answers do: false payouts of the evaluation's 40 unrelated prompts and what the split's questions are paid (grad
mode cosine, the node's default). Prints the tables and writes
benchmarks/results/attribution_build_cost_sizes.json and .md.
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

from attribution_build_cost import base_model  # noqa: E402  (benchmarks/ is the script's directory)
from report import write_result  # noqa: E402
from rich.console import Console  # noqa: E402

from ledgerlm.attribution.features import DEFAULT_DIM  # noqa: E402
from ledgerlm.evals.attribution.build_cost import NONE, OLD_DIM, build_cost_at_size  # noqa: E402
from ledgerlm.evals.attribution.facts import make_fact_tracing_set  # noqa: E402
from ledgerlm.evals.table import ResultTable  # noqa: E402

console = Console(width=160)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2")
    parser.add_argument("--records", default="6,12,35",
                        help="comma-separated Datanet sizes: the first N records of the split")
    parser.add_argument("--entities", type=int, default=6,
                        help="entities of the planted-facts set the records are taken from")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM, help="the index's width")
    parser.add_argument("--baseline-dim", type=int, default=OLD_DIM,
                        help="width of the Gaussian-projected baseline build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("test", "tuning"), default="tuning")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable on a shared machine)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_build_cost_sizes.json)")
    args = parser.parse_args(argv)

    import torch

    from ledgerlm.factory import TrainConfig

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    facts = make_fact_tracing_set(args.split, args.entities, args.seed)
    sizes = [int(n) for n in args.records.split(",") if n.strip()]
    too_many = [n for n in sizes if not 0 < n <= len(facts.records)]
    if too_many:
        parser.error(f"--records: the {args.split} split has {len(facts.records)} records "
                     f"({args.entities} entities), not {too_many}")
    config = TrainConfig(epochs=args.epochs, eval_split=0.0, seed=args.seed)
    by_size = []
    with tempfile.TemporaryDirectory(prefix="ledgerlm-build-sizes-") as work:
        base = base_model(args.model, args.models_dir, Path(work))
        for n in sizes:
            records = facts.records[:n]
            queries = [q for q in facts.queries if all(r < n for r in q.records)]
            console.log(f"{base.name}: {n} records, {args.epochs} epochs, {len(queries)} questions")
            by_size.append(build_cost_at_size(base, records, queries, config, work, dim=args.dim,
                                              seed=args.seed, baseline_dim=args.baseline_dim))
    cost = ResultTable(
        f"Node index build (pass over the final adapter, calibration included) against training: "
        f"{base.name}, {args.epochs} epochs, {args.split} split, CPU s (faster of two builds); "
        f"the node's build is {args.dim} wide with count-sketched wide sides",
        ["records", "training tokens", "training", "build before (floor of 40)", "before / training",
         "null answers (rule)", "build (rule)", "build / training",
         f"Gaussian wide sides, {args.dim} wide / training",
         f"Gaussian wide sides, {args.baseline_dim} wide (before) / training"])
    for s in by_size:
        train_cpu = s["train_cpu_seconds"]
        cost.add_row(s["records"], s["tokens_seen"], f"{train_cpu:.1f}",
                     f"{s['before_build_cpu_seconds']:.1f}", f"{s['before_build_over_train']:.2f}",
                     s["gradient_null_answers"], f"{s['build_cpu_seconds']:.1f}",
                     f"{s['build_over_train']:.2f}",
                     f"{s['gaussian_build_cpu_seconds']:.1f} / {train_cpu:.1f} = "
                     f"{s['gaussian_build_cpu_seconds'] / train_cpu:.2f}",
                     f"{s['gaussian_baseline_build_cpu_seconds']:.1f} / {train_cpu:.1f} = "
                     f"{s['gaussian_baseline_build_cpu_seconds'] / train_cpu:.2f}")
    parts = ResultTable(
        "The build's parts, each timed alone (CPU s; model load is not part of a node's build, "
        "which uses the model training left in memory)",
        ["records", "rows (pass, projector, span index)", "of which projector set-up",
         "of which vocabulary token classes", "calibration (rule)", "model load from disk"])
    for s in by_size:
        p = s["parts"]
        parts.add_row(s["records"], f"{p['rows_cpu_seconds']:.1f}",
                      f"{p['projector_cpu_seconds']:.1f}", f"{p['token_classes_cpu_seconds']:.2f}",
                      f"{p['calibration_cpu_seconds']:.1f}", f"{p['model_load_cpu_seconds']:.1f}")
    paid = ResultTable(
        "Bars from subsets of the 64 null answers (first n: the old order; spread n: the rule's): "
        "the evaluation's 40 unrelated prompts (gradient score above the bar; paid anything under "
        "full attribution) and the split's questions' mean bps (grad mode cosine)",
        ["records", "null answers", "bar cosine", "bar trak_cosine", "gradient false payouts "
         "cosine / trak_cosine", "null false payouts", "questions", "bps right", "bps wrong",
         "bps pool"])
    for s in by_size:
        for label, v in s["payment"].items():
            count = s["gradient_null_answers"]
            chosen = " (rule)" if label == (f"spread {count}" if count else NONE) else ""
            g = v["gradient_false_payout_rate"]
            paid.add_row(s["records"], label + chosen, f"{v['gradient_bar']['cosine']:.4f}",
                         f"{v['gradient_bar']['trak_cosine']:.4f}",
                         f"{g['cosine']:.3f} / {g['trak_cosine']:.3f}",
                         f"{v['null_false_payout_rate']:.3f}", v["queries"],
                         f"{v['mean_bps_right']:.0f}", f"{v['mean_bps_wrong']:.0f}",
                         f"{v['mean_bps_pool']:.0f}")
    for t in (cost, parts, paid):
        t.print()
    payload = {"base": base.name, "split": args.split, "epochs": args.epochs, "sizes": by_size}
    write_result("attribution_build_cost_sizes", payload, [cost, parts, paid], json_path=args.out,
                 notes=[f"split: {args.split}; threads: torch {args.threads}; total "
                        f"{time.perf_counter() - started:.0f} s"])
    return payload


if __name__ == "__main__":
    main()
