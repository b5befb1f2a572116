"""Benchmark of Proof of Attribution on the test split, with settings chosen on the tuning split.

Run:  python benchmarks/attribution.py [--model tiny|smollm2] [--entities 24]
                                      [--lds-subsets 12 (0 skips LDS)] [--no-serving]

Fine-tunes a model on each split of a generated planted-facts Datanet (tuning and test share no
entity, template or vocabulary). On the tuning split it picks the paying score mode by LDS; on
the test split it reports fact tracing (precision@1, MRR) of every signal against the baselines
random, BM25 and MiniLM and against the exact LoRA gradients of the same adapter; what would be
paid (right contributor, wrong ones, data pool); the false-payout rate on unrelated prompts
(`null_false_payout_rate`); contradicted answers; LDS per method; index-build cost and search at
1k/10k/100k rows. With SmolLM2 pulled (`ledgerlm models pull smollm2-135m`) it also times
attribution against generation on the real model. Prints tables and writes
benchmarks/results/attribution.json and attribution.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import write_result  # noqa: E402  (benchmarks/ is the script's directory)
from rich.console import Console  # noqa: E402

from ledgerlm.evals.attribution import EvalConfig, report_tables, run_attribution_eval  # noqa: E402
from ledgerlm.evals.attribution.scale import serving_latency  # noqa: E402

console = Console(width=160)


def smollm2_base(models_dir: Path | None):
    from ledgerlm.factory import SMOLLM2_NAME, FactoryError, get_model

    try:
        return get_model(models_dir or Path.home() / ".ledgerlm" / "models", SMOLLM2_NAME)
    except FactoryError:
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--entities", type=int, default=EvalConfig.entities)
    parser.add_argument("--epochs", type=int, default=EvalConfig.epochs)
    parser.add_argument("--lds-subsets", type=int, default=EvalConfig.lds_subsets)
    parser.add_argument("--lds-seeds", type=int, default=EvalConfig.lds_seeds,
                        help="models trained per LDS subset, their losses averaged")
    parser.add_argument("--no-tuning-lds", action="store_true",
                        help="skip the tuning split's LDS retrains (score mode, feature source "
                             "and K-FAC keep their defaults); the test split's LDS is still measured")
    parser.add_argument("--no-lds-variants", action="store_true",
                        help="leave the K-FAC/EK-FAC, per-token and checkpoint-ensemble scores "
                             "out of the LDS (their exact-gradient factors need the most memory)")
    parser.add_argument("--dim", type=int, default=EvalConfig.dim)
    parser.add_argument("--scale", default=",".join(map(str, EvalConfig.scale_sizes)),
                        help="index sizes for the search timing, comma-separated")
    parser.add_argument("--kfac", choices=("tuning", "on", "off"), default="tuning",
                        help="K-FAC-whitened index projection: chosen on the tuning split "
                             "(default), or forced")
    parser.add_argument("--per-token", choices=("tuning", "on", "off"), default="tuning",
                        help="score answers by their tokens' unit gradients: chosen on the tuning "
                             "split (default), or forced")
    parser.add_argument("--seed", type=int, default=EvalConfig.seed)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable on a shared machine)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--no-serving", action="store_true",
                        help="skip the SmolLM2 attribution-vs-generation timing")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution.json)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    config = replace(EvalConfig(), model=args.model, entities=args.entities, epochs=args.epochs,
                     lds_subsets=args.lds_subsets, lds_seeds=args.lds_seeds,
                     tuning_lds=not args.no_tuning_lds, lds_variants=not args.no_lds_variants,
                     dim=args.dim, seed=args.seed,
                     kfac={"tuning": None, "on": True, "off": False}[args.kfac],
                     per_token_query={"tuning": None, "on": True, "off": False}[args.per_token],
                     scale_sizes=tuple(int(n) for n in args.scale.split(",") if n),
                     models_dir=str(args.models_dir) if args.models_dir else None)
    started = time.perf_counter()
    report = run_attribution_eval(
        config, say=lambda m: console.log(f"[{time.perf_counter() - started:6.1f}s] {m}"))
    if not args.no_serving:
        base = smollm2_base(args.models_dir)
        if base is None:
            report.notes.append("SmolLM2 is not pulled: serving latency on the real model skipped")
        else:
            console.log("timing attribution against generation on SmolLM2-135M")
            report.cost["serving"] = serving_latency(base, dim=args.dim, seed=args.seed)
    tables = report_tables(report)
    for table in tables:
        table.print()
    notes = [f"model: {args.model}; embedding baseline: {report.embedding_model}; "
             f"total {report.seconds:.0f} s", *report.notes,
             "every figure is on the test split; the score mode was chosen on the tuning split"]
    payload = report.to_dict()
    payload["null_false_payout_rate"] = report.test["null_false_payout_rate"]
    write_result("attribution", payload, tables, notes=notes, json_path=args.out)
    return payload


if __name__ == "__main__":
    main()
