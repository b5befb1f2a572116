"""How much the evaluation's own draw moves what attribution ranks and pays, over several seeds, with BM25 as the baseline.

Run:  python benchmarks/attribution_eval_seeds.py [--seeds 0-9] [--epochs 10]
      python benchmarks/attribution_eval_seeds.py --model smollm2 --models-dir DIR --entities 8 --seeds 0-2

`benchmarks/attribution.py` reports one draw: seed 0 draws the planted-facts test split's people
and towns, the tiny base model's weights and pre-training, the LoRA initialisation and the index's
projection. Each seed here draws all of them again, fine-tunes with the node's defaults (no
setting is chosen per seed: cosine, the final adapter, the plain 8,192-wide projection) and
attributes the test split's questions as serving does. Per seed and over all seeds: contributor and
record precision@1 of the receipts' ranking (paid evidence, then rows holding a rare span, then
the gradient) against BM25 over question and answer on the same questions, the style questions'
apart (only the gradient ranks them); what the questions are paid (right, wrong, data pool);
`null_false_payout_rate` on the 40 unrelated prompts; what a contradicting answer pays the record
it contradicts. Prints the tables and writes benchmarks/results/attribution_eval_seeds.json and .md
(`--out`).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

MODE = "cosine"
PAID = f"combined:{MODE}"
METHODS = (PAID, "bm25", "span", f"grad:{MODE}")


def seeds_of(text: str) -> list[int]:
    """'0-9' or '0,3,5' as a list of seeds."""
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out += list(range(int(lo), int(hi) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def fine_tuned(args, seed: int, work: Path, say, split: str = "test"):
    """Seed `seed`'s draw of `split` (and of the tiny base model), fine-tuned with the node's defaults:
    (the planted-facts set, the trained model and its index)."""
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set
    from ledgerlm.evals.attribution.harness import EvalConfig, _base_model, _fine_tune
    from ledgerlm.factory import load_tokenizer

    config = EvalConfig(model=args.model, models_dir=args.models_dir, entities=args.entities,
                        epochs=args.epochs, seed=seed)
    base = _base_model(config, work, say)
    data = make_fact_tracing_set(split, config.entities, seed)
    say(f"seed {seed}: fine-tuning on {len(data.records)} records")
    return data, _fine_tune(config, base, load_tokenizer(base), data.records, work / "model")


def over_seeds(seeds: list[int], one) -> list[dict]:
    """`one(seed, work, say)` for each seed, each in a work folder of its own, with a progress bar."""
    from rich.progress import Progress

    runs = []
    with Progress() as progress, tempfile.TemporaryDirectory(prefix="ledgerlm-eval-seeds-") as tmp:
        task = progress.add_task("evaluation seeds", total=len(seeds))
        for seed in seeds:
            work = Path(tmp) / f"seed-{seed}"
            work.mkdir()
            runs.append(one(seed, work, progress.console.print))
            progress.advance(task)
    return runs


def one_seed(args, seed: int, work: Path, say) -> dict:
    """Fine-tune on seed `seed`'s draw of the split with the node's defaults and measure it."""
    import numpy as np

    from ledgerlm.evals.attribution.baselines import bm25_scores
    from ledgerlm.evals.attribution.harness import query_signals, tracing_by_kind, what_is_paid

    started = time.perf_counter()
    data, t = fine_tuned(args, seed, work, say, args.split)
    rows_records = [e.record for e in t.index.examples]
    rows_contributors = [e.contributor for e in t.index.examples]
    indexed = [data.records[r] for r in rows_records]
    say(f"seed {seed}: attributing {len(data.queries)} questions")
    signals = [query_signals(t, q.prompt, q.answer, exact=False) for q in data.queries]
    scores = {name: np.stack([s.scores[name] for s in signals]) for name in METHODS if name != "bm25"}
    scores["bm25"] = bm25_scores(indexed, [f"{q.prompt} {q.answer}" for q in data.queries])
    tracing = tracing_by_kind(scores, data.queries, rows_records, rows_contributors)
    payment = what_is_paid(t, data, MODE, [s.paid[MODE] for s in signals])
    return {"seed": seed, "records": len(data.records), "questions": len(data.queries),
            "tracing": tracing, "payment": payment, "style": style_figures(data, scores, signals,
                                                                        rows_records,
                                                                        rows_contributors),
            "tops": [{"kind": q.kind, "answer": q.answer,
                      "receipt": data.roles[rows_contributors[int(np.argmax(scores[PAID][i]))]]}
                     for i, q in enumerate(data.queries)],
            "seconds": time.perf_counter() - started}


def style_figures(data, scores, signals, rows_records, rows_contributors) -> dict:
    """The style answers apart: the receipts' contributor precision@1 against the stylist alone
    (the label before both teachers were named), and what they pay each teacher."""
    from dataclasses import replace

    import numpy as np

    from ledgerlm.evals.attribution.metrics import rank_metrics

    style = [i for i, q in enumerate(data.queries) if q.kind == "style"]
    alone = rank_metrics(scores[PAID][style], [replace(data.queries[i], also=()) for i in style],
                         rows_records, rows_contributors)

    def bps(i, who):
        return sum(c.bps for c in signals[i].paid[MODE].contributors if c.contributor in who)

    stylist = [{data.queries[i].contributor} for i in style]
    fact = [set(data.queries[i].also) for i in style]
    return {"questions": len(style), "stylist_alone_p1": alone.contributor_p1,
            "mean_bps_stylist": float(np.mean([bps(i, w) for i, w in zip(style, stylist)])),
            "mean_bps_fact_contributor": float(np.mean([bps(i, w) for i, w in zip(style, fact)]))}


def mean_sem(values) -> tuple[float, float]:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0)


def tables(runs: list[dict], model: str, split: str = "test") -> list[ResultTable]:
    def p1(run, kind, method, level="contributor"):
        return run["tracing"][kind][method][f"{level}_p1"]

    n = runs[0]["questions"]
    ranking = ResultTable(
        f"{split.capitalize()} split, {model}, node defaults, per evaluation seed — precision@1 of the receipts' "
        f"ranking against BM25 on the same {n} questions (contributor / record)",
        ["seed", "paid ranking: all", "paid ranking: style", "style, the stylist alone",
         "BM25: all", "BM25: style", "span: all", "gradient alone: all", "never below BM25"])
    cells = [(PAID, "all"), (PAID, "style"), ("bm25", "all"), ("bm25", "style"), ("span", "all"),
             (f"grad:{MODE}", "all")]
    def cells_of(run) -> list[str]:
        shown = [f"{p1(run, k, m):.2f} / {p1(run, k, m, 'record'):.2f}" for m, k in cells]
        return shown[:2] + [f"{run['style']['stylist_alone_p1']:.2f}"] + shown[2:]

    for run in runs:
        ranking.add_row(str(run["seed"]), *cells_of(run),
                        "yes" if p1(run, "all", PAID) >= p1(run, "all", "bm25") else "no")

    def over_seeds(method, kind):
        c = mean_sem([p1(r, kind, method) for r in runs])
        return f"{c[0]:.2f} ± {c[1]:.2f} / {mean_sem([p1(r, kind, method, 'record') for r in runs])[0]:.2f}"

    kept = sum(p1(r, "all", PAID) >= p1(r, "all", "bm25") for r in runs)
    alone = [r["style"]["stylist_alone_p1"] for r in runs]
    means = [over_seeds(m, k) for m, k in cells]
    ranking.add_row(f"mean of {len(runs)}", *means[:2],
                    "{:.2f} ± {:.2f}".format(*mean_sem(alone)), *means[2:], f"{kept} of {len(runs)}")
    lowest = [f"{min(p1(r, k, m) for r in runs):.2f}" for m, k in cells]
    ranking.add_row("lowest", *lowest[:2], f"{min(alone):.2f}", *lowest[2:], "")
    paid = ResultTable(
        f"{split.capitalize()} split, {model} — what is paid per evaluation seed (mean bps of the contributor share)",
        ["seed", "right", "wrong", "data pool", "top paid is right", "null_false_payout_rate",
         "bps to a contradicted record"])
    for run in runs:
        a, p = run["payment"]["all"], run["payment"]
        paid.add_row(str(run["seed"]), f"{a['mean_bps_right']:.0f}", f"{a['mean_bps_wrong']:.0f}",
                     f"{a['mean_bps_pool']:.0f}", f"{a['top_paid_is_right']:.2f}",
                     f"{p['null']['null_false_payout_rate']:.3f}",
                     f"{p['contradicted']['bps_to_contradicted_record']:.0f}")

    def avg(key, sub="all"):
        return mean_sem([r["payment"][sub][key] for r in runs])

    paid.add_row(f"mean of {len(runs)}", *(f"{avg(k)[0]:.0f} ± {avg(k)[1]:.0f}" for k in
                                            ("mean_bps_right", "mean_bps_wrong", "mean_bps_pool")),
                 f"{avg('top_paid_is_right')[0]:.2f}",
                 f"{avg('null_false_payout_rate', 'null')[0]:.3f} (max "
                 f"{max(r['payment']['null']['null_false_payout_rate'] for r in runs):.3f})",
                 f"{avg('bps_to_contradicted_record', 'contradicted')[0]:.0f}")
    style = ResultTable(
        f"{split.capitalize()} split, {model} — style answers (the stylist's capitals and \" !!\" on another "
        "contributor's fact): mean bps of the contributor share paid to each teacher",
        ["seed", "questions", "to the fact's contributor", "to the stylist"])
    for run in runs:
        st = run["style"]
        style.add_row(str(run["seed"]), str(st["questions"]), f"{st['mean_bps_fact_contributor']:.0f}",
                      f"{st['mean_bps_stylist']:.0f}")
    return [ranking, paid, style]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-9", help="seeds to draw, e.g. 0-9 or 0,3,5")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is pulled (--model smollm2)")
    parser.add_argument("--entities", type=int, default=24, help="people per split")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--split", choices=("tuning", "test"), default="test",
                        help="the split to draw (report on test; check a rule on tuning first)")
    parser.add_argument("--rule", type=int, choices=(20, 21), default=21,
                        help="20: read answers only as served (before attribution rule 21), to measure it")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    if args.rule == 20:
        from ledgerlm.attribution import casing

        casing.READ_IN_DATANET_CASE = False
    started = time.perf_counter()
    seeds = seeds_of(args.seeds)
    runs = over_seeds(seeds, lambda seed, work, say: one_seed(args, seed, work, say))
    shown = tables(runs, args.model, args.split)
    for table in shown:
        table.print()
    payload = {"model": args.model, "split": args.split, "rule": args.rule, "entities": args.entities, "epochs": args.epochs,
               "seeds": seeds, "runs": runs, "seconds": time.perf_counter() - started}
    write_result("attribution_eval_seeds" + ("" if args.model == "tiny" else f"-{args.model}")
                 + ("" if args.split == "test" else f"-{args.split}")
                 + ("" if args.rule == 21 else f"-rule{args.rule}"),
                 payload, shown, json_path=args.out, notes=[
                     f"one torch thread; total {payload['seconds']:.0f} s; attribution rule {args.rule}"
                     + (" (answers read only as served)" if args.rule == 20 else ""),
                     f"each seed draws the {args.split} split, the base model (tiny), the LoRA "
                     "initialisation and the projection; every setting is the node's default"])
    return payload


if __name__ == "__main__":
    main()
