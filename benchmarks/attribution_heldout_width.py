"""How much of the exact LoRA gradients' LDS the projected gradient keeps on the held-out Datanet, by projection width, sketch and random draw.

Run:  python benchmarks/attribution_heldout.py --model smollm2 --models-dir DIR --lds-subsets 12 --work W
      python benchmarks/attribution_heldout_width.py --work W --models-dir DIR
                                                    [--widths 8192,16384,32768,65536:2] [--draws 6]

The first command fine-tunes SmolLM2 on the held-out planted facts, retrains it on random halves
and keeps the retrains' masks and losses with every method's scores (`W/lds.npz`). This one
loads the fine-tuned model as serving does (float64) and takes the exact LoRA gradients of every
record and of every LDS query's answer once (every weight unprojected, the template head left
out as the index leaves it out, kept in float32: about 20 MB each on SmolLM2). It then projects
those gradients as an index would (`attribution_sketch_seeds.project`: the projector's own
code) with `--draws` random draws (seeds 0, 1, ...) of the count sketch at each of `--widths`,
and of Gaussian matrices at the node's width, and scores LDS against the same retrains. The
node's index is the count sketch at 8,192 drawn from seed 0; its draw is checked against the
held-out run's own scores.

The baseline is the exact gradients' LDS, from the same file; the issue's goal is that the
projected gradient keeps at least 90% of it. One draw's LDS moves with the draw (a query's LDS
is a Spearman correlation over the halves, which small changes of the scores reorder: over the
held-out run's 12 halves by tenths; `attribution_heldout_retrains.py` adds more to W), so the
table reports every draw and, per width, their mean, range and how many keep 90%, with the
paired per-query difference from the exact gradients and the mean error of the projected
cosines.

Prints the tables and writes benchmarks/results/attribution_heldout_width.json and .md (`--out`).
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

import numpy as np  # noqa: E402
from attribution_heldout import heldout_datanet, train_settings  # noqa: E402
from attribution_sketch_seeds import project  # noqa: E402
from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

NODE_WIDTH, NODE_SEED = 8192, 0
KEEP = 0.9  # the issue's goal: at least this share of the exact gradients' LDS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="the --work folder of an attribution_heldout.py run with --lds-subsets")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2",
                        help="as the held-out run had it")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is (ledgerlm models pull)")
    parser.add_argument("--widths", default="8192,16384,32768,65536:2",
                        help="comma-separated widths of the count-sketched projections, each "
                             "with :N to take N draws instead of --draws")
    parser.add_argument("--draws", type=int, default=6,
                        help="random draws (seeds 0, 1, ...) per width and sketch")
    parser.add_argument("--gaussian-draws", type=int, default=None,
                        help="draws of Gaussian matrices at the node's width (default --draws; "
                             "0 leaves them out)")
    parser.add_argument("--contributors", type=int, default=8, help="as the held-out run had it")
    parser.add_argument("--facts-each", type=int, default=12, help="as the held-out run had it")
    parser.add_argument("--seed", type=int, default=0, help="the held-out run's --seed")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_heldout_width.json)")
    args = parser.parse_args(argv)
    try:
        if args.draws < 1:
            parser.error("--draws: at least 1")
        widths = [(int(w.split(":")[0]), int(w.split(":")[1]) if ":" in w else args.draws)
                  for w in args.widths.split(",") if w.strip()]
        if not widths or min(min(pair) for pair in widths) < 1:
            raise ValueError
    except ValueError:
        parser.error("--widths: positive widths such as 8192,16384 or 65536:2")
    gaussian_draws = args.draws if args.gaussian_draws is None else args.gaussian_draws
    saved = args.work / "lds.npz"
    if not saved.exists():
        parser.error(f"--work: {saved} is missing; run attribution_heldout.py with --work and "
                     "--lds-subsets first")

    import torch

    from ledgerlm.attribution import load_attributor
    from ledgerlm.attribution.attribute import prepare_answer
    from ledgerlm.attribution.features import COUNT, GAUSSIAN, LoraProjector, answer_feature
    from ledgerlm.evals.attribution.baselines import exact_projector, exact_row_gradients
    from ledgerlm.evals.attribution.harness import EXACT_HEAD, EvalConfig, _base_model
    from ledgerlm.evals.attribution.metrics import lds, rank_metrics
    from ledgerlm.evals.attribution.variants import unit_rows
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    records, queries, _contradicted, _facts = heldout_datanet(args.contributors, args.facts_each,
                                                              args.seed)
    data = np.load(saved)
    chosen, masks, losses = data["queries"], data["masks"], data["losses"]
    rows = data["rows"].tolist()
    asked = [queries[i] for i in chosen]
    config = EvalConfig(model=args.model, models_dir=args.models_dir, seed=args.seed)
    base = _base_model(config, args.work, lambda *_: None)
    tokenizer = load_tokenizer(base)
    attributor = load_attributor(args.work / "model", base=base)
    model, index = attributor.model, attributor.index
    owners = [e.contributor for e in index.examples]
    restated = index.calibration.settings.restated_weight
    head = index.projector.head

    # The exact gradients, once: float32 rows a few records at a time (about 5M weights each).
    exact = exact_projector(model, head)
    t0 = time.process_time()
    row_exact = np.concatenate([
        exact_row_gradients(model, tokenizer, records, rows[i:i + 8], exact,
                            max_len=train_settings(config).max_len).astype(np.float32)
        for i in range(0, len(rows), 8)])
    query_exact = np.stack([
        answer_feature(model, exact, prepared.example, prepared.weights[0]).astype(np.float32)
        for prepared in (prepare_answer(tokenizer, q.prompt, q.answer, restated) for q in asked)])
    exact_seconds = time.process_time() - t0
    print(f"exact gradients of {len(rows)} records and {len(asked)} answers "
          f"({row_exact.shape[1]:,} numbers each): {exact_seconds:.0f} CPU s", flush=True)
    exact_cosines = unit_rows(query_exact.astype(np.float64)) @ unit_rows(
        row_exact.astype(np.float64)).T

    def summary(scores: np.ndarray) -> dict:
        found = lds(scores, masks, losses)
        ranks = rank_metrics(scores, asked, rows, owners)
        return {"lds": found["mean"], "sem": found["sem"], "per_query": found["per_query"],
                "contributor_p1": ranks.contributor_p1, "record_p1": ranks.record_p1,
                "cosine_error": float(np.mean(np.abs(scores - exact_cosines)))}

    exact_result = summary(exact_cosines)

    def share(value: float) -> float:
        return value / exact_result["lds"] if exact_result["lds"] else float("nan")

    saved_exact = lds(data[f"scores:{EXACT_HEAD}"], masks, losses)["mean"]
    draws: dict[str, list[dict]] = {}
    variants = [(COUNT, w, n) for w, n in widths] + (
        [(GAUSSIAN, NODE_WIDTH, gaussian_draws)] if gaussian_draws else [])
    node_check = None
    for wide, width, count in variants:
        label = f"{'count sketch' if wide == COUNT else 'Gaussian matrices'}, {width:,}"
        draws[label] = []
        for seed in range(count):
            t0 = time.process_time()
            projector = LoraProjector.for_model(model, width, seed, head, wide=wide)
            row_features = unit_rows(project(row_exact, exact, projector))
            scores = unit_rows(project(query_exact, exact, projector)) @ row_features.T
            result = {"seed": seed, **summary(scores), "cpu_seconds": time.process_time() - t0}
            if (wide, width, seed) == (COUNT, NODE_WIDTH, NODE_SEED):
                node_check = float(np.max(np.abs(scores - data["scores:grad:cosine"])))
            draws[label].append(result)
            print(f"{label} seed {seed}: LDS {result['lds']:.3f} "
                  f"({share(result['lds']):.2f} of exact)", flush=True)

    exact_per_query = np.array(exact_result["per_query"])
    for results in draws.values():
        for r in results:
            diff = np.array(r["per_query"]) - exact_per_query
            r["over_exact"] = share(r["lds"])
            r["less_exact"] = float(diff.mean())
            r["less_exact_sem"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))

    per_draw = ResultTable(
        f"Gradient alone on the held-out Datanet, every draw: LDS over {len(masks)} retrains on "
        f"halves, {len(chosen)} queries, against the exact LoRA gradients of the same adapter "
        "(the node's index: count sketch, 8,192, seed 0)",
        ["features", "seed", "LDS", "± s.e.", "/ exact", "less exact (paired, ± s.e.)",
         "contributor P@1", "record P@1", "mean |cosine error|"])
    per_draw.add_row(f"exact LoRA gradients ({row_exact.shape[1]:,})", "",
                     f"{exact_result['lds']:.3f}", f"{exact_result['sem']:.3f}", "1.00", "baseline",
                     f"{exact_result['contributor_p1']:.2f}", f"{exact_result['record_p1']:.2f}", "0")
    for label, results in draws.items():
        for r in results:
            per_draw.add_row(label, str(r["seed"]), f"{r['lds']:.3f}", f"{r['sem']:.3f}",
                             f"{r['over_exact']:.2f}",
                             f"{r['less_exact']:+.3f} ± {r['less_exact_sem']:.3f}",
                             f"{r['contributor_p1']:.2f}", f"{r['record_p1']:.2f}",
                             f"{r['cosine_error']:.4f}")
    by_width = ResultTable(
        "What the draws keep of the exact gradients' LDS, per projection",
        ["features", "draws", "LDS / exact: mean", "sd", "range", f"draws keeping {KEEP:.0%}",
         "less exact, mean over draws", "mean |cosine error|"])
    overview = {}
    for label, results in draws.items():
        kept = np.array([r["over_exact"] for r in results])
        overview[label] = {"draws": len(results), "mean": float(kept.mean()),
                           "sd": float(kept.std(ddof=1)) if len(kept) > 1 else 0.0,
                           "min": float(kept.min()), "max": float(kept.max()),
                           "keeping": int((kept >= KEEP).sum()),
                           "less_exact": float(np.mean([r["less_exact"] for r in results])),
                           "cosine_error": float(np.mean([r["cosine_error"] for r in results]))}
        o = overview[label]
        by_width.add_row(label, str(o["draws"]), f"{o['mean']:.2f}", f"{o['sd']:.2f}",
                         f"{o['min']:.2f}–{o['max']:.2f}", f"{o['keeping']} of {o['draws']}",
                         f"{o['less_exact']:+.3f}", f"{o['cosine_error']:.4f}")
    per_draw.print()
    by_width.print()
    payload = {"work": str(args.work), "subsets": int(len(masks)), "queries": int(len(chosen)),
               "exact": exact_result, "exact_lds_saved": saved_exact, "draws": draws,
               "overview": overview, "node_draw_max_abs_difference": node_check,
               "exact_cpu_seconds": exact_seconds, "seconds": time.perf_counter() - started}
    write_result("attribution_heldout_width", payload, [by_width, per_draw],
                 json_path=args.out, notes=[
        "one torch thread; the model in float64 as serving attributes with it; the retrains come "
        "from the held-out run's lds.npz; the exact gradients are kept in float32 and projected "
        "as an index projects them",
        f"the exact gradients' LDS recomputed here {exact_result['lds']:.3f}, in the held-out "
        f"run {saved_exact:.3f}; the node's draw (count sketch, 8,192, seed 0) against the "
        "held-out run's own index scores (whose rows a float32 pass over the trained model made): "
        "largest cosine difference "
        + ("n/a" if node_check is None else f"{node_check:.1e}"),
        f"exact gradients {exact_seconds:.0f} CPU s; total {payload['seconds']:.0f} s"])
    return payload


if __name__ == "__main__":
    main()
