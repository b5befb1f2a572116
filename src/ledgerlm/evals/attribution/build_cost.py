"""Index build cost against training at several Datanet sizes, and what fewer graded null answers do to what is paid.

One training per size (the first `n` records of a planted-facts split); on the trained model the
node's build (a pass over the final adapter, calibration included) is timed with the calibration
rule (`calibration.null_answer_count`: none below its floor of 40) and with the rule before
(the floor's 40 below it), interleaved and
twice each, the faster of each pair kept. Then the parts of the build are timed alone, and every
null answer's feature is computed once so that the bars from any subset of them can be compared:
gradient-only false payouts of the evaluation's 40 unrelated prompts, and what full attribution
pays for those prompts and for the split's questions (to the right contributor, to wrong ones,
to the data pool).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

# Which null answers a variant grades: "first n" is the order the old setting used, "spread n" the
# calibration rule's (graded_null_answers).
VARIANT_COUNTS = (4, 6, 8, 16, 32)
NONE = "none: spans only"
OLD_DIM = 2048  # the index's width while its wide sides were Gaussian


def build_cost_at_size(base, records: list[dict], queries: list, config, work_dir, *,
                       dim: int | None = None, seed: int = 0,
                       baseline_dim: int = OLD_DIM) -> dict:
    """Training and build CPU seconds for `records`, the build's parts, and the payment table.

    Besides the node's build (`dim`, default the index's; count-sketched wide sides) and the rule
    before (the floor's 40 null answers where the rule now grades none), the same model is indexed with Gaussian wide sides at `dim` and at
    `baseline_dim` (the projection indexes were built with before).
    """
    from ledgerlm.attribution.calibration import CalibrationSettings
    from ledgerlm.attribution.features import COUNT, DEFAULT_DIM, GAUSSIAN
    from ledgerlm.attribution.index import build_index
    from ledgerlm.factory import load_tokenizer, train

    out = Path(work_dir) / f"size-{len(records)}"
    tokenizer = load_tokenizer(base)
    cpu = time.process_time()
    trained = train(base, records, config, out)
    train_cpu = time.process_time() - cpu
    model = trained.model
    dim = dim or DEFAULT_DIM
    rule = CalibrationSettings()
    # label -> (calibration, width, wide side); "before" is the rule as it was before a training
    # too small for the floor went without a gradient pass (the floor's 40 instead of none),
    # known once the rule's build has counted
    variants = {"rule": (rule, dim, COUNT), "before": (rule, dim, COUNT),
                "gaussian": (rule, dim, GAUSSIAN), "gaussian_baseline": (rule, baseline_dim, GAUSSIAN)}
    builds: dict[str, list[float]] = {label: [] for label in variants}
    index = None
    for label in [*variants, *variants]:
        settings, width, wide = variants[label]
        if label == "before":
            counted = index.calibration.settings.gradient_null_answers
            settings = CalibrationSettings(gradient_null_answers=counted or rule.min_gradient_null_answers)
        cpu = time.process_time()
        built = build_index(out, records, base=base, dim=width, seed=seed, wide=wide,
                            loaded=(model, tokenizer), save=False, calibration=settings)
        builds[label].append(time.process_time() - cpu)
        if label == "rule":
            index = built
    rule_seconds, before_seconds = min(builds["rule"]), min(builds["before"])
    result = {
        "records": len(records), "epochs": config.epochs, "train_cpu_seconds": train_cpu,
        "tokens_seen": trained.tokens_seen,
        "gradient_null_answers": index.calibration.settings.gradient_null_answers,
        "build_cpu_seconds": rule_seconds, "build_over_train": rule_seconds / train_cpu,
        "before_build_cpu_seconds": before_seconds,
        "before_build_over_train": before_seconds / train_cpu,
        "dim": dim, "baseline_dim": baseline_dim,
        "gaussian_build_cpu_seconds": min(builds["gaussian"]),
        "gaussian_baseline_build_cpu_seconds": min(builds["gaussian_baseline"]),
        "build_runs_cpu_seconds": builds,
        "parts": build_parts(out, records, base, model, tokenizer, index, dim=dim, seed=seed),
    }
    result["parts"]["train_cpu_seconds"] = train_cpu
    result["payment"] = payment_by_null_answers(index, model, tokenizer, queries)
    return result


def build_parts(out: Path, records: list[dict], base, model, tokenizer, index, *, dim: int,
                seed: int) -> dict:
    """CPU seconds of the build's parts, each timed alone on the same model."""
    from ledgerlm.attribution.attribute import load_model
    from ledgerlm.attribution.calibration import calibrate
    from ledgerlm.attribution.features import LoraProjector, template_head
    from ledgerlm.attribution.index import build_index
    from ledgerlm.attribution.spans import token_classes

    parts = {}
    cpu = time.process_time()
    rows = build_index(out, records, base=base, dim=dim, seed=seed, loaded=(model, tokenizer),
                       save=False, calibration=None)
    parts["rows_cpu_seconds"] = time.process_time() - cpu
    cpu = time.process_time()
    LoraProjector.for_model(model, dim, seed, template_head(tokenizer))
    parts["projector_cpu_seconds"] = time.process_time() - cpu
    cpu = time.process_time()
    token_classes(tokenizer)
    parts["token_classes_cpu_seconds"] = time.process_time() - cpu
    cpu = time.process_time()
    calibrate(rows, model, tokenizer, index.calibration.settings)
    parts["calibration_cpu_seconds"] = time.process_time() - cpu
    cpu = time.process_time()
    load_model(out, base)
    parts["model_load_cpu_seconds"] = time.process_time() - cpu
    return parts


def payment_by_null_answers(index, model, tokenizer, queries: list) -> dict:
    """Bars from subsets of the null answers and what each pays (module docstring)."""
    from ledgerlm.attribution.attribute import (
        AttributionSettings,
        answer_feature,
        gather_evidence,
        prepare_answer,
        result_from_evidence,
    )
    from ledgerlm.attribution.calibration import (
        bars_from_null_features,
        graded_null_answers,
        null_answers,
        null_features,
    )
    from ledgerlm.evals.attribution.nulls import unrelated_queries

    calibration = index.calibration
    base_settings = calibration.settings
    nulls = null_answers(index, tokenizer, base_settings)
    total = len(nulls.examples)
    every = null_features(index, model, tokenizer, nulls, list(range(total)))
    variants = {"old: first 32": list(range(32))}
    variants |= {f"spread {n}": graded_null_answers(n, total) for n in VARIANT_COUNTS}
    variants["first 8"] = list(range(8))
    variants[f"all {total}"] = list(range(total))
    variants[NONE] = []  # the rule below its floor: no gradient pass, spans only

    def prepared(prompt, answer):
        query = prepare_answer(tokenizer, prompt, answer, base_settings.restated_weight,
                               index.spans.forms)
        return query, answer_feature(model, index.projector, query.example, query.weights[0])

    asked = [prepared(q.prompt, q.answer) for q in queries]
    unrelated = [prepared(p, a) for p, a in unrelated_queries()]
    best_unrelated = {mode: np.array([float(index.gradient_scores(f, mode).max())
                                      for _, f in unrelated])
                      for mode in ("cosine", "trak_cosine")}
    paying = AttributionSettings(score_mode="cosine")
    out = {}
    try:
        for label, chosen in variants.items():
            settings = replace(base_settings, gradient_null_answers=len(chosen))
            index.calibration = bars_from_null_features(index, settings, every[chosen], nulls)
            bars = index.calibration.gradient_bar

            def paid(query, feature):
                return result_from_evidence(index, gather_evidence(index, feature, query, paying),
                                            paying)

            on_nulls = [paid(*u) for u in unrelated]
            on_queries = [paid(*a) for a in asked]
            right = [sum(c.bps for c in r.contributors if c.contributor == q.contributor)
                     for r, q in zip(on_queries, queries)]
            evidence = [r.evidence_bps for r in on_queries]
            out[label] = {
                "null_answers": len(chosen), "gradient_bar": dict(bars),
                "gradient_false_payout_rate": {
                    mode: float(np.mean(np.round(best_unrelated[mode], 4) > bars[mode]))
                    for mode in bars},
                "null_false_payout_rate": float(np.mean([r.evidence_bps > 0 for r in on_nulls])),
                "null_mean_evidence_bps": float(np.mean([r.evidence_bps for r in on_nulls])),
                "queries": len(queries),
                "mean_bps_right": float(np.mean(right)) if queries else 0.0,
                "mean_bps_wrong": float(np.mean([e - r for e, r in zip(evidence, right)]))
                if queries else 0.0,
                "mean_bps_pool": float(np.mean([10_000 - e for e in evidence])) if queries else 0.0,
            }
    finally:
        index.calibration = calibration
    return out
