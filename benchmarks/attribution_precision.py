"""What computing an answer's attribution pass in float64 buys and costs, against float32 (the baseline).

Run:  python benchmarks/attribution_precision.py [--model smollm2|tiny] [--models-dir DIR] [--answers 6]
                                                [--rows 48] [--dim 8192]

For each precision: CPU seconds per answer's gradient pass (one torch thread), how far the answer's
feature and its cosine scores against indexed rows move between 1 and 2 torch threads (the order of
sums is all that changes), and how many scores rounded to SCORE_DECIMALS differ. The adapter is a
LoRA (r=16, every projection) with random, non-zero factors, so both factors get gradients; the
indexed rows are the float32 features of the fact set's training records, as an index holds them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import ResultTable, write_result  # noqa: E402

from ledgerlm.attribution.features import DEFAULT_DIM  # noqa: E402
from ledgerlm.evals.attribution.facts import make_fact_tracing_set  # noqa: E402


def base_model(name: str, models_dir: Path | None, work: Path, texts: list[str]):
    from ledgerlm.factory import SMOLLM2_NAME, get_model, register_local, tiny_random_model

    if name == "smollm2":
        return get_model(models_dir or Path.home() / ".ledgerlm" / "models", SMOLLM2_NAME)
    return register_local(work / "models", "tiny", tiny_random_model(work / "tiny", texts))


def adapted(base, dtype):
    import torch
    from peft import LoraConfig, get_peft_model

    from ledgerlm.factory import load_base_model

    torch.manual_seed(0)  # the same random adapter for both precisions
    model = get_peft_model(load_base_model(base, torch.device("cpu"), dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                      init_lora_weights=False))
    return model.to(dtype).eval()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--answers", type=int, default=6)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--dim", type=int, default=DEFAULT_DIM, help="the projection's width")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from ledgerlm.attribution.calibration import rounded
    from ledgerlm.attribution.features import (
        LoraProjector,
        answer_example,
        answer_feature,
        example_features,
        record_examples,
        template_head,
    )
    from ledgerlm.factory import load_tokenizer

    facts = make_fact_tracing_set("tuning", 24, 1000)
    records = facts.records[:args.rows]
    queries = [(r["question"], r["answer"]) for r in records[:args.answers]]
    with tempfile.TemporaryDirectory() as tmp:
        base = base_model(args.model, args.models_dir,  Path(tmp),
                          [f"{r['question']} {r['answer']}" for r in facts.records])
        tokenizer = load_tokenizer(base)
        torch.set_num_threads(1)
        single = adapted(base, torch.float32)
        projector = LoraProjector.for_model(single, dim=args.dim, head=template_head(tokenizer))
        examples = record_examples(records, list(range(len(records))), tokenizer, 256)
        rows = example_features(single, examples, projector, max_len=256,
                                pad_id=tokenizer.pad_token_id or 0)
        index = np.stack([rows[i] for i in sorted(rows)]).astype(np.float32).astype(np.float64)
        index /= np.linalg.norm(index, axis=1, keepdims=True)

        runs = {}
        for label, dtype in (("float32 (baseline)", torch.float32), ("float64", torch.float64)):
            model = single if dtype == torch.float32 else adapted(base, dtype)
            features = {1: [], 2: []}
            cpu = 0.0
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for question, answer in queries:
                    example = answer_example(tokenizer, question, answer)
                    started = time.process_time()
                    features[threads].append(answer_feature(model, projector, example))
                    if threads == 1:
                        cpu += time.process_time() - started
            torch.set_num_threads(1)
            one, two = np.stack(features[1]), np.stack(features[2])
            scores = {t: (f / np.linalg.norm(f, axis=1, keepdims=True)) @ index.T
                      for t, f in ((1, one), (2, two))}
            runs[label] = {
                "cpu_seconds_per_answer": cpu / len(queries),
                "features_bit_identical": bool(one.tobytes() == two.tobytes()),
                "feature_relative_drift": float(np.abs(one - two).max() / np.abs(one).max()),
                "score_drift": float(np.abs(scores[1] - scores[2]).max()),
                "rounded_scores_differing": int((rounded(scores[1]) != rounded(scores[2])).sum()),
                "scores": int(scores[1].size),
                "features": one,
            }
        drift_between = float(np.abs(
            runs["float64"]["features"] / np.linalg.norm(runs["float64"]["features"], axis=1, keepdims=True)
            @ index.T
            - runs["float32 (baseline)"]["features"]
            / np.linalg.norm(runs["float32 (baseline)"]["features"], axis=1, keepdims=True) @ index.T).max())

    base_cpu = runs["float32 (baseline)"]["cpu_seconds_per_answer"]
    table = ResultTable(
        f"attribution_precision ({args.model}, {len(queries)} answers x {len(records)} rows, "
        f"{projector.dim} wide)",
        ["answer pass", "CPU s / answer (1 thread)", "vs baseline", "1 vs 2 threads: features identical",
         "feature drift (rel.)", "score drift", "rounded scores differing"])
    for label, r in runs.items():
        table.add_row(label, f"{r['cpu_seconds_per_answer']:.3f}", f"{r['cpu_seconds_per_answer'] / base_cpu:.2f}x",
                      "yes" if r["features_bit_identical"] else "no", f"{r['feature_relative_drift']:.1e}",
                      f"{r['score_drift']:.1e}", f"{r['rounded_scores_differing']} of {r['scores']}")
    table.print()
    payload = {"model": args.model, "answers": len(queries), "rows": len(records), "dim": projector.dim,
               "score_drift_float64_vs_float32": drift_between,
               "runs": {k: {n: v for n, v in r.items() if n != "features"} for k, r in runs.items()}}
    write_result("attribution_precision", payload, [table], notes=[
        "CPU seconds by time.process_time, one torch thread; drift = largest difference between the "
        "1-thread and 2-thread results; scores are cosines against the rows, rounded to 4 decimals",
        f"largest score difference between the float64 and float32 passes: {drift_between:.1e}"])
    return payload


if __name__ == "__main__":
    main()
