"""Benchmark of Proof of Attribution on real text: Python standard-library docstrings as the Datanet.

Run:  python benchmarks/attribution_real_text.py [--modules 12] [--per-module 4]
                                                [--epochs 15] [--lds-subsets 6]

The planted-facts evaluation (benchmarks/attribution.py) writes its own texts; these were written
by the Python developers. Each record asks what a standard-library function or class does and
answers with the first sentence of its docstring, taken from modules on the reporting side of the
validation benchmark's split (benchmarks/validation_data/real_text.py); every module is one
contributor. The tiny model (pre-trained on planted facts about other people, its tokenizer
never seeing a docstring) is fine-tuned on them and indexed as a node indexes it. Each query
asks about a record's function in other words and answers with that record's sentence, so the
responsible record and contributor are known. Reported beside BM25 over question and answer:
contributor and record precision@1 of each signal and of what is paid, the false-payout rate on
the evaluation's unrelated prompts, and LDS over retrains on random halves. `grad:cosine` scores
with the features the node indexes by default, `grad:cosine (<source>)` with those of each
feature source the evaluation compares (a pass over the final adapter, the same pass with its
backward cut to the last block, the last epoch's or last three epochs' training passes), and
`exact grad cosine` with the unprojected LoRA gradients of the final adapter; the CPU seconds
each source's features cost are reported beside them. The feature sources are first compared by
LDS on as many modules of the split's tuning side (the settings side): another source than the
node's default is chosen there only when it beats the default by two standard errors of their
paired difference (`metrics.choose`, as the planted-facts evaluation chooses). Prints tables and
writes
benchmarks/results/attribution_real_text.json and .md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from report import write_result  # noqa: E402  (benchmarks/ is the script's directory)
from rich.console import Console  # noqa: E402
from validation_data.real_text import stdlib_records  # noqa: E402

from ledgerlm.evals.attribution.facts import TracingQuery  # noqa: E402
from ledgerlm.evals.table import ResultTable  # noqa: E402

console = Console(width=160)
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.DOTALL)
_QUESTION = re.compile(r"^What does (?P<name>[\w.]+) do\?$")


def docstring_datanet(modules: int, per_module: int, max_chars: int = 140, split: str = "reporting"
                      ) -> tuple[list[dict], list[TracingQuery]]:
    """Attributed Q&A records (one contributor per module of `split`) and one reworded query per record."""
    from ledgerlm.attribution.index import record_content_hash

    by_module: dict[str, list[tuple[str, str]]] = {}
    for record in stdlib_records(split):
        match = _QUESTION.match(record.get("question", ""))
        sentence = _FIRST_SENTENCE.match(record.get("answer", "").strip())
        if not match or not sentence:
            continue
        text = " ".join(sentence.group(1).split())
        if 20 <= len(text) <= max_chars and "(" not in text:
            name = match.group("name")
            by_module.setdefault(name.split(".")[0], []).append((name, text))
    chosen = [m for m in sorted(by_module) if len(by_module[m]) >= per_module][:modules]
    records, queries = [], []
    for k, module in enumerate(chosen):
        contributor = "0x" + f"{k + 1:02x}" * 20
        for name, text in by_module[module][:per_module]:
            plain = {"question": f"What does {name} do?", "answer": text}
            records.append({**plain, "_contribution_id": len(records) + 1,
                            "_contributor": contributor,
                            "_content_hash": record_content_hash(plain)})
            short = name.rsplit(".", 1)[-1]
            queries.append(TracingQuery("paraphrase", f"Explain what {short} in {module} is for.",
                                        text, contributor, (len(records) - 1,)))
    return records, queries


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", type=int, default=12)
    parser.add_argument("--per-module", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lds-subsets", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_real_text.json)")
    args = parser.parse_args(argv)

    import torch

    from ledgerlm.evals.attribution.baselines import bm25_scores
    from ledgerlm.evals.attribution.harness import (
        DEFAULT_SOURCE,
        FEATURE_SOURCES,
        EvalConfig,
        _base_model,
        _fine_tune,
        datanet_lds,
        query_signals,
        source_variants,
        variant_scores,
    )
    from ledgerlm.evals.attribution.metrics import choose, paired_difference, rank_metrics
    from ledgerlm.evals.attribution.nulls import unrelated_queries
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    records, queries = docstring_datanet(args.modules, args.per_module)
    config = replace(EvalConfig(), epochs=args.epochs, lds_subsets=args.lds_subsets,
                     seed=args.seed, max_len=160)
    with tempfile.TemporaryDirectory(prefix="ledgerlm-attr-real-") as work:
        work = Path(work)
        say = console.log
        base = _base_model(config, work, say)
        tokenizer = load_tokenizer(base)
        # The feature source is chosen on the tuning side's modules; figures below are the
        # reporting side's.
        tuning_records, tuning_queries = docstring_datanet(args.modules, args.per_module,
                                                           split="tuning")
        say(f"tuning side: LDS of each feature source on {len(tuning_records)} records")
        tuning_lds = datanet_lds(config, base, tokenizer, tuning_records, tuning_queries, work,
                                 "real-text-tuning", say)
        by_source = {src: tuning_lds["methods"][f"grad:cosine ({src})"] for src in FEATURE_SOURCES}
        chosen = choose(DEFAULT_SOURCE, FEATURE_SOURCES, by_source)
        say(f"fine-tuning on {len(records)} docstring records from "
            f"{len({r['_contributor'] for r in records})} modules")
        t = _fine_tune(config, base, tokenizer, records, work / "real-text", source=DEFAULT_SOURCE)
        rows = [e.record for e in t.index.examples]
        owners = [e.contributor for e in t.index.examples]
        signals = [query_signals(t, q.prompt, q.answer) for q in queries]
        methods = {name: np.stack([s.scores[name] for s in signals])
                   for name in ("grad:cosine", "span", "combined:cosine", "exact grad cosine")}
        variants = source_variants(t, config)
        for source, variant in variants.items():
            methods[f"grad:cosine ({source})"] = variant_scores(t, variant, queries, signals, "cosine")
        source_cpu = {source: v.config.build_seconds for source, v in variants.items()}
        methods["bm25"] = bm25_scores([records[r] for r in rows],
                                      [f"{q.prompt} {q.answer}" for q in queries])
        tracing = {name: rank_metrics(s, queries, rows, owners) for name, s in methods.items()}
        paid = [s.paid["cosine"] for s in signals]
        top_right = [bool(r.contributors) and r.contributors[0].contributor == q.contributor
                     for r, q in zip(paid, queries)]
        nulls = [query_signals(t, p, a, exact=False).paid["cosine"] for p, a in unrelated_queries()]
        say(f"LDS: {args.lds_subsets} retrains on random halves")
        lds_result = datanet_lds(config, base, tokenizer, records, queries, work, "real-text",
                                 say, trained=t)
    figures = {
        "records": len(records), "contributors": len(set(owners)), "queries": len(queries),
        "tracing": {k: vars(v) for k, v in tracing.items()},
        "paid": {"top_paid_is_right": float(np.mean(top_right)),
                 "mean_evidence_bps": float(np.mean([r.evidence_bps for r in paid])),
                 "mean_bps_right": float(np.mean([
                     sum(c.bps for c in r.contributors if c.contributor == q.contributor)
                     for r, q in zip(paid, queries)]))},
        "null_false_payout_rate": float(np.mean([r.evidence_bps > 0 for r in nulls])),
        "null_prompts": len(nulls),
        "lds": lds_result,
        "default_source": DEFAULT_SOURCE,
        "tuning": {"records": len(tuning_records), "queries": len(tuning_queries),
                   "lds_by_source": by_source, "chosen_source": chosen},
        "source_cpu_seconds": source_cpu,
        "seconds": time.perf_counter() - started,
    }
    tracing_table = ResultTable(
        f"Real text — {len(records)} stdlib docstring records, {len(set(owners))} modules as "
        f"contributors, {len(queries)} reworded questions; grad:cosine is the node's default "
        f"source ({DEFAULT_SOURCE})", ["method", "contributor P@1", "record P@1", "LDS", "± s.e.",
                                       "features CPU s"])
    names = ["bm25", "grad:cosine"] + [f"grad:cosine ({s})" for s in FEATURE_SOURCES] + [
        "exact grad cosine", "span", "combined:cosine"]
    for name in names:
        m, value = tracing[name], lds_result["methods"].get(name, {"mean": float("nan"), "sem": 0})
        source = name[len("grad:cosine ("):-1] if name.startswith("grad:cosine (") else None
        tracing_table.rows.append([name, f"{m.contributor_p1:.2f}", f"{m.record_p1:.2f}",
                                   f"{value['mean']:.3f}", f"{value['sem']:.3f}",
                                   f"{source_cpu[source]:.1f}" if source else ""])
    tuning_table = ResultTable(
        f"Tuning side — LDS of grad:cosine by feature source ({len(tuning_records)} records of "
        "other modules; another source than the node's default only when it beats it by 2 s.e. of "
        "the paired difference)", ["feature source", "LDS", "± s.e.",
                                   "less the default's (paired, ± s.e.)", "chosen"])
    for src, value in by_source.items():
        paired = paired_difference(value, by_source[DEFAULT_SOURCE])
        tuning_table.rows.append([src, f"{value['mean']:.3f}", f"{value['sem']:.3f}",
                                  "default" if src == DEFAULT_SOURCE else
                                  f"{paired[0]:+.3f} ± {paired[1]:.3f}" if paired else "",
                                  "yes" if src == chosen else ""])
    paid_table = ResultTable("Real text — what is paid (combined:cosine)", ["what", "value"])
    paid_table.rows += [
        ["top paid contributor is the right one", f"{figures['paid']['top_paid_is_right']:.2f}"],
        ["mean evidence bps of the contributor share", f"{figures['paid']['mean_evidence_bps']:.0f}"],
        ["mean bps to the right contributor", f"{figures['paid']['mean_bps_right']:.0f}"],
        [f"null_false_payout_rate ({len(nulls)} unrelated prompts)",
         f"{figures['null_false_payout_rate']:.3f}"],
    ]
    for table in (tuning_table, tracing_table, paid_table):
        table.print()
    write_result("attribution_real_text", figures, [tuning_table, tracing_table, paid_table],
                 json_path=args.out,
                 notes=[f"threads: torch 1; model: tiny; epochs {args.epochs}; LDS retrains "
                        f"{args.lds_subsets}; total {figures['seconds']:.0f} s",
                        "features CPU s: the index rows' features of the fine-tuned model "
                        "(training passes: their projection only; final adapter: the whole pass)"])
    return figures


if __name__ == "__main__":
    main()
