"""Cost at scale: search latency and memory of the flat and span indexes, and attribution against generation.

Search is timed on synthetic rows of the index's width (1k/10k/100k examples); the serving cost is
timed on a real base model (SmolLM2 when pulled) with a fresh adapter: B = 0 gives zero lora_A
gradients, but every matmul and hook still runs, so the cost is the trained one.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from ledgerlm.attribution.features import (
    DEFAULT_DIM,
    LoraProjector,
    answer_example,
    answer_feature,
    answer_token_ids,
    prompt_token_ids,
    span_readings,
    template_head,
)
from ledgerlm.attribution.index import (
    AttributionIndex,
    IndexConfig,
    IndexedExample,
    damped_inverse_covariance,
    top_rows,
)
from ledgerlm.attribution.spans import SpanIndex, token_char_lengths
from ledgerlm.evals.attribution.metrics import rank_metrics


def search_scaling(sizes: tuple[int, ...], dim: int, *, seed: int = 0, queries: int = 20,
                   answer_tokens: int = 32, tokens_per_example: int = 48) -> list[dict]:
    """Search latency and memory of the flat index (synthetic rows) and the span index."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        features = rng.standard_normal((n, dim), dtype=np.float32)
        sample = features[rng.choice(n, min(n, 4096), replace=False)]
        preconditioner = damped_inverse_covariance(sample, 0.1)
        token_rows = rng.integers(0, 49_152, size=(n, tokens_per_example)).astype(np.int32)
        t0 = time.perf_counter()
        spans = SpanIndex.build(token_rows.tolist())
        span_build = time.perf_counter() - t0
        index = AttributionIndex(
            examples=[IndexedExample(i, i, i, "0x0", "") for i in range(n)],
            features=features, preconditioner=preconditioner, projector=None, spans=spans,
            config=IndexConfig(dim=dim, seed=seed, damping=0.1, max_len=0),
        )
        index.row_inverse_norms("cosine")
        search_times, span_times = [], []
        for _ in range(queries):
            q = rng.standard_normal(dim, dtype=np.float32)
            t0 = time.perf_counter()
            top_rows(index.gradient_scores(q, "cosine"), 10)
            search_times.append(time.perf_counter() - t0)
            source = token_rows[rng.integers(n)]
            answer = np.concatenate([source[5:5 + answer_tokens // 2],
                                     rng.integers(0, 49_152, answer_tokens // 2)]).tolist()
            t0 = time.perf_counter()
            spans.explain(answer)
            span_times.append(time.perf_counter() - t0)
        # Memory is measured on separate queries: tracing allocations slows the timed ones.
        tracemalloc.start()
        top_rows(index.gradient_scores(rng.standard_normal(dim, dtype=np.float32), "cosine"), 10)
        spans.explain(token_rows[0][:answer_tokens].tolist())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append({
            "examples": n,
            "search_ms_median": 1e3 * float(np.median(search_times)),
            "search_ms_p95": 1e3 * float(np.percentile(search_times, 95)),
            "span_ms_median": 1e3 * float(np.median(span_times)),
            "index_mb": (features.nbytes + preconditioner.nbytes + 2 * 4 * n) / 2**20,
            "span_index_mb": sum(a.nbytes for a in spans.arrays().values()) / 2**20,
            "span_build_seconds": span_build,
            "query_peak_mb": peak / 2**20,
        })
        del features, index, spans
    return out


def serving_latency(base, *, rank: int = 8, dim: int = DEFAULT_DIM, rows: int = 100_000,
                    answer_tokens: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    """Per-answer attribution cost on a real base model against generating the same answer.

    The index is `rows` synthetic rows of the projector's width, with a span index of the same
    number of 48-token examples.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from ledgerlm.factory import load_base_model, load_tokenizer

    tokenizer = load_tokenizer(base)
    model = get_peft_model(load_base_model(base, torch.device("cpu")), LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"])).eval()
    projector = LoraProjector.for_model(model, dim, seed, template_head(tokenizer))
    prompt = "Where was the cartographer who keeps a heron born, and what is the town known for?"
    messages = [{"role": "user", "content": prompt}]
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
    ids = torch.tensor([list(prompt_ids)])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=answer_tokens, min_new_tokens=answer_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    example = answer_example(tokenizer, prompt, answer)
    answer_ids = answer_token_ids(example)

    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, projector.dim), dtype=np.float32)
    preconditioner = damped_inverse_covariance(features[:4096], 0.1)
    index = AttributionIndex(
        examples=[IndexedExample(i, i, i, "0x0", "") for i in range(rows)], features=features,
        preconditioner=preconditioner, projector=projector,
        spans=SpanIndex.build(rng.integers(0, len(tokenizer), (rows, 48)).tolist(),
                              token_char_lengths(tokenizer)),
        config=IndexConfig(dim=projector.dim, seed=seed, damping=0.1, max_len=0),
    )
    index.row_inverse_norms("cosine")
    generate, feature, search, span = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           max_new_tokens=answer_tokens, min_new_tokens=answer_tokens,
                           do_sample=False, pad_token_id=tokenizer.pad_token_id)
        t1 = time.perf_counter()
        q = answer_feature(model, projector, example)
        t2 = time.perf_counter()
        top_rows(index.gradient_scores(q, "cosine"), 10)
        t3 = time.perf_counter()
        for reading in span_readings(tokenizer, prompt, answer, example):
            index.spans.explain(reading, context=prompt_token_ids(example), min_chars=8)
        t4 = time.perf_counter()
        generate.append(t1 - t0)
        feature.append(t2 - t1)
        search.append(t3 - t2)
        span.append(t4 - t3)
    def median(xs) -> float:
        return 1e3 * float(np.median(xs))

    result = {
        "base": base.name, "rows": rows, "feature_dim": projector.dim,
        "prompt_tokens": len(prompt_ids), "answer_tokens": len(answer_ids),
        "generate_ms": median(generate), "feature_ms": median(feature),
        "search_ms": median(search), "span_ms": median(span),
        "torch_threads": torch.get_num_threads(),
    }
    result["attribution_ms"] = result["feature_ms"] + result["search_ms"] + result["span_ms"]
    return result


def index_build_cost(base, records: list[dict], config, work_dir, *, dim: int = DEFAULT_DIM,
                     seed: int = 0, queries: list | tuple = (),
                     last_blocks: tuple[int, ...] = (), null_counts: tuple[int, ...] = (8, 16)) -> dict:
    """Index build time against training time on `base`, the separate-pass build it replaces, and
    how steady the gradient bar is with the null answers calibration spends a pass on.

    One training run collects the last epoch's features (`TrainingFeatures`); the index is then
    built from them and calibrated, and once more by a pass over the final adapter (the baseline)
    from the same model, so both builds are timed on the same machine in the same run. Times are
    wall and CPU seconds (the CPU figures do not grow when other work shares the machine). The
    bar set from the default share of null answers is compared with the bar from all of them, by
    the gradient false-payout rate of the evaluation's own null prompts (`unrelated_queries`)
    against each; `null_counts` adds the bars from fewer of them (the first n of the same null
    answers' best scores, no extra pass).

    `last_blocks` adds, per K, the separate-pass build whose backward stops at the last K blocks
    (calibration included), timed the same way; with `queries` (`TracingQuery`s of `records`),
    every build's gradient ranking of the queries' answers is scored: record and contributor
    precision@1 of grad:cosine, and how well each truncated build keeps the whole build's ranking
    (mean Spearman correlation of the two builds' scores over the rows, per query).
    """
    from dataclasses import replace
    from pathlib import Path

    import numpy as np

    from ledgerlm.attribution.calibration import CalibrationSettings, calibrate, gradient_bar
    from ledgerlm.attribution.collect import TrainingFeatures
    from ledgerlm.attribution.index import build_index
    from ledgerlm.attribution.null_queries import NULL_QUERIES
    from ledgerlm.evals.attribution.nulls import unrelated_queries
    from ledgerlm.factory import load_tokenizer, train

    out = Path(work_dir) / f"build-cost-{base.name}"
    tokenizer = load_tokenizer(base)
    collector = TrainingFeatures(config.epochs, dim=dim, seed=seed, head=template_head(tokenizer))
    cpu = time.process_time()
    trained = train(base, records, config, out, on_batch_end=collector.on_batch_end,
                    capture_batch=collector.capture_batch)
    train_cpu = time.process_time() - cpu - collector.cpu_seconds
    training = trained.train_seconds - collector.seconds
    model = trained.model
    started, cpu = time.perf_counter(), time.process_time()
    index = build_index(out, records, base=base, dim=dim, seed=seed, features=collector,
                        loaded=(model, tokenizer), save=False, calibration=None)
    rows = (time.perf_counter() - started, time.process_time() - cpu)
    settings = CalibrationSettings()
    started, cpu = time.perf_counter(), time.process_time()
    index.calibration = calibrate(index, model, tokenizer, settings,
                                  training_tokens=trained.tokens_seen)
    calibration = (time.perf_counter() - started, time.process_time() - cpu)
    after = rows[0] + calibration[0]
    after_cpu = rows[1] + calibration[1]
    builds = {}
    for k in (0, *last_blocks):
        started, cpu = time.perf_counter(), time.process_time()
        built = build_index(out, records, base=base, dim=dim, seed=seed,
                            loaded=(model, tokenizer), save=False, last_blocks=k)
        builds[k] = (built, time.perf_counter() - started, time.process_time() - cpu)
    separate = builds[0][1:]
    truncated = {}
    whole = _query_scores(builds[0][0], model, tokenizer, queries) if queries else None
    for k, (built, wall, cpu_s) in builds.items():
        entry = {"seconds": wall, "cpu_seconds": cpu_s, "over_train": wall / training,
                 "over_train_cpu": cpu_s / train_cpu,
                 "gradient_bar_cosine": built.calibration.gradient_bar["cosine"]}
        if queries:
            scores = whole if k == 0 else _query_scores(built, model, tokenizer, queries)
            ranks = rank_metrics(scores, list(queries), [e.record for e in built.examples],
                                 [e.contributor for e in built.examples], tie_seed=seed)
            entry |= {"record_p1": ranks.record_p1, "contributor_p1": ranks.contributor_p1,
                      "spearman_with_whole": _mean_spearman(scores, whole)}
        truncated[k] = entry

    every = calibrate(index, model, tokenizer,
                      replace(settings, gradient_null_answers=len(NULL_QUERIES)))
    held = unrelated_queries()
    evaluation = calibrate(index, model, tokenizer,
                           replace(settings, gradient_null_answers=len(held)), queries=held)
    stability = {}
    q = 1 - settings.false_payout_rate
    for mode, bar in index.calibration.gradient_bar.items():
        best = np.asarray(evaluation.null_gradient_max[mode])
        stability[mode] = {
            "bar": bar, "bar_all_null_answers": every.gradient_bar[mode],
            "false_payout_rate": float(np.mean(best > bar)),
            "false_payout_rate_all_null_answers": float(np.mean(best > every.gradient_bar[mode])),
            "fewer": {n: {"bar": (b := gradient_bar(every.null_gradient_max[mode][:n], q)),
                          "false_payout_rate": float(np.mean(best > b))}
                      for n in null_counts},
        }
    return {"base": base.name, "records": len(records), "epochs": config.epochs,
            "train_seconds": training, "train_cpu_seconds": train_cpu,
            "features_in_training_seconds": collector.seconds,
            "features_in_training_cpu_seconds": collector.cpu_seconds,
            "rows_seconds": rows[0], "rows_cpu_seconds": rows[1],
            "calibration_seconds": calibration[0], "calibration_cpu_seconds": calibration[1],
            "build_after_training_seconds": after, "build_after_training_cpu_seconds": after_cpu,
            "index_over_train": (collector.seconds + after) / training,
            "index_over_train_cpu": (collector.cpu_seconds + after_cpu) / train_cpu,
            "rows_from_training": index.config.rows_from_training,
            "separate_pass_seconds": separate[0], "separate_pass_cpu_seconds": separate[1],
            "separate_over_train": separate[0] / training,
            "separate_over_train_cpu": separate[1] / train_cpu,
            "gradient_null_answers": index.calibration.settings.gradient_null_answers,
            "null_answers": len(NULL_QUERIES), "evaluation_null_prompts": len(held),
            "bar_stability": stability, "by_last_blocks": truncated,
            "queries": len(queries)}


def _query_scores(index, model, tokenizer, queries) -> np.ndarray:
    """grad:cosine scores (queries, rows) of each query's answer against `index`."""
    stacked = np.stack([answer_feature(model, index.projector,
                                       answer_example(tokenizer, q.prompt, q.answer))
                        for q in queries])
    return index.gradient_scores(stacked, "cosine")


def _mean_spearman(scores: np.ndarray, reference: np.ndarray) -> float:
    """Mean over queries of the Spearman correlation of two builds' scores over the rows."""
    from scipy.stats import spearmanr

    rhos = [spearmanr(a, b).statistic for a, b in zip(scores, reference)]
    return float(np.mean([0.0 if np.isnan(r) else r for r in rhos]))
