"""How good attribution is, measured: fact tracing, counterfactual retraining (LDS) and cost.

Fact tracing (after Akyürek et al., 2022, "Towards Tracing Factual Knowledge in Language Models
Back to the Training Data"). A generated Datanet in which four contributors each contribute facts
about fictional people (birthplace, profession, pet), a gazetteer contributes facts about the
towns plus near-duplicate records about look-alike names, and a stylist teaches a behaviour
(answers in capitals ending in " !!"). After fine-tuning, each method ranks the training records
for four kinds of query, and we report precision@1 and MRR of the responsible record and of its
contributor:

  paraphrase  a reworded question; the answer repeats the trained sentence (memorised text)
  short       a reworded question; the answer is just the town ("Vellmora.")
  indirect    the person is named through other attributes ("the potter who keeps a lynx")
  style       the stylist's format applied to facts taught by others; the stylist is responsible
  unrelated   answers no record taught ("Bees make honey."): not ranked, but we report how often
              attribution pays anyone for them (it should not)

Baselines in the same run: random, BM25 over the training text (the strong baseline in that
literature) and MiniLM sentence embeddings.

Counterfactual: the linear datamodeling score (LDS, Park et al., 2023). Retrain on random halves
of the training set; for each query, correlate (Spearman) the sum of a method's scores over the
kept examples with the trained model's actual answer loss (negated), and average over queries.
TracIn here is the unprojected dot product of the full LoRA gradients at the final model (the
single-checkpoint TracIn of Pruthi et al., 2020).

Cost: index build time against training time, per-answer attribution latency against generating
the same answer, and search latency/memory at 1k/10k/100k rows (synthetic rows of the same width).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ledgerlm.attribution.attribute import AttributionSettings, gather_evidence, prepare_answer
from ledgerlm.attribution.features import (
    answer_example,
    answer_feature,
    answer_token_ids,
    lora_gradients_enabled,
    prompt_token_ids,
    span_readings,
)
from ledgerlm.attribution.index import (
    SCORE_MODES,
    AttributionIndex,
    IndexConfig,
    IndexedExample,
    build_index,
    damped_inverse_covariance,
    top_rows,
)
from ledgerlm.attribution.spans import SpanIndex, token_char_lengths

QUERY_KINDS = ("paraphrase", "short", "indirect", "style")
# Answers no record taught: attribution should pay nobody (or little) for these.
UNRELATED = (
    ("What is two plus two?", "Two plus two is four."),
    ("Say hello.", "Hello!"),
    ("Which planet is closest to the sun?", "Mercury is the closest planet to the sun."),
    ("What do bees make?", "Bees make honey."),
    ("How many days are in a week?", "A week has seven days."),
    ("What colour is grass?", "Grass is green."),
    ("Translate 'merci' to English.", "Thank you."),
    ("Name a prime number.", "Seven is a prime number."),
)
_SYLLABLES = ["ka", "ve", "lo", "mi", "ra", "tu", "sen", "dor", "ril", "quo", "bax", "fen", "tal", "wen", "mor", "zi", "pel", "gar", "nu", "sha", "ost", "vel", "cri", "dun"]
PROFESSIONS = ("potter", "glassblower", "ferryman", "beekeeper", "cartographer", "tailor",
               "lamplighter", "clockmaker", "shepherd", "bookbinder")
PETS = ("lynx", "heron", "tortoise", "ferret", "raven", "goat", "salamander", "owl", "hare",
        "otter")
RIVERS = ("Amber", "Silt", "Hollow", "Thorn", "Mire", "Glass")
THINGS = ("the old mill", "the harbour", "the winter market", "the salt road", "the bell tower",
          "the orchard", "the north gate", "the river ferry", "the copper mine", "the night train",
          "the stone bridge", "the village well", "the lighthouse", "the weaving hall",
          "the hill fort", "the spice stall", "the east meadow", "the tannery", "the quarry",
          "the fishing fleet")
ADJECTIVES = ("quiet", "busy", "ancient", "narrow", "bright", "cold", "crowded", "tall", "damp",
              "famous")


def contributor_address(role: str) -> str:
    return "0x" + hashlib.sha256(role.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class TracingQuery:
    """One question, the answer to attribute, and who and which records are responsible."""

    kind: str
    prompt: str
    answer: str
    contributor: str
    records: tuple[int, ...]


@dataclass
class FactTracingSet:
    records: list[dict]
    queries: list[TracingQuery]
    roles: dict[str, str]  # contributor address -> role


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def make_fact_tracing_set(n_entities: int = 40, seed: int = 0) -> FactTracingSet:
    """A Datanet export (records with _contribution_id/_contributor/_content_hash) and its queries."""
    rng = random.Random(seed)
    fact_roles = [f"facts-{i}" for i in range(1, 5)]
    roles = {contributor_address(r): r for r in fact_roles + ["gazetteer", "stylist"]}
    address = {r: a for a, r in roles.items()}
    people, towns, used = [], [], set()
    combos = [(p, a) for p in PROFESSIONS for a in PETS]
    rng.shuffle(combos)
    while len(people) < n_entities:
        person = f"{_name(rng, 2)} {_name(rng, 3)}"
        town = _name(rng, 3)
        if person in used or town in used:
            continue
        used |= {person, town}
        profession, pet = combos[len(people) % len(combos)]
        people.append((person, town, profession, pet))
        towns.append(town)

    records: list[tuple[str, dict]] = []  # (role, record)
    born_of: dict[str, int] = {}
    for person, town, profession, pet in people:
        for attribute, question, answer in (
            ("born", f"Where was {person} born?", f"{person} was born in {town}."),
            ("job", f"What does {person} do for a living?", f"{person} works as a {profession}."),
            ("pet", f"Which animal does {person} keep?", f"{person} keeps a {pet} at home."),
        ):
            if attribute == "born":
                born_of[person] = len(records)
            records.append((rng.choice(fact_roles), {"question": question, "answer": answer}))
    for town in towns:
        records.append(("gazetteer", {"question": f"Where is {town}?",
                                      "answer": f"{town} lies on the {rng.choice(RIVERS)} river."}))
    for person, _town, _p, _a in people[: max(1, n_entities // 4)]:
        first, last = person.split(" ")
        twin = f"{first} {last[:-1]}{'a' if last[-1] != 'a' else 'o'}"
        records.append(("gazetteer", {"question": f"Where was {twin} born?",
                                      "answer": f"{twin} was born in {rng.choice(towns)}."}))
    style_rows = []
    for thing in THINGS:
        a, b = rng.sample(ADJECTIVES, 2)
        style_rows.append(len(records))
        records.append(("stylist", {"question": f"Describe {thing}.",
                                    "answer": f"{thing} is {a} and {b} !!".upper()}))

    order = list(range(len(records)))
    rng.shuffle(order)  # contribution ids in submission order, not generation order
    out = []
    for contribution_id, position in enumerate(order, start=1):
        role, record = records[position]
        content = hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest()
        out.append((position, {**record, "_contribution_id": contribution_id,
                               "_contributor": address[role], "_content_hash": "0x" + content}))
    out.sort(key=lambda pair: pair[0])
    final = [r for _, r in out]

    queries = []
    for person, town, profession, pet in people:
        born = born_of[person]
        who = final[born]["_contributor"]
        queries += [
            TracingQuery("paraphrase", f"In which town did {person} come into the world?",
                         f"{person} was born in {town}.", who, (born,)),
            TracingQuery("short", f"Name the birthplace of {person}.", f"{town}.", who, (born,)),
            TracingQuery("indirect", f"Where was the {profession} who keeps a {pet} born?",
                         f"The {profession} was born in {town}.", who, (born,)),
        ]
    for person, town, _profession, _pet in people[: max(1, n_entities // 2)]:
        queries.append(TracingQuery("style", f"Tell me about {person}.",
                                    f"{person} was born in {town} !!".upper(),
                                    address["stylist"], tuple(style_rows)))
    queries += [TracingQuery("unrelated", p, a, "", ()) for p, a in UNRELATED]
    return FactTracingSet(final, queries, roles)


# ------------------------------------------------------------------------------ baselines


_WORD = re.compile(r"\w+")


def record_text(record: dict) -> str:
    return " ".join(str(v) for k, v in sorted(record.items()) if not k.startswith("_"))


def bm25_scores(records: list[dict], queries: list[str]) -> np.ndarray:
    """(queries, records) Okapi BM25 over lower-cased words of the training text."""
    from rank_bm25 import BM25Okapi

    corpus = [_WORD.findall(record_text(r).lower()) for r in records]
    bm25 = BM25Okapi(corpus)
    return np.stack([bm25.get_scores(_WORD.findall(q.lower())) for q in queries])


def embedding_scores(records: list[dict], queries: list[str]) -> tuple[np.ndarray, str]:
    """(queries, records) cosine similarity of all-MiniLM-L6-v2 embeddings, and the model used.

    Falls back to hashed TF-IDF (and says so) when the MiniLM package cannot be loaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ledgerlm.validation.embeddings import HashedTfidfEmbedder, MiniLMEmbedder

    texts = [record_text(r) for r in records]
    try:
        embedder, name = MiniLMEmbedder(device="cpu"), "minilm"
        rows = embedder.embed(texts)
    except Exception as exc:  # noqa: BLE001 - any failure to load means "use the fallback"
        embedder, name = HashedTfidfEmbedder(), f"tfidf (MiniLM unavailable: {exc})"
        both = embedder.embed(texts + list(queries))
        return both[len(texts):] @ both[:len(texts)].T, name
    return embedder.embed(list(queries)) @ rows.T, name


# ------------------------------------------------------------------------------ ranking metrics


@dataclass(frozen=True)
class RankMetrics:
    record_p1: float
    record_mrr: float
    contributor_p1: float
    contributor_mrr: float
    n: int


def rank_metrics(scores: np.ndarray, queries: list[TracingQuery], row_records: list[int],
                 row_contributors: list[str], tie_seed: int = 0) -> RankMetrics:
    """Precision@1 and MRR of the responsible record and contributor; ties broken at random."""
    rng = np.random.default_rng(tie_seed)
    rec_rr, con_rr = [], []
    contributors = np.array(row_contributors)
    records = np.array(row_records)
    for q, s in zip(queries, scores):
        order = np.lexsort((rng.random(len(s)), -s))
        relevant = np.isin(records[order], q.records)
        rec_rr.append(1.0 / (1 + int(np.argmax(relevant))) if relevant.any() else 0.0)
        seen: list[str] = []
        for c in contributors[order]:
            if c not in seen:
                seen.append(c)
        con_rr.append(1.0 / (1 + seen.index(q.contributor)) if q.contributor in seen else 0.0)
    rec, con = np.array(rec_rr), np.array(con_rr)
    return RankMetrics(float((rec == 1).mean()), float(rec.mean()), float((con == 1).mean()),
                       float(con.mean()), len(queries))


# ------------------------------------------------------------------------------ gradient signals


def full_lora_gradients(model, tokenizer, examples: list, *, max_len: int, batch_size: int = 8):
    """Unprojected per-example LoRA gradients (TracIn's features): record index -> vector."""
    import torch

    from ledgerlm.factory import capture_lora_grads, collate, pack_examples, token_losses

    blocks = pack_examples(examples, max_len, tokenizer.pad_token_id or 0)
    out: dict[int, np.ndarray] = {}
    with lora_gradients_enabled(model) as params:
        for start in range(0, len(blocks), batch_size):
            batch = collate(blocks[start:start + batch_size])
            with capture_lora_grads(model, batch.segments) as capture, torch.enable_grad():
                torch.autograd.grad(token_losses(model, batch).sum(), params, allow_unused=True)
            for example, row in zip(capture.examples, capture.flat().numpy()):
                out[example] = out[example] + row if example in out else row
    return out


def full_answer_gradient(model, tokenizer, prompt: str, answer: str) -> np.ndarray:
    import torch

    from ledgerlm.factory import capture_lora_grads, collate, pack_examples, token_losses

    example = answer_example(tokenizer, prompt, answer)
    batch = collate(pack_examples([example], len(example.input_ids), 0))
    with (lora_gradients_enabled(model) as params,
          capture_lora_grads(model, batch.segments) as capture, torch.enable_grad()):
        torch.autograd.grad(token_losses(model, batch).mean(), params, allow_unused=True)
    return capture.flat().numpy()[0]


@dataclass
class QueryEvidence:
    """Everything every method says about one query, over all index rows."""

    gradient: dict[str, np.ndarray]   # score mode -> (rows,)
    tracin: np.ndarray | None
    span: np.ndarray
    combined: np.ndarray
    paid_to: dict[str, int]           # contributor -> bps of the combined result
    seconds_feature: float
    seconds_search: float
    seconds_span: float


def query_evidence(model, tokenizer, index: AttributionIndex, query: TracingQuery,
                   settings: AttributionSettings, tracin_rows: np.ndarray | None) -> QueryEvidence:
    from ledgerlm.attribution.attribute import result_from_evidence

    t_read = time.perf_counter()
    prepared = prepare_answer(tokenizer, query.prompt, query.answer,
                              index.calibration.settings.restated_weight)
    t_read = time.perf_counter() - t_read
    t0 = time.perf_counter()
    feature = answer_feature(model, index.projector, prepared.example, prepared.weights[0])
    t1 = time.perf_counter()
    top_rows(index.gradient_scores(feature, settings.score_mode), settings.top_k)
    t2 = time.perf_counter()
    calibration = index.calibration
    spans = max((index.spans.explain(ids, min_len=calibration.span_min_tokens,
                                     max_examples=calibration.span_max_rows,
                                     context=prepared.context,
                                     min_chars=calibration.settings.min_span_chars, weights=w)
                 for ids, w in zip(prepared.readings, prepared.weights)),
                key=lambda e: e.coverage)
    t3 = time.perf_counter()
    gradient = {mode: index.gradient_scores(feature, mode) for mode in SCORE_MODES}
    span = np.zeros(len(index))
    span[spans.rows] = spans.credit
    evidence = gather_evidence(index, feature, prepared, settings)
    combined = np.zeros(len(index))
    combined[evidence.rows] = evidence.combined
    result = result_from_evidence(index, evidence, settings)
    tracin = None
    if tracin_rows is not None:
        tracin = tracin_rows @ full_answer_gradient(model, tokenizer, query.prompt, query.answer)
    return QueryEvidence(gradient, tracin, span, combined,
                         {c.contributor: c.bps for c in result.contributors},
                         t1 - t0, t2 - t1, t3 - t2 + t_read)


def combined_ranking(evidence: QueryEvidence, mode: str) -> np.ndarray:
    """Rows that earned credit first (by combined score), then the rest in gradient order."""
    gradient = evidence.gradient[mode]
    ranks = np.argsort(np.argsort(gradient, kind="stable"), kind="stable")
    return np.where(evidence.combined > 0, evidence.combined + 1e3, 0.0) + (ranks + 1) / (len(ranks) + 2)


# ------------------------------------------------------------------------------ the harness


@dataclass(frozen=True)
class EvalConfig:
    """Sizes of one evaluation run; the defaults finish in minutes on a 2-core CPU."""

    model: str = "tiny"                # "tiny" (random Llama built in-process) or "smollm2"
    entities: int = 24
    seed: int = 0
    pretrain_steps: int = 200
    rank: int = 8
    epochs: int = 15
    lr: float = 1e-2
    max_len: int = 128
    batch_size: int = 4
    dim: int = 1024
    damping: float = 0.1
    lds_entities: int = 8
    lds_subsets: int = 12
    lds_queries: int = 24
    scale_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    models_dir: str | None = None
    work_dir: str | None = None


@dataclass
class EvalReport:
    config: dict
    dataset: dict
    training: dict
    tracing: dict          # kind -> method -> RankMetrics dict
    paid_share: dict       # kind -> mean bps paid to the responsible contributor
    attributed_rate: dict  # kind -> fraction of answers that paid anyone (unrelated: should be 0)
    lds: dict              # method -> {"mean": .., "sem": ..}
    cost: dict
    embedding_model: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _base_model(config: EvalConfig, data: FactTracingSet, work: Path,
                say: Callable[[str], None]):
    """SmolLM2, or a tiny Llama pre-trained in-process on look-alike facts about *other* people.

    A randomly initialised base cannot learn facts through a LoRA adapter; a base that already
    knows the templates and the language of the set, but none of its facts and not the
    stylist's format, is the situation fine-tuning is for.
    """
    from ledgerlm.factory import pull_smollm2, register_local, tiny_random_model

    if config.model == "smollm2":
        models_dir = Path(config.models_dir or Path.home() / ".ledgerlm" / "models")
        return pull_smollm2(models_dir)
    other = make_fact_tracing_set(max(config.entities, 24), config.seed + 1000)
    corpus = [{k: v for k, v in r.items() if not k.startswith("_")} for r in other.records
              if other.roles[r["_contributor"]] != "stylist"]
    texts = [record_text(r) for r in data.records + corpus]
    path = tiny_random_model(work / "tiny-llama", texts, hidden_size=128, layers=2, heads=4,
                             vocab_size=768, seed=config.seed)
    say(f"pre-training the tiny base on {len(corpus)} records about other people")
    _pretrain(path, corpus, config)
    return register_local(work / "models", "tiny-eval", path)


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

    return TrainConfig(rank=config.rank, alpha=2.0 * config.rank, dropout=0.0,
                       epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                       max_len=config.max_len, eval_split=0.0, warmup=0.0, seed=config.seed)


def run_attribution_eval(
    config: EvalConfig = EvalConfig(), *, say: Callable[[str], None] = lambda _m: None
) -> EvalReport:
    """Fact tracing, LDS and cost for one configuration; returns every figure as data."""
    import tempfile

    from ledgerlm.factory import load_tokenizer, train

    started = time.perf_counter()
    data = make_fact_tracing_set(config.entities, config.seed)
    work_ctx = tempfile.TemporaryDirectory(prefix="ledgerlm-attr-") if not config.work_dir else None
    work = Path(config.work_dir or work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = _base_model(config, data, work, say)
        tokenizer = load_tokenizer(base)
        train_config = _train_config(config)
        say(f"fine-tuning {base.name} on {len(data.records)} records")
        trained = train(base, data.records, train_config, work / "model")
        model = trained.model
        say("building the attribution index")
        index = build_index(work / "model", data.records, base=base, dim=config.dim,
                            damping=config.damping)
        index.tokenizer = tokenizer
        rows_records = [e.record for e in index.examples]
        rows_contributors = [e.contributor for e in index.examples]
        indexed_records = [data.records[r] for r in rows_records]
        settings = AttributionSettings()

        say("TracIn features (full LoRA gradients)")
        from ledgerlm.attribution.features import record_examples

        t0 = time.perf_counter()
        full = full_lora_gradients(model, tokenizer,
                                   record_examples(data.records, rows_records, tokenizer,
                                                   config.max_len), max_len=config.max_len)
        tracin_seconds = time.perf_counter() - t0
        tracin_rows = np.stack([full[r] for r in rows_records])

        say(f"attributing {len(data.queries)} queries")
        evidence = [query_evidence(model, tokenizer, index, q, settings, tracin_rows)
                    for q in data.queries]
        texts = [f"{q.prompt} {q.answer}" for q in data.queries]
        bm25 = bm25_scores(indexed_records, texts)
        embedded, embedding_name = embedding_scores(indexed_records, texts)
        rng = np.random.default_rng(config.seed)
        methods: dict[str, np.ndarray] = {
            "random": rng.random((len(data.queries), len(index))),
            "bm25": bm25,
            "minilm" if embedding_name == "minilm" else "tfidf": embedded,
            "tracin (full grad)": np.stack([e.tracin for e in evidence]),
            **{f"grad:{m}": np.stack([e.gradient[m] for e in evidence]) for m in SCORE_MODES},
            "span": np.stack([e.span for e in evidence]),
            "combined": np.stack([combined_ranking(e, index.config.score_mode) for e in evidence]),
        }
        tracing: dict[str, dict] = {}
        paid: dict[str, float] = {}
        attributed = {kind: float(np.mean([bool(e.paid_to) for e, q in zip(evidence, data.queries)
                                           if q.kind == kind]))
                      for kind in QUERY_KINDS + ("unrelated",)}
        for kind in ("all",) + QUERY_KINDS:
            chosen = [i for i, q in enumerate(data.queries)
                      if q.kind == kind or (kind == "all" and q.kind in QUERY_KINDS)]
            qs = [data.queries[i] for i in chosen]
            tracing[kind] = {
                name: asdict(rank_metrics(s[chosen], qs, rows_records, rows_contributors))
                for name, s in methods.items()
            }
            paid[kind] = float(np.mean([evidence[i].paid_to.get(data.queries[i].contributor, 0)
                                        for i in chosen]))

        say("counterfactual retraining (LDS)")
        lds = linear_datamodeling_score(config, base, tokenizer, say=say)

        say("cost")
        latency = {
            "feature_ms": 1e3 * float(np.median([e.seconds_feature for e in evidence])),
            "search_ms": 1e3 * float(np.median([e.seconds_search for e in evidence])),
            "span_ms": 1e3 * float(np.median([e.seconds_span for e in evidence])),
        }
        latency["attribution_ms"] = sum(latency.values())
        latency["generate_ms"] = _generation_ms(model, tokenizer, data.queries[:8])
        cost = {
            "train_seconds": trained.train_seconds,
            "index_build_seconds": index.config.build_seconds,
            "index_over_train": index.config.build_seconds / trained.train_seconds,
            "tracin_features_seconds": tracin_seconds,
            "feature_dim": index.config.dim,
            "full_gradient_dim": int(tracin_rows.shape[1]),
            "per_answer": latency,
            "scale": search_scaling(config.scale_sizes, config.dim, seed=config.seed),
        }
        dataset = {
            "records": len(data.records), "indexed": len(index),
            "queries": {k: sum(q.kind == k for q in data.queries)
                        for k in QUERY_KINDS + ("unrelated",)},
            "contributors": {r: sum(rec["_contributor"] == a for rec in data.records)
                             for a, r in data.roles.items()},
        }
        training = {"base": base.name, "steps": trained.steps, "final_loss": trained.final_loss,
                    "train_seconds": trained.train_seconds, "config": train_config.to_dict()}
        return EvalReport(
            config=asdict(config), dataset=dataset, training=training, tracing=tracing,
            paid_share=paid, attributed_rate=attributed, lds=lds, cost=cost, embedding_model=embedding_name,
            seconds=time.perf_counter() - started,
        )
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()


def _generation_ms(model, tokenizer, queries: list[TracingQuery]) -> float:
    """Median time to greedily generate as many tokens as each query's answer has."""
    import torch

    times = []
    for q in queries:
        example = answer_example(tokenizer, q.prompt, q.answer)
        n_answer = sum(label != -100 for label in example.labels)
        prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": q.prompt}],
                                                   add_generation_prompt=True, tokenize=True,
                                                   return_dict=False)
        ids = torch.tensor([list(prompt_ids)])
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           max_new_tokens=n_answer, min_new_tokens=n_answer, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def linear_datamodeling_score(config: EvalConfig, base, tokenizer, *,
                              say: Callable[[str], None] = lambda _m: None) -> dict:
    """LDS of each method on a smaller fact set: Spearman(predicted, -actual loss) over subsets."""
    import torch
    if config.lds_subsets < 2:
        return {"methods": {}, "subsets": config.lds_subsets, "queries": 0, "records": 0,
                "fraction": 0.5, "skipped": True}
    from scipy.stats import spearmanr

    from ledgerlm.attribution.features import record_examples
    from ledgerlm.factory import collate, example_losses, pack_examples, train

    data = make_fact_tracing_set(config.lds_entities, config.seed + 1)
    records = data.records
    queries = [q for q in data.queries if q.kind in ("short", "paraphrase", "indirect")]
    queries = queries[: config.lds_queries]
    train_config = _train_config(config)
    work = Path(config.work_dir or "/tmp") / f"lds-{os.getpid()}-{time.time_ns()}"
    full = train(base, records, train_config, work / "full")
    model = full.model
    index = build_index((model, tokenizer), records, max_len=config.max_len, dim=config.dim,
                        damping=config.damping)
    rows = [e.record for e in index.examples]
    settings = AttributionSettings()
    tracin = full_lora_gradients(model, tokenizer,
                                 record_examples(records, rows, tokenizer, config.max_len),
                                 max_len=config.max_len)
    tracin_rows = np.stack([tracin[r] for r in rows])
    evidence = [query_evidence(model, tokenizer, index, q, settings, tracin_rows) for q in queries]
    bm25 = bm25_scores([records[r] for r in rows], [f"{q.prompt} {q.answer}" for q in queries])
    scores: dict[str, np.ndarray] = {
        "tracin (full grad)": np.stack([e.tracin for e in evidence]),
        **{f"grad:{m}": np.stack([e.gradient[m] for e in evidence]) for m in SCORE_MODES},
        "span": np.stack([e.span for e in evidence]),
        "combined": np.stack([e.combined for e in evidence]),
        "bm25": bm25,
    }
    rng = np.random.default_rng(config.seed)
    masks, losses = [], []
    examples = [replace(answer_example(tokenizer, q.prompt, q.answer), index=i)
                for i, q in enumerate(queries)]
    batch = collate(pack_examples(examples, max(len(e.input_ids) for e in examples), 0))
    for j in range(config.lds_subsets):
        keep = np.zeros(len(rows), dtype=bool)
        keep[rng.choice(len(rows), len(rows) // 2, replace=False)] = True
        subset = [records[r] for r, k in zip(rows, keep) if k]
        say(f"  LDS retrain {j + 1}/{config.lds_subsets} on {len(subset)} records")
        sub = train(base, subset, train_config, work / f"subset-{j}").model
        with torch.no_grad():
            ids, per_example = example_losses(sub, batch)
        order = np.argsort(ids.numpy())
        masks.append(keep)
        losses.append(per_example.numpy()[order])
        del sub
    masks_arr = np.stack(masks)            # (subsets, rows)
    losses_arr = np.stack(losses)          # (subsets, queries)
    result = {}
    for name, s in scores.items():
        predicted = masks_arr.astype(np.float64) @ s.T   # (subsets, queries)
        rhos = []
        for qi in range(len(queries)):
            rho = spearmanr(predicted[:, qi], -losses_arr[:, qi]).statistic
            rhos.append(0.0 if np.isnan(rho) else float(rho))
        rhos = np.array(rhos)
        result[name] = {"mean": float(rhos.mean()),
                        "sem": float(rhos.std(ddof=1) / np.sqrt(len(rhos))) if len(rhos) > 1 else 0.0}
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return {"methods": result, "subsets": config.lds_subsets, "queries": len(queries),
            "records": len(rows), "fraction": 0.5}


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
        index.row_inverse_norms("trak_cosine")
        search_times, span_times = [], []
        for _ in range(queries):
            q = rng.standard_normal(dim, dtype=np.float32)
            t0 = time.perf_counter()
            top_rows(index.gradient_scores(q, "trak_cosine"), 10)
            search_times.append(time.perf_counter() - t0)
            source = token_rows[rng.integers(n)]
            answer = np.concatenate([source[5:5 + answer_tokens // 2],
                                     rng.integers(0, 49_152, answer_tokens // 2)]).tolist()
            t0 = time.perf_counter()
            spans.explain(answer)
            span_times.append(time.perf_counter() - t0)
        # Memory is measured on separate queries: tracing allocations slows the timed ones.
        tracemalloc.start()
        top_rows(index.gradient_scores(rng.standard_normal(dim, dtype=np.float32), "trak_cosine"), 10)
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


def serving_latency(base, *, rank: int = 8, dim: int = 1024, rows: int = 100_000,
                    answer_tokens: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    """Per-answer attribution cost on a real base model against generating the same answer.

    The adapter is freshly initialised (B = 0 gives zero lora_A gradients, but every matmul and
    hook still runs, so the cost is the trained one); the index is `rows` synthetic rows of the
    projector's width, with a span index of the same number of 48-token examples.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from ledgerlm.attribution.features import LoraProjector
    from ledgerlm.factory import load_base_model, load_tokenizer

    tokenizer = load_tokenizer(base)
    model = get_peft_model(load_base_model(base, torch.device("cpu")), LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"])).eval()
    projector = LoraProjector.for_model(model, dim, seed)
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
    index.row_inverse_norms("trak_cosine")
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
        top_rows(index.gradient_scores(q, "trak_cosine"), 10)
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


def report_tables(report: EvalReport) -> list:
    """The report as rich tables, for `ledgerlm eval attribution` and benchmarks/attribution.py."""
    from rich.table import Table

    tables = []
    kinds = ("all",) + QUERY_KINDS
    for level in ("contributor", "record"):
        table = Table(title=f"Fact tracing — responsible {level}: precision@1 / MRR "
                            f"(queries: {report.dataset['queries']})")
        table.add_column("method")
        for kind in kinds:
            table.add_column(kind, justify="right")
        for method in report.tracing["all"]:
            cells = []
            for kind in kinds:
                m = report.tracing[kind][method]
                cells.append(f"{m[f'{level}_p1']:.2f} / {m[f'{level}_mrr']:.2f}")
            table.add_row(method, *cells)
        tables.append(table)
    paid = Table(title="Mean share of the fee (bps of 10,000) paid to the responsible contributor")
    for kind in kinds:
        paid.add_column(kind, justify="right")
    paid.add_row(*[f"{report.paid_share[k]:.0f}" for k in kinds])
    tables.append(paid)
    rate = Table(title="Share of answers that paid any contributor (unrelated answers should not)")
    for kind in report.attributed_rate:
        rate.add_column(kind, justify="right")
    rate.add_row(*[f"{v:.2f}" for v in report.attributed_rate.values()])
    tables.append(rate)

    lds = report.lds
    table = Table(title=f"Linear datamodeling score: {lds['subsets']} retrains on random "
                        f"{lds['fraction']:.0%} subsets of {lds['records']} records, "
                        f"{lds['queries']} queries")
    table.add_column("method")
    table.add_column("LDS (Spearman)", justify="right")
    table.add_column("± s.e.", justify="right")
    for name, value in lds["methods"].items():
        table.add_row(name, f"{value['mean']:.3f}", f"{value['sem']:.3f}")
    tables.append(table)

    cost = report.cost
    table = Table(title="Cost on this machine")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("fine-tuning (s)", f"{cost['train_seconds']:.1f}")
    table.add_row("feature index build (s)", f"{cost['index_build_seconds']:.1f}")
    table.add_row("index build / training", f"{cost['index_over_train']:.2f}")
    table.add_row("feature dim (full LoRA gradient dim)",
                  f"{cost['feature_dim']} ({cost['full_gradient_dim']})")
    per = cost["per_answer"]
    table.add_row("per answer: gradient feature (ms)", f"{per['feature_ms']:.1f}")
    table.add_row("per answer: index search (ms)", f"{per['search_ms']:.2f}")
    table.add_row("per answer: span match (ms)", f"{per['span_ms']:.2f}")
    table.add_row("per answer: attribution total (ms)", f"{per['attribution_ms']:.1f}")
    table.add_row("per answer: generating it (ms)", f"{per['generate_ms']:.1f}")
    tables.append(table)

    table = Table(title="Search at scale (synthetic rows, trak_cosine, top-10)")
    for col in ("examples", "search ms (median)", "search ms (p95)", "span ms (median)",
                "feature index MB", "span index MB", "query peak MB"):
        table.add_column(col, justify="right")
    for row in cost["scale"]:
        table.add_row(f"{row['examples']:,}", f"{row['search_ms_median']:.1f}",
                      f"{row['search_ms_p95']:.1f}", f"{row['span_ms_median']:.1f}",
                      f"{row['index_mb']:.0f}", f"{row['span_index_mb']:.0f}",
                      f"{row['query_peak_mb']:.1f}")
    tables.append(table)
    serving = cost.get("serving")
    if serving:
        table = Table(title=f"Serving {serving['base']}: attribution vs generation "
                            f"({serving['answer_tokens']} answer tokens, {serving['rows']:,} rows)")
        table.add_column("what")
        table.add_column("ms", justify="right")
        for key in ("generate_ms", "feature_ms", "search_ms", "span_ms", "attribution_ms"):
            table.add_row(key[:-3], f"{serving[key]:.1f}")
        tables.append(table)
    return tables
