"""Attribution of one answer: which training examples, contributions and contributors shaped it, in basis points.

Per answer: (1) the gradient of the answer's loss, projected like the index rows, scored against
every indexed example (`AttributionIndex.search`); (2) the answer's tokens matched against the
span index. The two signals are put on one scale, "share of the answer explained", before they
are added:

  span evidence      the fraction of the answer's tokens a row explains with long, rare spans
                     (see spans.py); sums to at most 1. Verbatim recall is near-deterministic
                     evidence, so it is taken at face value.
  gradient evidence  rows whose score is positive *and* stands `min_z` standard deviations above
                     the index-wide mean score earn e = (z - min_z), normalised as
                     e / (sum e + gradient_prior) — the prior is a pseudo-row "no example was
                     influential", so one row barely clearing the bar earns little while a
                     clear winner earns nearly all — and weighted by the part of the answer that no span explains (1 - coverage,
                     coverage = fraction of the answer's tokens covered by long, rare spans).
                     Only positive influence earns; an answer that no example stands out for gets
                     no gradient evidence at all.

  combined = span_weight x span + (1 - coverage) x gradient

Tokens copied from training data are paid to the examples containing them; what the model
produced by generalising (a paraphrase, a format, a fact asked about in new words) is paid by
influence, and among examples that share a copied span equally the gradient score orders them.
On the fact-tracing benchmark this residual rule keeps the combination close to the better
signal of each query kind; adding both at equal weight let a weak gradient ranking dilute exact
span matches (benchmarks/attribution.py). The top `top_k` rows by combined score are rolled up: each
row's owner contribution (duplicates of the same content were merged into the earliest
contribution when the index was built), then contributors. Shares are integer basis points
summing to exactly 10,000: scores are quantised to integers, then split by largest remainder
with ties going to the lower (contributor address, contribution id). Contributor shares are the
sums of their contributions' shares, so a receipt's two levels always agree. When no row earns
anything the result is `unattributed` and the contributor share goes to the Datanet treasury
(economy's rule).

Everything is deterministic for the same model, index and inputs: no sampling, dropout off,
ties broken by row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ledgerlm.attribution.errors import AttributionError
from ledgerlm.attribution.features import (
    answer_example,
    answer_feature,
    prompt_token_ids,
    span_readings,
)
from ledgerlm.attribution.index import AttributionIndex, ScoreMode, top_hits
from ledgerlm.money import BPS, split_by_weight

_QUANTUM = 10**9  # score units per 1.0 when scores become integers for the split


@dataclass(frozen=True)
class AttributionSettings:
    """The knobs of `attribute`; a model publishes the ones its receipts were computed with."""

    top_k: int = 10
    score_mode: ScoreMode | None = None  # None: the mode the index was built with
    min_z: float = 3.0
    span_weight: float = 1.0
    min_span: int = 4
    min_span_chars: int = 8
    max_span_examples: int = 64
    gradient_prior: float = 1.0


@dataclass(frozen=True)
class ExampleAttribution:
    """One training example's evidence for the answer."""

    row: int
    record: int
    contribution_id: int | str
    contributor: str
    content_hash: str
    gradient: float
    gradient_z: float
    span: float
    longest_span: int
    combined: float


@dataclass(frozen=True)
class ContributionShare:
    contribution_id: int | str
    contributor: str
    content_hash: str
    score: float
    bps: int


@dataclass(frozen=True)
class ContributorShare:
    contributor: str
    score: float
    bps: int


@dataclass(frozen=True)
class AttributionResult:
    """Who shaped one answer: the top examples with each signal's score, and the integer split."""

    examples: tuple[ExampleAttribution, ...]
    contributions: tuple[ContributionShare, ...]
    contributors: tuple[ContributorShare, ...]
    unattributed: bool
    answer_tokens: int
    index_adapter_sha256: str
    settings: AttributionSettings

    def to_dict(self) -> dict:
        return asdict(self)


def split_bps(weights: dict[tuple, int]) -> dict[tuple, int]:
    """Integer shares of 10,000 proportional to positive integer `weights`, summing to exactly 10,000."""
    if not weights or any(w <= 0 for w in weights.values()):
        raise AttributionError("shares need positive weights", field="weights")
    return split_by_weight(BPS, weights)


def roll_up(examples: list[ExampleAttribution]) -> tuple[tuple[ContributionShare, ...],
                                                         tuple[ContributorShare, ...]]:
    """Contribution and contributor shares of the examples with a positive combined score."""
    scores: dict[tuple, float] = {}
    owners: dict[tuple, ExampleAttribution] = {}
    for e in examples:
        if e.combined <= 0:
            continue
        key = (e.contributor, _sortable(e.contribution_id))
        scores[key] = scores.get(key, 0.0) + e.combined
        owners[key] = e
    weights = {k: round(s * _QUANTUM) for k, s in scores.items()}
    weights = {k: w for k, w in weights.items() if w > 0}
    if not weights:
        return (), ()
    bps = split_bps(weights)
    contributions = tuple(sorted(
        (ContributionShare(owners[k].contribution_id, owners[k].contributor,
                           owners[k].content_hash, scores[k], bps[k]) for k in weights),
        key=lambda c: (-c.bps, c.contributor, _sortable(c.contribution_id)),
    ))
    by_person: dict[str, tuple[float, int]] = {}
    for c in contributions:
        score, points = by_person.get(c.contributor, (0.0, 0))
        by_person[c.contributor] = (score + c.score, points + c.bps)
    contributors = tuple(sorted(
        (ContributorShare(who, s, p) for who, (s, p) in by_person.items()),
        key=lambda c: (-c.bps, c.contributor),
    ))
    return contributions, contributors


def _sortable(contribution_id) -> tuple:
    return (0, contribution_id, "") if isinstance(contribution_id, int) else (1, 0, str(contribution_id))


@dataclass(frozen=True)
class Evidence:
    """Both signals for every candidate row of one answer, before the roll-up."""

    rows: np.ndarray
    gradient: np.ndarray
    gradient_z: np.ndarray
    span: np.ndarray
    longest_span: np.ndarray
    combined: np.ndarray
    answer_tokens: int


def gather_evidence(
    index: AttributionIndex, feature: np.ndarray, readings: list[list[int]],
    settings: AttributionSettings, context: list[int] | None = None,
) -> Evidence:
    """Score the answer's feature and tokens against the index and combine the two signals.

    `readings` are tokenisations of the same answer (see `span_readings`); the one whose spans
    explain most of it is used; `context` (the prompt's tokens) only decides between rows that
    share a span.
    """
    scores = index.gradient_scores(feature, settings.score_mode)
    hits = top_hits(scores, settings.top_k)
    found = [index.spans.explain(ids, min_len=settings.min_span, context=context,
                                 min_chars=settings.min_span_chars,
                                 max_examples=settings.max_span_examples) for ids in readings]
    spans = max(found, key=lambda e: e.coverage)  # max keeps the first reading on a tie
    rows = np.union1d(hits.rows, spans.rows).astype(np.int64)
    gradient = scores[rows].astype(np.float64)
    z = (gradient - hits.mean) / (hits.std if hits.std > 0 else 1.0)
    earned = np.where(gradient > 0, np.maximum(z - settings.min_z, 0.0), 0.0)
    total = earned.sum()
    grad_evidence = earned / (total + settings.gradient_prior) if total > 0 else earned
    span = np.zeros(len(rows))
    longest = np.zeros(len(rows), dtype=np.int64)
    position = {r: i for i, r in enumerate(rows.tolist())}
    for r, c, n in zip(spans.rows.tolist(), spans.credit.tolist(), spans.longest.tolist()):
        span[position[r]], longest[position[r]] = c, n
    combined = settings.span_weight * span + max(0.0, 1.0 - spans.coverage) * grad_evidence
    return Evidence(rows, gradient, z, span, longest, combined, len(readings[0]))


def attribute(
    model,
    prompt: str | list[dict],
    answer: str,
    *,
    index: AttributionIndex,
    tokenizer=None,
    top_k: int = 10,
    settings: AttributionSettings | None = None,
) -> AttributionResult:
    """Which training examples, contributions and contributors shaped `answer` to `prompt`.

    `model` is the fine-tuned (PEFT) model the index was built for, `prompt` a user message or a
    list of chat messages, `tokenizer` defaults to the one loaded with the index.
    """
    settings = settings or AttributionSettings(top_k=top_k)
    tokenizer = tokenizer or index.tokenizer
    if tokenizer is None:
        raise AttributionError("attribute needs the model's tokenizer", field="tokenizer")
    index.projector.check_model(model)
    example = answer_example(tokenizer, prompt, answer)
    feature = answer_feature(model, index.projector, example)
    readings = span_readings(tokenizer, prompt, answer, example)
    evidence = gather_evidence(index, feature, readings, settings, prompt_token_ids(example))
    return result_from_evidence(index, evidence, settings)


def result_from_evidence(index: AttributionIndex, evidence: Evidence,
                         settings: AttributionSettings) -> AttributionResult:
    order = sorted(range(len(evidence.rows)),  # equal combined: the stronger gradient first
                   key=lambda i: (-evidence.combined[i], -evidence.gradient[i], evidence.rows[i]))
    listed = []
    for i in order[:settings.top_k]:
        e = index.example(int(evidence.rows[i]))
        listed.append(ExampleAttribution(
            row=e.row, record=e.record, contribution_id=e.contribution_id,
            contributor=e.contributor, content_hash=e.content_hash,
            gradient=float(evidence.gradient[i]), gradient_z=float(evidence.gradient_z[i]),
            span=float(evidence.span[i]), longest_span=int(evidence.longest_span[i]),
            combined=float(evidence.combined[i]),
        ))
    contributions, contributors = roll_up(listed)
    return AttributionResult(
        examples=tuple(listed), contributions=contributions, contributors=contributors,
        unattributed=not contributions, answer_tokens=evidence.answer_tokens,
        index_adapter_sha256=index.config.adapter_sha256, settings=settings,
    )


# ------------------------------------------------------------------------------ serving


def load_model(model_dir: Path, base=None, device=None):
    """The fine-tuned model in `model_dir` (adapter on its base) and its tokenizer, for inference."""
    from ledgerlm.factory import BaseModel, load_adapted_model, load_tokenizer

    model_dir = Path(model_dir)
    if base is None:
        config_path = model_dir / "adapter_config.json"
        if not config_path.is_file():
            raise AttributionError(f"{model_dir} holds no adapter (adapter_config.json missing)",
                                   field="model_dir")
        path = json.loads(config_path.read_text()).get("base_model_name_or_path")
        if not path or not Path(path).is_dir():
            raise AttributionError(
                f"the base model of {model_dir} ({path!r}) is not on this machine; pass base=",
                field="base",
            )
        base = BaseModel(name=Path(path).name, path=Path(path), sha256="", n_params=0,
                         source="adapter_config")
    return load_adapted_model(base, model_dir, device), load_tokenizer(base)


class Attributor:
    """A model and its attribution index kept in memory, answering `attribute` per request."""

    def __init__(self, model, tokenizer, index: AttributionIndex,
                 settings: AttributionSettings | None = None):
        index.projector.check_model(model)
        index.tokenizer = tokenizer
        self.model = model
        self.tokenizer = tokenizer
        self.index = index
        self.settings = settings or AttributionSettings()

    def attribute(self, prompt: str | list[dict], answer: str) -> AttributionResult:
        return attribute(self.model, prompt, answer, index=self.index, tokenizer=self.tokenizer,
                         settings=self.settings)

    def generate(self, prompt: str | list[dict], max_new_tokens: int = 64) -> str:
        """The model's greedy answer, for `ledgerlm attribute` without --answer."""
        import torch

        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                                 tokenize=True, return_dict=False)
        device = next(self.model.parameters()).device
        ids = torch.tensor([list(ids)], device=device)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def load_attributor(model_dir: Path, *, base=None, device=None, model=None, tokenizer=None,
                    settings: AttributionSettings | None = None) -> Attributor:
    """Load a model's index (and the model, unless the caller already holds it) for serving."""
    index = AttributionIndex.load(model_dir)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(model_dir, base, device)
    return Attributor(model, tokenizer, index, settings)
