"""The attribution evaluation: settings chosen on the tuning split, every figure reported on the test split.

For each split a tiny Llama (or SmolLM2) is fine-tuned on that split's planted-facts Datanet
(facts.py) and indexed exactly as a node indexes it (calibrated bars included). Every method
scores every training record for every query: random, BM25, MiniLM, the exact LoRA gradients of
the same adapter (TracIn dot and cosine), the projected index in each score mode, span matching,
and the combined attribution that is paid by. On the tuning split only the linear datamodeling
score (LDS) of each setting is computed (score mode, feature source, K-FAC, per-token answers),
and a setting other than the node's default is chosen only when its LDS beats the default's by
two standard errors of their paired per-query difference (metrics.beats), then the
smallest row count a span may occur in and still count as rare (`min_span_rows`) by contributor
precision@1 of the paid attribution; on the test split we report fact tracing (precision@1, MRR), what would be paid (to the right
contributor, to wrong ones, to the data pool), the false-payout rate on unrelated prompts
(`null_false_payout_rate`), contradicted answers, LDS per method, and cost.

The tiny model's tokenizer and pre-training see only facts about *other* people (both splits'
templates, other names): never the evaluation records.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ledgerlm.attribution.attribute import (
    AttributionResult,
    AttributionSettings,
    gather_evidence,
    greedy_answer,
    match_scores,
    prepare_answer,
    result_from_evidence,
)
from ledgerlm.attribution.calibration import PAYING_MODES, CalibrationSettings, calibrate
from ledgerlm.attribution.collect import FEATURE_EPOCHS, FEATURE_LAST_BLOCKS, TrainingFeatures
from ledgerlm.attribution.features import (
    COUNT,
    DEFAULT_DIM,
    GAUSSIAN,
    LoraProjector,
    answer_feature,
    answer_token_features,
    example_features,
    record_examples,
    template_head,
)
from ledgerlm.attribution.index import (
    SCORE_MODES,
    AttributionIndex,
    build_index,
    damped_inverse_covariance,
)
from ledgerlm.evals.attribution.baselines import (
    bm25_scores,
    cosine_rows,
    embedding_scores,
    exact_projector,
    exact_row_gradients,
    record_text,
)
from ledgerlm.evals.attribution.facts import (
    QUERY_KINDS,
    FactTracingSet,
    TracingQuery,
    make_fact_tracing_set,
)
from ledgerlm.evals.attribution.metrics import (
    beats,
    choose,
    lds,
    rank_metrics,
    retraining_noise,
)
from ledgerlm.evals.attribution.nulls import unrelated_queries
from ledgerlm.evals.attribution.variants import (
    KFAC,
    TOKEN_MEAN,
    lora_state,
    variant_context,
    variant_row_scores,
)

Say = Callable[[str], None]
GROUND_TRUTH = "responsible records (ground truth)"
_WORDS = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class EvalConfig:
    """Sizes of one evaluation run; the defaults finish in minutes on a 2-core CPU."""

    model: str = "tiny"                # "tiny" (random Llama built in-process) or "smollm2"
    entities: int = 24
    seed: int = 0
    pretrain_steps: int = 300
    # LoRA rank, rate and examples per step: None takes the tiny model's (8, 1e-2, 4) or, for
    # SmolLM2, ModelFactory's rate and step (at the tiny model's rate SmolLM2's fine-tune
    # collapsed: its greedy answer to every question was empty) at rank 8, not the node's 16:
    # the exact-gradient references at rank 16 outgrew 24 GiB of memory
    rank: int | None = None
    epochs: int = 15
    lr: float | None = None
    max_len: int = 128
    batch_size: int | None = None
    dim: int = DEFAULT_DIM
    damping: float = 0.1
    lds_entities: int = 8
    lds_subsets: int = 12
    lds_queries: int = 24
    # models trained per subset (other seeds: data order and LoRA init); their answer losses are
    # averaged, so that the LDS measures the subset's effect and not one run's noise
    lds_seeds: int = 1
    # False skips the tuning split's retrains (a model too slow to retrain twice): the score mode,
    # feature source and K-FAC keep their defaults, and only the test split's LDS is measured
    tuning_lds: bool = True
    # False leaves the variants.py scores (K-FAC/EK-FAC on exact gradients, per-token losses,
    # checkpoint ensembles) out of the LDS: on SmolLM2 their exact-gradient factors outgrew
    # 24 GiB beside the retrains. The projected index and the exact-gradient references stay.
    lds_variants: bool = True
    # extra projection widths scored in the LDS ("grad:cosine (dim N)"), beside the index's `dim`:
    # how much of the exact LoRA gradients' LDS a wider projection keeps
    lds_dims: tuple[int, ...] = ()
    # also score the index's width and every `lds_dims` with the wide sides projected by dense
    # Gaussian matrices ("grad:cosine (dim N, Gaussian)"), the projection before the count sketch
    lds_gaussian: bool = False
    scale_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    feature_source: str | None = None  # one of FEATURE_SOURCES; None: chosen on the tuning split
    kfac: bool | None = None  # K-FAC-whitened index projection; None: chosen on the tuning split
    # answers scored by their tokens' unit gradients (index.per_token_query); None: chosen on the
    # tuning split, where the per-token variant's LDS must beat the chosen projection's
    per_token_query: bool | None = None
    models_dir: str | None = None
    work_dir: str | None = None


@dataclass
class EvalReport:
    config: dict
    tuning: dict          # LDS per score mode on the tuning split and the mode chosen
    test: dict            # every reported figure, test split only
    cost: dict
    embedding_model: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------ models


def _base_model(config: EvalConfig, work: Path, say: Say):
    """SmolLM2, or a tiny Llama whose tokenizer and pre-training see only facts about other people."""
    from ledgerlm.factory import pull_smollm2, register_local, tiny_random_model
    from ledgerlm.factory.basemodels import describe_model_dir

    if config.model == "smollm2":
        return pull_smollm2(Path(config.models_dir or Path.home() / ".ledgerlm" / "models"))
    corpus = pretraining_corpus(config)
    path = tiny_random_model(work / "tiny-llama", [record_text(r) for r in corpus],
                             hidden_size=128, layers=2, heads=4, vocab_size=768, seed=config.seed)
    say(f"pre-training the tiny base on {len(corpus)} records about other people")
    _pretrain(path, corpus, config)
    # named by its weights: a rerun in the same folder with other settings pre-trains other weights, which the
    # catalogue refuses under a name it holds
    digest = describe_model_dir(path, "tiny-eval", "local").sha256[:12]
    return register_local(work / "models", f"tiny-eval-{digest}", path)


def pretraining_corpus(config: EvalConfig) -> list[dict]:
    """Facts about other people in both splits' templates: what the tiny base and its tokenizer see.

    Another seed gives other names and towns, and any record that happens to name a person or
    town of an evaluated Datanet is dropped; the stylist's format is left out, so fine-tuning
    must teach it.
    """
    evaluated = set()
    for split in ("tuning", "test"):
        for n, seed in ((config.entities, config.seed), (config.lds_entities, config.seed + 1)):
            data = make_fact_tracing_set(split, n, seed)
            evaluated |= {w for name in data.people + data.towns for w in name.split()}
    corpus = []
    for split in ("tuning", "test"):
        other = make_fact_tracing_set(split, max(config.entities, 24), config.seed + 1000)
        for r in other.records:
            text = f"{r['question']} {r['answer']}"
            if other.roles[r["_contributor"]] == "stylist" or evaluated & set(_WORDS.findall(text)):
                continue
            corpus.append({k: v for k, v in r.items() if not k.startswith("_")})
    return corpus


def _pretrain(path: Path, records: list[dict], config: EvalConfig) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from ledgerlm.factory import (
        build_training_data,
        collate,
        describe_model_dir,
        load_tokenizer,
        token_losses,
    )

    tokenizer = load_tokenizer(describe_model_dir(path, "tiny", "local"))
    blocks = build_training_data(records, tokenizer, config.max_len, eval_split=0.0).train_blocks
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pick = torch.Generator().manual_seed(config.seed)
    for _ in range(config.pretrain_steps):
        chosen = torch.randint(len(blocks), (8,), generator=pick).tolist()
        token_losses(model, collate([blocks[i] for i in chosen])).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.save_pretrained(path, safe_serialization=True)


def _train_config(config: EvalConfig):
    from ledgerlm.factory import TrainConfig

    factory = TrainConfig()
    tiny = config.model != "smollm2"
    rank = config.rank or 8
    return TrainConfig(rank=rank, alpha=2.0 * rank, dropout=0.0, epochs=config.epochs,
                       lr=config.lr or (1e-2 if tiny else factory.lr),
                       batch_size=config.batch_size or (4 if tiny else factory.batch_size),
                       max_len=config.max_len, eval_split=0.0, warmup=0.0, seed=config.seed)


@dataclass(frozen=True)
class FeatureSource:
    """Where the training rows' gradient features come from.

    `epochs` > 0 sums the training passes of the last that many epochs (TracIn's checkpoints; the
    sum over several is its checkpoint ensemble); 0 is a pass over the final adapter after
    training (TRAK, LoGra), whose backward `last_blocks` > 0 cuts to that many last blocks.
    """

    epochs: int = 0
    last_blocks: int = 0


FEATURE_SOURCES = {"final adapter": FeatureSource(),
                   "final adapter, last block": FeatureSource(last_blocks=1),
                   "last epoch": FeatureSource(epochs=1),
                   "last 3 epochs": FeatureSource(epochs=3)}
# What a node does (ledgerlm.attribution.collect), and what ties on the tuning split go to.
DEFAULT_SOURCE = next(name for name, spec in FEATURE_SOURCES.items()
                      if spec == FeatureSource(FEATURE_EPOCHS, FEATURE_LAST_BLOCKS))


@dataclass
class Trained:
    """A fine-tuned model on one Datanet with its calibrated index and exact gradients."""

    model: object
    tokenizer: object
    index: AttributionIndex
    exact: LoraProjector        # identity projection: unprojected LoRA gradients
    exact_rows: np.ndarray      # (rows, full LoRA dim)
    exact_head: LoraProjector   # the same, leaving out the template head as the index does
    exact_head_rows: np.ndarray
    train_seconds: float
    exact_seconds: float
    collected: TrainingFeatures | None = None
    hook_seconds: float = 0.0   # spent inside training projecting the collected features
    records: list[dict] = field(default_factory=list)
    checkpoints: dict[int, dict] = field(default_factory=dict)  # epoch -> LoRA weights at its end


def _fine_tune(config: EvalConfig, base, tokenizer, records: list[dict], out: Path,
               calibration: CalibrationSettings = CalibrationSettings(),
               source: str = DEFAULT_SOURCE, kfac: bool = False,
               per_token: bool = False) -> Trained:
    from ledgerlm.factory import train

    # Every epoch is collected so that checkpoint ensembles (variants.py) can use any of them.
    collector = TrainingFeatures(config.epochs, last_epochs=config.epochs,
                                 dim=config.dim, seed=config.seed, head=template_head(tokenizer))
    checkpoints: dict[int, dict] = {}

    def on_batch_end(end) -> None:
        collector.on_batch_end(end)
        checkpoints[end.epoch] = lora_state(end.model)  # the last batch of the epoch stays

    trained = train(base, records, _train_config(config), out, on_batch_end=on_batch_end,
                    capture_batch=collector.capture_batch)
    spec = FEATURE_SOURCES[source]
    chosen = collector.restricted(spec.epochs)
    index = build_index(out, records, base=base, dim=config.dim, damping=config.damping,
                        calibration=calibration, features=chosen,
                        loaded=(trained.model, tokenizer),
                        # K-FAC was measured on every block's weights (variants.KFAC)
                        last_blocks=0 if kfac else spec.last_blocks, kfac=kfac,
                        per_token_query=per_token)
    index.tokenizer = tokenizer
    rows = [e.record for e in index.examples]
    t0 = time.perf_counter()
    exact = exact_projector(trained.model)
    exact_rows = exact_row_gradients(trained.model, tokenizer, records, rows, exact,
                                     max_len=config.max_len)
    exact_head = exact_projector(trained.model, index.projector.head)
    exact_head_rows = exact_row_gradients(trained.model, tokenizer, records, rows, exact_head,
                                          max_len=config.max_len)
    # what collecting only the chosen epochs would have added (a K-FAC index uses none of them)
    hooks = 0.0 if kfac else chosen.seconds
    return Trained(trained.model, tokenizer, index, exact, exact_rows, exact_head, exact_head_rows,
                   trained.train_seconds - collector.seconds, time.perf_counter() - t0,
                   collector, hooks, records, checkpoints)


def source_variants(t: Trained, config: EvalConfig) -> dict[str, AttributionIndex]:
    """The index rebuilt with each feature source (same model and calibration; a last-blocks
    source has its own projector, so its queries need features of their own: `variant_scores`).
    Each variant's `config.build_seconds` is the CPU time its features took."""
    rows = [e.record for e in t.index.examples]
    variants = {}
    for name, spec in FEATURE_SOURCES.items():
        projector, cpu = t.index.projector, time.process_time()
        if spec.epochs:
            kept = t.collected.last(spec.epochs)
            features = np.stack([kept[r] for r in rows]).astype(np.float32)
            projector = t.collected.projector
            cpu -= t.collected.restricted(spec.epochs).cpu_seconds  # spent inside training
        else:
            if spec.last_blocks != projector.last_blocks:
                projector = LoraProjector.for_model(t.model, config.dim, config.seed, projector.head,
                                                    spec.last_blocks)
            features = final_features(t, config, projector).astype(np.float32)
        variants[name] = replace(t.index, features=features, norms={}, projector=projector,
                                 config=replace(t.index.config,
                                                build_seconds=time.process_time() - cpu),
                                 preconditioner=damped_inverse_covariance(features, config.damping))
    return variants


def final_features(t: Trained, config: EvalConfig, projector: LoraProjector) -> np.ndarray:
    """(rows, projector.dim) features of the index's rows from a pass over the final adapter."""
    rows = [e.record for e in t.index.examples]
    found = example_features(t.model, record_examples(t.records, rows, t.tokenizer, config.max_len),
                             projector, max_len=config.max_len, pad_id=t.tokenizer.pad_token_id or 0)
    return np.stack([found[r] for r in rows])


def projected_scores(t: Trained, config: EvalConfig, queries: list, dim: int,
                     wide: str = COUNT, seconds: dict | None = None) -> np.ndarray:
    """(queries, rows) cosines of the final adapter's gradients projected to `dim` numbers (the
    index's projection at another width, or with other `wide` sides; the template head left out
    as the index does). `seconds` gets the CPU seconds of the rows' pass, keyed "<dim> <wide>"."""
    projector = LoraProjector.for_model(t.model, dim, config.seed, t.index.projector.head,
                                        wide=wide)
    cpu = time.process_time()
    features = final_features(t, config, projector)
    if seconds is not None:
        seconds[f"{dim} {wide}"] = time.process_time() - cpu
    weight = t.index.calibration.settings.restated_weight
    out = []
    for q in queries:
        prepared = prepare_answer(t.tokenizer, q.prompt, q.answer, weight)
        out.append(cosine_rows(features, answer_feature(t.model, projector, prepared.example,
                                                        prepared.weights[0])))
    return np.stack(out)


def variant_scores(t: Trained, variant: AttributionIndex, queries: list, signals: list,
                   mode: str) -> np.ndarray:
    """(queries, rows) scores of a `source_variants` index, with query features of its projector."""
    out = []
    for q, s in zip(queries, signals):
        feature = s.feature
        if variant.projector is not t.index.projector:
            prepared = prepare_answer(t.tokenizer, q.prompt, q.answer,
                                      t.index.calibration.settings.restated_weight)
            feature = answer_feature(t.model, variant.projector, prepared.example,
                                     prepared.weights[0],
                                     per_token=t.index.config.per_token_query)
        out.append(variant.gradient_scores(feature, mode))
    return np.stack(out)


# ------------------------------------------------------------------------------ signals


@dataclass
class QuerySignals:
    """Every method's score of every indexed row for one query, and what each paying mode pays."""

    scores: dict[str, np.ndarray]
    paid: dict[str, AttributionResult]
    seconds_feature: float
    seconds_attribution: float
    feature: np.ndarray | None = None
    seconds_match: float = 0.0  # the answer's token gradients (attribution rule 19's order)


EXACT_HEAD = "exact grad cosine (head left out)"


def query_signals(t: Trained, prompt: str, answer: str, *, exact: bool = True) -> QuerySignals:
    index = t.index
    t0 = time.perf_counter()
    prepared = prepare_answer(t.tokenizer, prompt, answer,
                              index.calibration.settings.restated_weight, index.spans.forms)
    feature = answer_feature(t.model, index.projector, prepared.example, prepared.weights[0],
                             per_token=index.config.per_token_query)
    t1 = time.perf_counter()
    # each answer token's gradient, for the token match that orders rows without evidence
    grads = answer_token_features(t.model, index.projector, prepared.example,
                                  AttributionSettings().match_tokens)
    t_match = time.perf_counter()
    scores = {f"grad:{m}": index.gradient_scores(feature, m) for m in SCORE_MODES}
    paid = {}
    for mode in PAYING_MODES:
        settings = AttributionSettings(score_mode=mode)
        match = match_scores(index, grads, prepared.weights[0], mode)
        evidence = gather_evidence(index, feature, prepared, settings, match)
        paid[mode] = result_from_evidence(index, evidence, settings)
        combined = np.zeros(len(index))
        combined[evidence.rows] = evidence.combined
        # what the receipt lists: rows with evidence, then rows holding a rare span of the
        # answer (attribution rule 9), then by their contributor's token match (rule 19), each
        # group in gradient order
        scores[f"combined:{mode}"] = _candidates_first(
            combined, scores[f"grad:{mode}"], evidence.rows[evidence.holds_span],
            match[index.owner_codes()])
        # The same evidence, and the gradient's positive influence for what evidence leaves
        # unexplained: a datamodel-style score (LDS sums it over kept rows), not a ranking.
        scores[f"combined:{mode} + gradient"] = combined + (1.0 - min(1.0, combined.sum())) * \
            np.clip(scores[f"grad:{mode}"], 0.0, None)
        # the order receipts listed before rule 9
        scores[f"combined:{mode} {GRADIENT_ONLY}"] = _with_gradient_order(
            combined, scores[f"grad:{mode}"])
        if mode == PAYING_MODES[0]:
            span = np.zeros(len(index))
            span[evidence.rows] = evidence.span
            scores["span"] = span
    t2 = time.perf_counter()
    if exact:
        q = answer_feature(t.model, t.exact, prepared.example, prepared.weights[0])
        scores["tracin (exact grad dot)"] = t.exact_rows @ q
        scores["exact grad cosine"] = cosine_rows(t.exact_rows, q)
        q = answer_feature(t.model, t.exact_head, prepared.example, prepared.weights[0])
        scores[EXACT_HEAD] = cosine_rows(t.exact_head_rows, q)
    return QuerySignals(scores, paid, t1 - t0, t2 - t0, feature, t_match - t1)


# The order receipts listed rows without evidence in before attribution rule 9: the gradient's.
GRADIENT_ONLY = "(evidence, then gradient only)"


def _candidates_first(combined: np.ndarray, gradient: np.ndarray, candidates: np.ndarray,
                      match: np.ndarray | None = None) -> np.ndarray:
    """Rows with evidence first; then rows an ambiguous rare span could be about, in gradient
    order; then the rest by `match` (their contributor's token match), then in gradient order."""
    order = gradient
    if match is not None:
        held = np.zeros(len(gradient), dtype=bool)
        held[candidates] = True
        by_gradient = np.argsort(np.argsort(gradient, kind="stable"), kind="stable")
        by_match = np.lexsort((gradient, match)).argsort(kind="stable")
        order = np.where(held, by_gradient, by_match).astype(np.float64)
    ranked = _with_gradient_order(combined, order)
    boost = np.zeros(len(gradient))
    boost[candidates] = 5e2
    return np.where(combined > 0, ranked, ranked + boost)


def _with_gradient_order(combined: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Rows with evidence first (by evidence), then the rest in gradient order."""
    ranks = np.argsort(np.argsort(gradient, kind="stable"), kind="stable")
    return np.where(combined > 0, combined + 1e3, 0.0) + (ranks + 1) / (len(ranks) + 2)


def gradient_variants(t: Trained, config: EvalConfig, queries: list[tuple[str, str]], *,
                      ensembles: bool = True) -> dict[str, np.ndarray]:
    """(queries, rows) scores of every variant in variants.py for (prompt, answer) pairs."""
    ctx = variant_context(t, config.damping, config.max_len)
    weight = t.index.calibration.settings.restated_weight
    found = [variant_row_scores(t, ctx, prepare_answer(t.tokenizer, p, a, weight),
                                ensembles=ensembles)
             for p, a in queries]
    return {name: np.stack([f[name] for f in found]) for name in found[0]}


# ------------------------------------------------------------------------------ LDS


def split_lds(config: EvalConfig, base, tokenizer, split: str, work: Path, say: Say,
              source: str | None = None, kfac: bool = False, per_token: bool = False) -> dict:
    """LDS of every method on a small Datanet of `split`: retrains on random halves."""
    if config.lds_subsets < 2:
        return {"methods": {}, "subsets": config.lds_subsets, "queries": 0, "records": 0}
    data = make_fact_tracing_set(split, config.lds_entities, config.seed + 1)
    queries = [q for q in data.queries if q.kind in ("short", "paraphrase", "indirect")]
    return datanet_lds(config, base, tokenizer, data.records, queries[: config.lds_queries],
                       work, split, say, source, kfac=kfac, per_token=per_token)


def datanet_lds(config: EvalConfig, base, tokenizer, records: list[dict], queries: list,
                work: Path, label: str, say: Say, source: str | None = None,
                trained: Trained | None = None, kfac: bool = False,
                per_token: bool = False) -> dict:
    """LDS of every method on `records`: the full model's scores against retrains on random
    halves, over `queries` (anything with `prompt` and `answer`). `trained`: the full model
    when the caller already fine-tuned it. With `kfac`, the paid methods are also scored on the
    same model's index built with a K-FAC-whitened projection ("(K-FAC index)"). `per_token`:
    the full model's index scores answers by their tokens' unit gradients."""
    import torch

    from ledgerlm.attribution.features import answer_example
    from ledgerlm.factory import collate, example_losses, pack_examples, train

    t = trained or _fine_tune(config, base, tokenizer, records, work / f"lds-{label}-full",
                              source=source or DEFAULT_SOURCE, per_token=per_token)
    rows = [e.record for e in t.index.examples]
    signals = [query_signals(t, q.prompt, q.answer) for q in queries]
    methods = {name: np.stack([s.scores[name] for s in signals]) for name in signals[0].scores}
    for source, variant in source_variants(t, config).items():
        for mode in PAYING_MODES:
            methods[f"grad:{mode} ({source})"] = variant_scores(t, variant, queries, signals, mode)
    if config.lds_variants:
        methods.update(gradient_variants(t, config, [(q.prompt, q.answer) for q in queries]))
    pass_seconds: dict[str, float] = {}
    # beside the Gaussian baseline the index's own width runs again: the same features as the
    # index's, but from a pass timed alone like the baseline's
    widths = (config.dim, *config.lds_dims) if config.lds_gaussian else config.lds_dims
    for dim in widths:
        methods[f"grad:cosine (dim {dim})"] = projected_scores(t, config, queries, dim,
                                                               seconds=pass_seconds)
        if config.lds_gaussian:
            methods[f"grad:cosine (dim {dim}, Gaussian)"] = projected_scores(
                t, config, queries, dim, GAUSSIAN, pass_seconds)
    if kfac:
        twin = replace(t, index=build_index(
            (t.model, t.tokenizer), records, train_indices=rows, dim=config.dim,
            damping=config.damping, max_len=config.max_len, seed=config.seed,
            calibration=t.index.calibration.settings, kfac=True))
        twin.index.tokenizer = t.tokenizer
        for s in [query_signals(twin, q.prompt, q.answer, exact=False) for q in queries]:
            for name, value in s.scores.items():
                methods.setdefault(f"{name} (K-FAC index)", []).append(value)
        methods = {k: np.stack(v) if isinstance(v, list) else v for k, v in methods.items()}
        del twin
    methods["bm25"] = bm25_scores([records[r] for r in rows],
                                  [f"{q.prompt} {q.answer}" for q in queries])
    methods["random"] = np.random.default_rng(config.seed).random((len(queries), len(rows)))
    # the full model and its exact gradients are not needed by the retrains: free them first
    del t, trained, signals
    gc.collect()
    rng = np.random.default_rng(config.seed)
    examples = [replace(answer_example(tokenizer, q.prompt, q.answer), index=i)
                for i, q in enumerate(queries)]
    batch = collate(pack_examples(examples, max(len(e.input_ids) for e in examples), 0))
    masks, losses, by_seed = [], [], []
    for j in range(config.lds_subsets):
        keep = np.zeros(len(rows), dtype=bool)
        keep[rng.choice(len(rows), len(rows) // 2, replace=False)] = True
        subset = [records[r] for r, k in zip(rows, keep) if k]
        runs = []
        for s in range(config.lds_seeds):
            say(f"  {label} LDS retrain {j + 1}/{config.lds_subsets}"
                + (f" seed {s + 1}/{config.lds_seeds}" if config.lds_seeds > 1 else "")
                + f" on {len(subset)} records")
            settings = replace(_train_config(config), seed=config.seed + s)
            sub = train(base, subset, settings, work / f"lds-{label}-{j}-{s}").model
            with torch.no_grad():
                ids, per_example = example_losses(sub, batch)
            runs.append(per_example.numpy()[np.argsort(ids.numpy())])
            del sub
        masks.append(keep)
        losses.append(np.mean(runs, axis=0))
        by_seed.append(runs)
    masks_arr, losses_arr = np.stack(masks), np.stack(losses)
    # not a method: the records each query names as responsible, scored 1 (the planted facts'
    # ground truth): what one record per answer explains of the retrains, beside retraining noise;
    # a method that also credits what the answer draws on (the person's other records) can pass it
    if all(hasattr(q, "records") for q in queries):
        truth = np.zeros((len(queries), len(rows)))
        for i, q in enumerate(queries):
            truth[i, np.isin(rows, q.records)] = 1.0
        methods[GROUND_TRUTH] = truth
    result = {"methods": {name: lds(s, masks_arr, losses_arr) for name, s in methods.items()},
              "subsets": config.lds_subsets, "seeds": config.lds_seeds, "queries": len(queries),
              "records": len(rows), "fraction": 0.5, "rows_pass_cpu_seconds": pass_seconds}
    if config.lds_seeds > 1 and config.lds_subsets > 2:
        # what retraining noise alone leaves of any method's LDS on these retrains
        result["noise"] = retraining_noise(np.stack(by_seed))
    return result


# ------------------------------------------------------------------------------ tuning split


def variant_choice(tuning_lds: dict, test_lds: dict) -> dict:
    """Tuning- and test-split LDS of every gradient method, and the projected one (what an index
    can store: "grad:...") with the best tuning LDS; exact-gradient rows are references."""
    names = [n for n in tuning_lds["methods"]
             if n.startswith(("grad:", "exact grad", "tracin")) and n in test_lds["methods"]]
    if not names:
        return {"methods": {}, "chosen": None}
    lds_of = {n: {"tuning": tuning_lds["methods"][n]["mean"], "test": test_lds["methods"][n]["mean"],
                  "test_sem": test_lds["methods"][n]["sem"]} for n in names}
    projected = [n for n in names if n.startswith("grad:")]
    chosen = max(projected, key=lambda n: (np.nan_to_num(lds_of[n]["tuning"], nan=-1.0), -len(n)))
    return {"methods": lds_of, "chosen": chosen}


SPAN_ROW_CHOICES = (2, 4, 8)


def tune_span_rows(config: EvalConfig, base, tokenizer, mode: str, source: str, work: Path,
                   say: Say, kfac: bool = False, per_token: bool = False) -> dict:
    """What the paid attribution pays the right contributor less what it pays wrong ones, and its
    contributor precision@1, for each `min_span_rows` on the tuning split; the most net pay wins."""
    data = make_fact_tracing_set("tuning", config.entities, config.seed)
    say(f"tuning split: fine-tuning on {len(data.records)} records")
    t = _fine_tune(config, base, tokenizer, data.records, work / "tuning-model", source=source,
                   kfac=kfac, per_token=per_token)
    rows = [e.record for e in t.index.examples]
    owners = [e.contributor for e in t.index.examples]
    p1, by_ranking, net = {}, {}, {}
    kinds = {kind: [i for i, q in enumerate(data.queries) if kind in ("all", q.kind)]
             for kind in ("all", "indirect")}
    for choice in SPAN_ROW_CHOICES:
        settings = replace(CalibrationSettings(), min_span_rows=choice)
        t.index.calibration = calibrate(t.index, t.model, tokenizer, settings)
        found = [query_signals(t, q.prompt, q.answer, exact=False) for q in data.queries]
        signals = [f.scores for f in found]
        paid = _payment([f.paid[mode] for f in found], data.queries)
        net[choice] = paid["mean_bps_right"] - paid["mean_bps_wrong"]
        by_ranking[choice] = {}
        for ranking, name in (("evidence, then span candidates, then gradient", f"combined:{mode}"),
                              ("evidence, then gradient", f"combined:{mode} {GRADIENT_ONLY}")):
            scores = np.stack([s[name] for s in signals])
            by_ranking[choice][ranking] = {
                kind: rank_metrics(scores[idx], [data.queries[i] for i in idx], rows,
                                   owners).contributor_p1 for kind, idx in kinds.items()}
        p1[choice] = by_ranking[choice]["evidence, then span candidates, then gradient"]["all"]
    # by what it pays: precision@1 counts a row paid 1 bps first as right as one paid in full
    # (on SmolLM2's tuning split 8 rows ranked one more question right than 4 while paying the
    # indirect questions' right records almost nothing); ties: precision@1, the stricter bar
    chosen = max(SPAN_ROW_CHOICES, key=lambda c: (round(net[c]), p1[c], -c))
    t.index.calibration = calibrate(t.index, t.model, tokenizer,
                                    replace(CalibrationSettings(), min_span_rows=chosen))
    return {"contributor_p1_by_min_span_rows": p1, "net_bps_by_min_span_rows": net,
            "chosen_min_span_rows": chosen,
            "contributor_p1_by_ranking": by_ranking[chosen],
            "payment_by_candidates": candidate_payment(t, data, mode)}


def candidate_payment(t: Trained, data: FactTracingSet, mode: str) -> dict:
    """What is paid with span candidates earning (the index's candidate bar) and without."""
    calibration = t.index.calibration
    out = {"candidate_bar": calibration.candidate(mode)}
    try:
        for label, bars in (("without", {}), ("with", calibration.candidate_bar)):
            t.index.calibration = replace(calibration, candidate_bar=bars)
            paid = [query_signals(t, q.prompt, q.answer, exact=False).paid[mode]
                    for q in data.queries]
            out[label] = what_is_paid(t, data, mode, paid)
    finally:
        t.index.calibration = calibration
    return out


# ------------------------------------------------------------------------------ test split


def tracing_and_payment(config: EvalConfig, t: Trained, data: FactTracingSet, mode: str,
                        say: Say) -> tuple[dict, dict, str]:
    """Fact tracing per kind and method, and what the chosen mode pays, on the test split."""
    index = t.index
    rows_records = [e.record for e in index.examples]
    rows_contributors = [e.contributor for e in index.examples]
    indexed = [data.records[r] for r in rows_records]
    say(f"attributing {len(data.queries)} test queries")
    signals = [query_signals(t, q.prompt, q.answer) for q in data.queries]
    texts = [f"{q.prompt} {q.answer}" for q in data.queries]
    embedded, embedding_name = embedding_scores(indexed, texts)
    methods = {
        "random": np.random.default_rng(config.seed).random((len(data.queries), len(index))),
        "bm25": bm25_scores(indexed, texts),
        "minilm" if embedding_name == "minilm" else "tfidf": embedded,
        **{name: np.stack([s.scores[name] for s in signals]) for name in signals[0].scores},
        # checkpoint ensembles (a pass per checkpoint and query) are scored by LDS only
        **gradient_variants(t, config, [(q.prompt, q.answer) for q in data.queries],
                            ensembles=False),
    }
    tracing = tracing_by_kind(methods, data.queries, rows_records, rows_contributors)
    payment = what_is_paid(t, data, mode, [s.paid[mode] for s in signals])
    say("attributing the model's own answers")
    payment["own_answers"] = own_answers(t, data, mode)
    payment["own_null"] = own_null_answers(t, data, mode)
    latency = {"feature_ms": 1e3 * float(np.median([s.seconds_feature for s in signals])),
               "attribution_ms": 1e3 * float(np.median([s.seconds_attribution for s in signals])),
               "match_ms": 1e3 * float(np.median([s.seconds_match for s in signals]))}
    return {"tracing": tracing, "payment": payment, "latency": latency}, methods, embedding_name


def tracing_by_kind(methods: dict[str, np.ndarray], queries: list[TracingQuery], rows_records: list[int],
                    rows_contributors: list[str]) -> dict:
    """Per query kind (and "all"), each method's precision@1 and MRR of the responsible record and
    contributor, from its (queries, rows) scores."""
    tracing = {}
    for kind in ("all",) + QUERY_KINDS:
        chosen = [i for i, q in enumerate(queries) if kind in ("all", q.kind)]
        qs = [queries[i] for i in chosen]
        tracing[kind] = {name: asdict(rank_metrics(s[chosen], qs, rows_records, rows_contributors))
                         for name, s in methods.items()}
    return tracing


def what_is_paid(t: Trained, data: FactTracingSet, mode: str,
                 paid: list[AttributionResult]) -> dict:
    """What `paid` (one result per query of `data`) pays per kind, and what unrelated prompts and
    contradicted answers are paid."""
    payment = {kind: _payment([paid[i] for i, q in enumerate(data.queries)
                               if kind in ("all", q.kind)],
                              [q for q in data.queries if kind in ("all", q.kind)])
               for kind in ("all",) + QUERY_KINDS}
    nulls = [query_signals(t, p, a, exact=False).paid[mode] for p, a in unrelated_queries()]
    payment["null"] = {"queries": len(nulls),
                       "null_false_payout_rate": float(np.mean([r.evidence_bps > 0 for r in nulls])),
                       "mean_evidence_bps": float(np.mean([r.evidence_bps for r in nulls]))}
    contradicted = [query_signals(t, q.prompt, q.answer, exact=False).paid[mode]
                    for q in data.contradicted]
    supported = [r for r, q in zip(paid, data.queries) if q.kind == "paraphrase"]

    payment["contradicted"] = {
        "queries": len(contradicted),
        "bps_to_contradicted_record": bps_to_records(contradicted, data.contradicted,
                                                     data.records),
        "bps_to_record_when_supported": bps_to_records(
            supported, [q for q in data.queries if q.kind == "paraphrase"], data.records),
        "mean_evidence_bps": float(np.mean([r.evidence_bps for r in contradicted])),
    }
    return payment


def bps_to_records(results: list[AttributionResult], queries: list[TracingQuery],
                   records: list[dict]) -> float:
    """Mean bps each result pays the records its query names (`TracingQuery.records`)."""
    ids = [{records[r]["_contribution_id"] for r in q.records} for q in queries]
    return float(np.mean([sum(c.bps for c in res.contributions if c.contribution_id in want)
                          for res, want in zip(results, ids)]))


def own_answers(t: Trained, data: FactTracingSet, mode: str, max_new_tokens: int = 32) -> dict:
    """What the model's own greedy answers to the split's fact questions are paid, as serving
    would pay them, apart for answers that name the planted town and answers that do not."""
    found, empty = [], 0
    for q in (q for q in data.queries if q.kind in ("paraphrase", "short", "indirect")):
        town = _planted_town(data, q)
        answer = greedy_answer(t.model, t.tokenizer, q.prompt, max_new_tokens)
        if not answer.strip():  # nothing to attribute: a node answers it, and pays no one for it
            empty += 1
            continue
        right = re.search(rf"\b{re.escape(town)}\b", answer) is not None
        found.append((q, answer, right, query_signals(t, q.prompt, answer, exact=False).paid[mode]))
    out = {"queries": len(found) + empty, "empty": empty,
           "names_the_town": float(np.mean([r for _, _, r, _ in found] + [False] * empty))}
    for label, keep in (("names_the_town", True), ("does_not", False)):
        chosen = [(q, paid) for q, _a, right, paid in found if right == keep]
        out[label + "_payment"] = (_payment([p for _, p in chosen], [q for q, _ in chosen])
                                   if chosen else {"queries": 0})
    out["examples"] = [{"kind": q.kind, "prompt": q.prompt, "answer": a, "names_the_town": r,
                        "evidence_bps": paid.evidence_bps,
                        "contributors": {c.contributor: c.bps for c in paid.contributors},
                        "right_contributor": q.contributor}
                       for q, a, r, paid in found]
    return out


def own_null_answers(t: Trained, data: FactTracingSet, mode: str, max_new_tokens: int = 48) -> dict:
    """What the model's own greedy answers to the unrelated prompts are paid, as serving would pay
    them: a model fine-tuned on a Datanet may answer "What is 12 plus 30?" in its records' style,
    or wrongly, and such answers are not the shipped null answers the bars were calibrated on.

    An answer that repeats what only the Datanet holds (an invented town or name, the stylist's
    " !!") was shaped by it, and paying for it is attribution doing its job; the rate that counts
    as false payouts is over the answers that borrow nothing (both are reported).
    """
    found, empty = [], 0
    for prompt, _answer in unrelated_queries():
        answer = greedy_answer(t.model, t.tokenizer, prompt, max_new_tokens)
        if not answer.strip():
            empty += 1
            continue
        found.append((prompt, answer, borrowed_from_datanet(data, answer),
                      query_signals(t, prompt, answer, exact=False).paid[mode]))

    def rate(rows) -> float:
        return float(np.mean([p.evidence_bps > 0 for *_, p in rows])) if rows else 0.0

    clean = [row for row in found if not row[2]]
    return {"queries": len(found) + empty, "empty": empty, "borrowing": len(found) - len(clean),
            "null_false_payout_rate": rate(clean),
            "payout_rate_all_answers": rate(found),
            "payout_rate_borrowing": rate([row for row in found if row[2]]),
            "mean_evidence_bps": float(np.mean([p.evidence_bps for *_, p in found]))
            if found else 0.0,
            "examples": [{"prompt": prompt, "answer": answer, "borrows": borrows,
                          "evidence_bps": paid.evidence_bps,
                          "contributors": {c.contributor: c.bps for c in paid.contributors}}
                         for prompt, answer, borrows, paid in found]}


def borrowed_from_datanet(data: FactTracingSet, answer: str) -> list[str]:
    """What only the Datanet holds that `answer` repeats: its invented towns and name parts, and
    the stylist's " !!"."""
    words = {*data.towns, *(part for person in data.people for part in person.split())}
    found = sorted(w for w in words if re.search(rf"\b{re.escape(w)}\b", answer, re.IGNORECASE))
    return found + (["!!"] if "!!" in answer else [])


def _planted_town(data: FactTracingSet, q: TracingQuery) -> str:
    """The town the query's record plants (its last town name, as every birthplace wording ends)."""
    text = data.records[q.records[0]]["answer"]
    return max((t for t in data.towns if t in text), key=lambda t: (text.rfind(t), len(t)))


def _payment(results: list[AttributionResult], queries: list[TracingQuery]) -> dict:
    right = [sum(c.bps for c in r.contributors if c.contributor in q.responsible)
             for r, q in zip(results, queries)]
    evidence = [r.evidence_bps for r in results]
    top_right = [bool(r.contributors) and r.contributors[0].contributor in q.responsible
                 for r, q in zip(results, queries)]
    return {"queries": len(results), "mean_evidence_bps": float(np.mean(evidence)),
            "mean_bps_right": float(np.mean(right)),
            "mean_bps_wrong": float(np.mean([e - r for e, r in zip(evidence, right)])),
            "mean_bps_pool": float(np.mean([10_000 - e for e in evidence])),
            "top_paid_is_right": float(np.mean(top_right)),
            "paid_anyone": float(np.mean([e > 0 for e in evidence]))}


# ------------------------------------------------------------------------------ the run


def run_attribution_eval(config: EvalConfig = EvalConfig(), *, say: Say = lambda _m: None
                         ) -> EvalReport:
    """Tune on the tuning split, report on the test split; returns every figure as data."""
    from ledgerlm.evals.attribution.scale import search_scaling
    from ledgerlm.factory import load_tokenizer

    started = time.perf_counter()
    work_ctx = tempfile.TemporaryDirectory(prefix="ledgerlm-attr-") if not config.work_dir else None
    work = Path(config.work_dir or work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = _base_model(config, work, say)
        tokenizer = load_tokenizer(base)

        say("tuning split: LDS of each score mode")
        tuning_lds = split_lds(config if config.tuning_lds else replace(config, lds_subsets=0),
                               base, tokenizer, "tuning", work, say)
        # Every choice below keeps the node's default unless another setting beats it on the
        # tuning split's LDS by more than the comparison's noise (metrics.beats).
        lds_of = tuning_lds["methods"]
        mean_of = {name: value["mean"] for name, value in lds_of.items()}
        by_mode = {m: mean_of.get(f"grad:{m}", float("nan")) for m in PAYING_MODES}
        chosen = choose("cosine", PAYING_MODES, lds_of, lambda m: f"grad:{m}")
        say(f"chosen score mode on the tuning split: {chosen}")
        by_source = {src: mean_of.get(f"grad:{chosen} ({src})", float("nan"))
                     for src in FEATURE_SOURCES}
        source = config.feature_source or choose(DEFAULT_SOURCE, FEATURE_SOURCES, lds_of,
                                                 lambda src: f"grad:{chosen} ({src})")
        say(f"feature source on the tuning split: {source}")
        # K-FAC's whitened projection is scored with cosine on the final adapter's features; it
        # is used when it beats the chosen mode and source on the tuning split.
        plain_choice = f"grad:{chosen} ({source})"
        kfac_lds = mean_of.get(KFAC, float("nan"))
        kfac = (config.kfac if config.kfac is not None
                else beats(lds_of.get(KFAC), lds_of.get(plain_choice)))
        if kfac:
            chosen = "cosine"
        say(f"K-FAC-whitened index on the tuning split: {kfac}")
        # Per-token answers were scored with cosine on the final adapter's plain projection: used
        # when that beats what was chosen so far.
        token_lds = mean_of.get(TOKEN_MEAN, float("nan"))
        so_far = kfac_lds if kfac else by_source[source]
        per_token = (config.per_token_query if config.per_token_query is not None
                     else beats(lds_of.get(TOKEN_MEAN), lds_of.get(KFAC if kfac else plain_choice)))
        if per_token and config.per_token_query is None:
            chosen, source, kfac = "cosine", DEFAULT_SOURCE, False
        say(f"per-token answer features on the tuning split: {per_token}")
        span_rows = tune_span_rows(config, base, tokenizer, chosen, source, work, say, kfac,
                                   per_token)
        calibration = replace(CalibrationSettings(),
                              min_span_rows=span_rows["chosen_min_span_rows"])

        data = make_fact_tracing_set("test", config.entities, config.seed)
        say(f"test split: fine-tuning {base.name} on {len(data.records)} records")
        t = _fine_tune(config, base, tokenizer, data.records, work / "test-model", calibration,
                       source, kfac, per_token)
        test, _methods, embedding_name = tracing_and_payment(config, t, data, chosen, say)
        test["null_false_payout_rate"] = test["payment"]["null"]["null_false_payout_rate"]
        test["own_null_false_payout_rate"] = test["payment"]["own_null"]["null_false_payout_rate"]
        test["dataset"] = {
            "records": len(data.records), "indexed": len(t.index),
            "queries": {k: sum(q.kind == k for q in data.queries) for k in QUERY_KINDS},
            "contradicted": len(data.contradicted), "unrelated": len(unrelated_queries()),
        }
        test["calibration"] = {k: v for k, v in t.index.calibration.to_dict().items()
                               if not k.startswith("null_")}
        index_seconds = t.index.config.build_seconds + t.hook_seconds
        cost = {
            "train_seconds": t.train_seconds,
            "feature_source": source,
            "features_in_training_seconds": t.hook_seconds,
            "index_build_seconds": index_seconds,
            "index_over_train": index_seconds / max(t.train_seconds, 1e-9),
            "exact_gradients_seconds": t.exact_seconds,
            "feature_dim": t.index.config.dim,
            "full_gradient_dim": int(t.exact_rows.shape[1]),
            "per_answer": test.pop("latency"),
        }
        # the test model and its exact gradients are done with: the LDS retrains need the memory
        del t, _methods
        gc.collect()
        say("test split: LDS of every method")
        test["lds"] = split_lds(config, base, tokenizer, "test", work, say, source, kfac,
                                per_token)
        variants = variant_choice(tuning_lds, test["lds"])
        cost["scale"] = search_scaling(config.scale_sizes, config.dim, seed=config.seed)
        return EvalReport(
            config=asdict(config),
            tuning={"lds": tuning_lds, "lds_by_mode": by_mode, "chosen_score_mode": chosen,
                    "lds_by_source": by_source, "chosen_feature_source": source, **span_rows,
                    "kfac_lds": kfac_lds, "chosen_kfac": kfac, "plain_choice": plain_choice,
                    "per_token_lds": token_lds, "per_token_against_lds": so_far,
                    "chosen_per_token": per_token,
                    "gradient_variants": variants},
            test=test, cost=cost, embedding_model=embedding_name,
            seconds=time.perf_counter() - started,
            notes=[f"threads: torch {_torch_threads()}, cpu count {os.cpu_count()}"],
        )
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
        else:
            shutil.rmtree(work / "tiny-llama", ignore_errors=True)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()
