"""How much of the exact LoRA gradients' LDS the projected gradient keeps on the held-out Datanet, by projection width and sketch seed.

Run:  python benchmarks/attribution_heldout.py --model smollm2 --models-dir DIR --lds-subsets 12 --work W
      python benchmarks/attribution_heldout_width.py --work W --models-dir DIR
                                                    [--variants 8192:0,8192:1,8192:2,16384:0,32768:0]

The first command fine-tunes SmolLM2 on the held-out planted facts, retrains it on random halves
and keeps the retrains' masks and losses with every method's scores (`W/lds.npz`). This one
loads the fine-tuned model as serving does (float64), projects every record's and every LDS
query's gradient with count-sketched projections of each `--variants` width:seed (the node's
projection is 8,192 wide, seed 0) and scores LDS against the same retrains. The baseline is
the exact LoRA gradients of the same adapter (every weight unprojected, the template head left
out as the index leaves it out), from the same file; the issue's goal is that the projected
gradient keeps at least 90% of their LDS. Also reported: the paired per-query difference from
the exact gradients, contributor and record precision@1 of the gradient alone on the LDS
queries, and the CPU seconds of each variant's pass over the records.

Prints the table and writes benchmarks/results/attribution_heldout_width.json and .md (`--out`).
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
from attribution_heldout import answer_cosines, heldout_datanet  # noqa: E402
from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="the --work folder of an attribution_heldout.py run with --lds-subsets")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2",
                        help="as the held-out run had it")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is (ledgerlm models pull)")
    parser.add_argument("--variants", default="8192:0,8192:1,8192:2,16384:0,32768:0",
                        help="comma-separated width:seed of the count-sketched projections")
    parser.add_argument("--contributors", type=int, default=8, help="as the held-out run had it")
    parser.add_argument("--facts-each", type=int, default=12, help="as the held-out run had it")
    parser.add_argument("--seed", type=int, default=0, help="the held-out run's --seed")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_heldout_width.json)")
    args = parser.parse_args(argv)
    try:
        variants = [tuple(int(x) for x in v.split(":")) for v in args.variants.split(",") if v]
        if any(len(v) != 2 or v[0] < 1 for v in variants):
            raise ValueError
    except ValueError:
        parser.error("--variants: width:seed pairs such as 8192:0,16384:0")
    saved = args.work / "lds.npz"
    if not saved.exists():
        parser.error(f"--work: {saved} is missing; run attribution_heldout.py with --work and "
                     "--lds-subsets first")

    import torch

    from ledgerlm.attribution import load_attributor
    from ledgerlm.attribution.features import LoraProjector
    from ledgerlm.evals.attribution.baselines import exact_row_gradients
    from ledgerlm.evals.attribution.harness import EXACT_HEAD, EvalConfig, _base_model
    from ledgerlm.evals.attribution.metrics import lds, rank_metrics
    from ledgerlm.factory import TrainConfig, load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    records, queries, _contradicted, _facts = heldout_datanet(args.contributors, args.facts_each,
                                                              args.seed)
    data = np.load(saved)
    chosen, masks, losses = data["queries"], data["masks"], data["losses"]
    rows = data["rows"].tolist()
    asked = [queries[i] for i in chosen]
    base = _base_model(EvalConfig(model=args.model, models_dir=args.models_dir), args.work,
                       lambda *_: None)
    tokenizer = load_tokenizer(base)
    attributor = load_attributor(args.work / "model", base=base)
    model, index = attributor.model, attributor.index
    owners = [e.contributor for e in index.examples]
    restated = index.calibration.settings.restated_weight
    max_len = TrainConfig().max_len

    def summary(scores: np.ndarray, cpu: float | None = None) -> dict:
        found = lds(scores, masks, losses)
        ranks = rank_metrics(scores, asked, rows, owners)
        return {"lds": found["mean"], "sem": found["sem"], "per_query": found["per_query"],
                "contributor_p1": ranks.contributor_p1, "record_p1": ranks.record_p1,
                "records_cpu_seconds": cpu}

    results = {"exact": summary(data[f"scores:{EXACT_HEAD}"]),
               "node index (8192:0)": summary(data["scores:grad:cosine"])}
    for dim, seed in variants:
        cpu = time.process_time()
        projector = LoraProjector.for_model(model, dim, seed, index.projector.head)
        # the records' gradients through this projector (exact_row_gradients takes any projector)
        features = exact_row_gradients(model, tokenizer, records, rows, projector, max_len=max_len)
        cpu = time.process_time() - cpu
        scores = np.stack([answer_cosines(model, tokenizer, projector, features, q.prompt, q.answer,
                                          restated) for q in asked])
        results[f"{dim}:{seed}"] = summary(scores, cpu)
        print(f"{dim}:{seed}: LDS {results[f'{dim}:{seed}']['lds']:.3f}", flush=True)

    exact = np.array(results["exact"]["per_query"])
    table = ResultTable(
        f"Gradient alone on the held-out Datanet: LDS over {len(masks)} retrains on halves, "
        f"{len(chosen)} queries; count-sketched projections (width:seed) against the exact LoRA "
        "gradients of the same adapter",
        ["features", "LDS", "± s.e.", "/ exact", "less exact (paired, ± s.e.)", "contributor P@1",
         "record P@1", "records pass (CPU s)"])
    for name, r in results.items():
        diff = np.array(r["per_query"]) - exact
        r["over_exact"] = r["lds"] / results["exact"]["lds"]
        r["less_exact"] = float(diff.mean())
        r["less_exact_sem"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        table.add_row(name, f"{r['lds']:.3f}", f"{r['sem']:.3f}", f"{r['over_exact']:.2f}",
                      "baseline" if name == "exact" else
                      f"{r['less_exact']:+.3f} ± {r['less_exact_sem']:.3f}",
                      f"{r['contributor_p1']:.2f}", f"{r['record_p1']:.2f}",
                      "" if r["records_cpu_seconds"] is None else f"{r['records_cpu_seconds']:.0f}")
    table.print()
    payload = {"work": str(args.work), "subsets": int(len(masks)), "queries": int(len(chosen)),
               "results": results, "seconds": time.perf_counter() - started}
    write_result("attribution_heldout_width", payload, [table], json_path=args.out, notes=[
        "one torch thread; the model in float64 as serving attributes with it; the retrains and "
        "the exact and node-index scores come from the held-out run's lds.npz",
        f"total {payload['seconds']:.0f} s"])
    return payload


if __name__ == "__main__":
    main()
