"""How much of the exact LoRA gradients' linear datamodeling score the index's projection keeps, by projection width.

Run:  python benchmarks/attribution_projection_width.py [--model tiny|smollm2] [--models-dir DIR]
                                                      [--dims 2048] [--lds-subsets 16]
                                                      [--no-gaussian]

Fine-tunes the model on the attribution evaluation's LDS Datanet of the test split (8 people,
44 records), retrains it on `--lds-subsets` random halves, and scores 24 questions' losses against
the full model's attribution scores: the exact LoRA gradients of the same adapter (template head
left out, as the index leaves it out; and every position), the index's projection at its width
(`--dim`, the index's default) and at each of `--dims`, each with the count sketch the index uses
and, as the baseline, with dense Gaussian matrices (the projection before), timing the pass that
projects the training rows; and, as references, BM25, span matching and the paid attribution.
The K-FAC / per-token / checkpoint-ensemble variants are left out (their exact-gradient factors
need the most memory); `benchmarks/attribution.py` scores them. Prints the table and writes
benchmarks/results/attribution_projection_width.json and .md.
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

from report import write_result  # noqa: E402  (benchmarks/ is the script's directory)
from rich.console import Console  # noqa: E402

from ledgerlm.evals.attribution import EvalConfig  # noqa: E402
from ledgerlm.evals.table import ResultTable  # noqa: E402

console = Console(width=160)
EXACT = "exact grad cosine (head left out)"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--dim", type=int, default=EvalConfig.dim, help="the index's width")
    parser.add_argument("--dims", default="2048",
                        help="other projection widths, comma-separated")
    parser.add_argument("--lds-subsets", type=int, default=16)
    parser.add_argument("--no-gaussian", action="store_true",
                        help="leave out the Gaussian-matrix projections (the baseline)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=EvalConfig.seed)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_projection_width.json)")
    args = parser.parse_args(argv)
    dims = tuple(int(d) for d in args.dims.split(",") if d)
    if args.lds_subsets < 2:
        parser.error("--lds-subsets must be at least 2")

    import torch

    from ledgerlm.evals.attribution.harness import _base_model, split_lds
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    config = replace(EvalConfig(), model=args.model, epochs=args.epochs, dim=args.dim,
                     lds_subsets=args.lds_subsets, lds_variants=False,
                     lds_dims=tuple(d for d in dims if d != args.dim), seed=args.seed,
                     lds_gaussian=not args.no_gaussian,
                     models_dir=str(args.models_dir) if args.models_dir else None)
    started = time.perf_counter()
    say = console.log
    with tempfile.TemporaryDirectory(prefix="ledgerlm-width-") as work:
        base = _base_model(config, Path(work), say)
        result = split_lds(config, base, load_tokenizer(base), "test", Path(work), say)
    methods = result["methods"]
    exact = methods[EXACT]["mean"]
    seconds = result.get("rows_pass_cpu_seconds", {})
    widths = sorted({args.dim, *config.lds_dims})
    table = ResultTable(
        f"Test split, {args.model} — LDS over {result['subsets']} retrains on random halves of "
        f"{result['records']} records, {result['queries']} queries; projected features against the "
        "exact LoRA gradients of the same adapter, and the CPU seconds of the pass that projects "
        "the training rows", ["scores", "LDS", "± s.e.", "LDS / exact LDS", "rows' pass CPU s"])
    rows = []
    for d in widths:
        index = " (the index's width)" if d == args.dim else ""
        name = f"grad:cosine (dim {d})" if f"grad:cosine (dim {d})" in methods else (
            "grad:cosine (final adapter)")
        rows.append((f"grad:cosine, {d} wide, count sketch{index}", name, f"{d} count"))
        rows.append((f"grad:cosine, {d} wide, Gaussian matrices", f"grad:cosine (dim {d}, Gaussian)",
                     f"{d} gaussian"))
    rows += [(f"{EXACT} — the reference", EXACT, None),
             ("exact grad cosine (every position)", "exact grad cosine", None),
             ("span", "span", None), ("combined:cosine (what is paid)", "combined:cosine", None),
             ("combined:cosine + gradient", "combined:cosine + gradient", None), ("bm25", "bm25", None),
             ("responsible records (ground truth)", "responsible records (ground truth)", None),
             ("random", "random", None)]
    for label, name, timed in rows:
        if name not in methods:
            continue
        value = methods[name]
        ratio = value["mean"] / exact if name.startswith("grad:") and exact > 0 else None
        table.rows.append([label, f"{value['mean']:.3f}", f"{value['sem']:.3f}",
                           f"{ratio:.2f}" if ratio is not None else "",
                           f"{seconds[timed]:.1f}" if timed in seconds else ""])
    table.print()
    payload = {"config": {"model": args.model, "dim": args.dim, "dims": list(config.lds_dims),
                          "epochs": args.epochs, "lds_subsets": args.lds_subsets, "seed": args.seed},
               "lds": result, "seconds": time.perf_counter() - started}
    notes = [f"model: {args.model}; total {payload['seconds']:.0f} s; one torch thread",
             "test split only; nothing here is chosen, so there is no tuning side"]
    write_result("attribution_projection_width", payload, [table], notes=notes, json_path=args.out)
    return payload


if __name__ == "__main__":
    main()
