"""Benchmark of Proof of Attribution: fact tracing, counterfactual LDS and cost, against baselines.

Run:  .venv/bin/python benchmarks/attribution.py [--model tiny|smollm2] [--entities 24]
                                                 [--lds-subsets 12 (0 skips LDS)] [--no-serving]

Fine-tunes a model on a generated Datanet (four fact contributors, a gazetteer with look-alike
near-duplicates, a stylist), then ranks training records for paraphrased, short, indirect and
style queries with every signal (projected gradient in four score modes, unprojected TracIn,
span matching, the combined attribution) and the baselines random, BM25 and MiniLM; retrains
on random halves for the linear datamodeling score; and times index build, per-answer
attribution and search at 1k/10k/100k rows. With SmolLM2 pulled (`ledgerlm models pull
smollm2-135m`), it also times attribution against generation on the real model. Prints tables
and writes benchmarks/results/attribution.json.
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rich.console import Console

from ledgerlm.attribution.evaluate import (
    EvalConfig,
    report_tables,
    run_attribution_eval,
    serving_latency,
)

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
    parser.add_argument("--dim", type=int, default=EvalConfig.dim)
    parser.add_argument("--scale", default=",".join(map(str, EvalConfig.scale_sizes)),
                        help="index sizes for the search timing, comma-separated")
    parser.add_argument("--seed", type=int, default=EvalConfig.seed)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 keeps timings stable on a shared machine)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--no-serving", action="store_true",
                        help="skip the SmolLM2 attribution-vs-generation timing")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attribution.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    config = replace(EvalConfig(), model=args.model, entities=args.entities, epochs=args.epochs,
                     lds_subsets=args.lds_subsets, dim=args.dim, seed=args.seed,
                     scale_sizes=tuple(int(n) for n in args.scale.split(",") if n),
                     models_dir=str(args.models_dir) if args.models_dir else None)
    started = time.perf_counter()
    report = run_attribution_eval(
        config, say=lambda m: console.log(f"[{time.perf_counter() - started:6.1f}s] {m}"))
    notes = []
    if not args.no_serving:
        base = smollm2_base(args.models_dir)
        if base is None:
            notes.append("SmolLM2 is not pulled: serving latency on the real model skipped")
        else:
            console.log("timing attribution against generation on SmolLM2-135M")
            report.cost["serving"] = serving_latency(base, dim=args.dim, seed=args.seed)
    report.notes += notes
    for table in report_tables(report):
        console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")
    console.print(f"embedding baseline: {report.embedding_model}; total {report.seconds:.0f}s; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    result = {**report.to_dict(), "command": "benchmarks/attribution.py " + " ".join(argv or sys.argv[1:]),
              "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
