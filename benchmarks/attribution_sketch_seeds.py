"""How much the projection's random draw moves the gradient's ranking, with the exact LoRA gradients as the baseline.

Run:  python benchmarks/attribution_sketch_seeds.py [--seeds 6] [--dims 8192,16384] [--epochs 10]

Fine-tunes the evaluation's tiny model on the planted-facts test split (as `benchmarks/attribution.py`
does), takes the exact LoRA gradients of every training record and of every query's answer (the
template head left out, as the index leaves it), and projects both with count sketches and with
Gaussian matrices drawn from `--seeds` seeds at each width. Reports the contributor precision@1 of
the gradient alone (cosine, the node's default mode) for the style questions (which only the
gradient ranks in the paid attribution) and for all questions, per seed and on average, beside
the exact gradients'. Prints the table and writes benchmarks/results/attribution_sketch_seeds.json
and .md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import ResultTable, write_result  # noqa: E402


def project(features, exact, projector):
    """`features` in `exact`'s identity layout, projected by `projector` as an index projects a
    gradient: each LoRA weight's output side, then its input side, summed at its offset."""
    import numpy as np
    import torch

    out = np.zeros((len(features), projector.dim))
    by_name = {m.name: m for m in projector.matrices}
    for m in exact.matrices:
        block = torch.from_numpy(features[:, m.offset:m.offset + m.dim]).view(-1, m.rows, m.cols)
        block = projector.project(m.name, "out", block.transpose(1, 2)).transpose(1, 2)
        block = projector.project(m.name, "in", block.contiguous())
        target = by_name[m.name]
        out[:, target.offset:target.offset + target.dim] += block.reshape(len(features), -1).numpy()
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--dims", default="8192,16384")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from ledgerlm.attribution.attribute import prepare_answer
    from ledgerlm.attribution.features import COUNT, GAUSSIAN, LoraProjector, answer_feature
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import EvalConfig, _base_model, _fine_tune
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    config = EvalConfig(epochs=args.epochs)
    dims = [int(d) for d in args.dims.split(",") if d.strip()]
    with tempfile.TemporaryDirectory(prefix="ledgerlm-sketch-seeds-") as work:
        base = _base_model(config, Path(work), print)
        tokenizer = load_tokenizer(base)
        data = make_fact_tracing_set("test", config.entities, config.seed)
        t = _fine_tune(config, base, tokenizer, data.records, Path(work) / "model")
        owners = np.array([e.contributor for e in t.index.examples])
        weight = t.index.calibration.settings.restated_weight
        answers = []
        for q in data.queries:
            prepared = prepare_answer(tokenizer, q.prompt, q.answer, weight)
            answers.append(answer_feature(t.model, t.exact_head, prepared.example,
                                          prepared.weights[0]))
        queries, rows = np.stack(answers), t.exact_head_rows
        style = np.array([q.kind == "style" for q in data.queries])
        right = np.array([q.contributor for q in data.queries])

        def precision(q_features, row_features) -> dict:
            q_unit = q_features / np.linalg.norm(q_features, axis=1, keepdims=True)
            r_unit = row_features / np.linalg.norm(row_features, axis=1, keepdims=True)
            top = owners[np.argmax(q_unit @ r_unit.T, axis=1)] == right
            return {"style": float(top[style].mean()), "all": float(top.mean())}

        exact = precision(queries, rows)
        runs = {}
        for wide in (COUNT, GAUSSIAN):
            for dim in dims:
                per_seed = []
                for seed in range(args.seeds):
                    projector = LoraProjector.for_model(t.model, dim, seed, t.index.projector.head,
                                                        wide=wide)
                    per_seed.append(precision(project(queries, t.exact_head, projector),
                                              project(rows, t.exact_head, projector)))
                runs[f"{wide} {dim}"] = per_seed
    table = ResultTable(
        f"Gradient-only contributor precision@1 on the tiny model's test split ({int(style.sum())} "
        f"style questions of {len(style)}), projected from the exact LoRA gradients "
        f"({rows.shape[1]:,} numbers), {args.seeds} projection seeds",
        ["features", "style: per seed", "style: mean", "all: mean"])
    table.add_row(f"exact LoRA gradients ({rows.shape[1]:,})", "", f"{exact['style']:.2f}",
                  f"{exact['all']:.2f}")
    for label, per_seed in runs.items():
        wide, dim = label.split()
        name = "count sketch" if wide == COUNT else "Gaussian matrices"
        table.add_row(f"{name}, {int(dim):,} wide", " ".join(f"{r['style']:.2f}" for r in per_seed),
                      f"{np.mean([r['style'] for r in per_seed]):.2f}",
                      f"{np.mean([r['all'] for r in per_seed]):.2f}")
    table.print()
    payload = {"epochs": args.epochs, "seeds": args.seeds, "dims": dims,
               "full_dim": int(rows.shape[1]), "exact": exact, "runs": runs,
               "seconds": time.perf_counter() - started}
    write_result("attribution_sketch_seeds", payload, [table], notes=[
        "one torch thread; a node's index is the count sketch at attribution_dim (default "
        "8,192) drawn from seed 0"])
    return payload


if __name__ == "__main__":
    main()
