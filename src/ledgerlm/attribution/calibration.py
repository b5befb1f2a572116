"""Payment bars of one index, calibrated when it is built on answers that no training record taught.

A fixed bar cannot be right for every index: the largest of n roughly normal scores grows with n
(a z > 3 bar is cleared by some row of almost any 100k-row index, and by none of a 10-row one),
and how long a span an unrelated answer shares with the training text depends on how much text
there is. So every index attributes the shipped null answers (null_queries.py) at build time and
keeps, per null answer, the best gradient score of any row and the longest rare span. The bars are
set at the (1 - false_payout_rate) quantile of those: an answer unrelated to the Datanet clears a
bar with about that probability, and then only just, which pays almost nothing (attribute.py pays
in proportion to how far evidence clears its bar). The bars, the null statistics and the settings
they were computed with are stored with the index and published with the model, so anyone can
check them.

Cost. Span matching a null answer costs no model pass, so every null answer sets the span bar.
A gradient score costs a forward and a backward pass, and unlike the rows' pass it does not shrink
with the Datanet, so how many null answers take one follows the work training did
(`null_answer_count`): about `null_token_share` of the tokens training ran (`tokens_seen`), never
more than `max_gradient_null_answers` (64 of 64). The graded answers are spread evenly over the
shipped list (`graded_null_answers`), which is grouped by kind (arithmetic, geography, ...). The
count used and the training tokens it was chosen from are stored in the published settings.
Fewer than `min_gradient_null_answers` (40) cannot bound the tail (below), so a training too
small to afford them takes no gradient pass at all: the index's gradient and candidate bars are
1, which no score clears, and its answers are paid on span evidence only; what the gradient
alone would have named goes to the data pool. A fixed 40 passes cost about as much as the whole
training of a 6-record Datanet (benchmarks/results/attribution_build_cost_sizes.md); with the
share of 5%, the gradient is calibrated from about 18,600 training tokens on (40 null answers
of about 23 tokens each on SmolLM2: 44 short records trained 10 epochs reach it, 35 fall just
short), which the evaluation's planted-facts Datanets reach.
The floor is high because an answer's best score is heavy-tailed: a few null answers score far
above the rest ("9 times 7 is 63." at 0.31 where the median is 0.08, on the planted-facts test
model), and a bar that missed them leaves unrelated answers in the style of a Datanet's records
above it. Bars from 8, 16 or 32 answers spread over the list paid 7.5-17.5% of the evaluation's
40 unrelated prompts on the tiny model's tuning and test splits (the K-FAC-whitened index the
evaluation chose); from 40 or more, at most 2.5% (benchmarks/results/attribution.md). The node's
default index did without the floor in the cases measured (README), but nothing bounds the tail.
The empirical 99th percentile of so few is just their maximum; the gradient bar is the higher of
that and a one-sided normal prediction bound, mean + t(q, n-1) * sd * sqrt(1 + 1/n) — where the
next null answer falls with probability q if the best scores were roughly normal, widened for the
few it was estimated from.

A rare span several rows share, which the prompt does not pin on one of them, narrows who taught
the answer to those rows (its candidates) and lets the gradient pick among them (attribute.py).
The row it picks was named by the text, not chosen for its score, so it must clear the
candidate bar: the (1 - false_payout_rate / span_max_rows) quantile of the null answers' scores
against every row. An unrelated answer's score at a given row clears it with probability about
false_payout_rate / span_max_rows, so at any of at most span_max_rows candidates with about
false_payout_rate.

A record that states a null answer is general knowledge, not what this Datanet teaches. The
null answers ship with the project, so anyone can contribute them: four records holding four of
them word for word raised a tiny model's span bar from 4 tokens to 33 and its gradient bar above
1, and no answer of that Datanet was paid any more (benchmarks/attribution_null_poisoning.py).
So the rows that state a null answer (`SpanIndex.rows_stating`: a row holding all its words, up
to its last one) are left out of every null answer's measure — spans found only in them, and
their gradient scores — and, since the bars then say nothing about them, they are paid no
evidence (attribute.py, rule 13). A null answer that more rows hold than a rare span may be in
is a common phrase of this Datanet (a greeting that opens every reply), which no rare span
measures: its rows stay. Which rows state which null answer is published with the bars
(`null_stated`).

A row that says a null answer in other words escapes that test, and raises the span bar just the
same: four such records from one contributor took a tiny model's span bar from 4 tokens to 16,
and the Datanet's answers were paid 30 bps instead of 5,720 (rule 13 left them all in). So when
one contributor's rows alone raise the span bar — measured without them, it is lower — those of
its rows that hold a null answer's rare span at least as long as that lower bar (of any number of
characters) count as stating it (`_paraphrasing_rows`), and the test repeats while one
contributor alone raises the bar. Spans that set the bar in the rows of two contributors or more
are left as they are: wording the Datanet shares with general text is what the bar is for, and a
Datanet whose bar sits at `min_span` (every one the project measures without hostile uploads) is
not touched (rule 14). One contributor may be several identities: sixteen paraphrases split
between two, the longest of each as long as the other's, kept the tiny model's span bar at 16
tokens, since leaving either identity out left the other's span. So the contributors that each
alone hold a span setting the bar (one per null answer whose span sets it, `_sole_holders`) are
left out together: if the bar measured without all of them is lower, their rows are treated as
one contributor's above (rule 15). The rows left in are measured by the bar they set, as in any
Datanet, and the left-out ones earn nothing; since the null answers that chose which rows to
leave out also set the bar, an unrelated answer may clear it somewhat more often than
`false_payout_rate`. An honest contributor whose record happens to hold such a span beside a
hostile one is left out with it for that record, where before every contributor's answers had
to clear the raised bar. Identities that upload the same text are one row (the index keeps
content once, owned by its earliest contribution), and a near copy meets the Datanet's
near-duplicate gate; different paraphrases from two identities that share the null answer's
longest span put that span in two contributors' rows, and would still raise the bar.

"Rare" is relative to the index too: a span that occurs in more than `rare_fraction` of the rows
(and more than `min_span_rows`, so that a small Datanet may state a name in a few records) is a
common phrase of this Datanet, not recall of one contribution. `min_span_rows` is chosen on the
evaluation's tuning split (`ledgerlm.evals.attribution`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ledgerlm.attribution.errors import AttributionError
from ledgerlm.attribution.features import (
    answer_example,
    example_features,
    prompt_token_ids,
    span_readings,
    token_mean_features,
)
from ledgerlm.attribution.null_queries import NULL_QUERIES
from ledgerlm.attribution.restatement import content_weights

PAYING_MODES = ("cosine", "trak_cosine")  # bounded scores: "how far above the bar" has a scale
SCORE_DECIMALS = 4  # scores are rounded before any comparison, so thread counts cannot flip one


@dataclass(frozen=True)
class CalibrationSettings:
    """What the bars are calibrated for; published with the model."""

    false_payout_rate: float = 0.01
    min_span: int = 4           # the span bar never goes below this many tokens
    min_span_chars: int = 8
    rare_fraction: float = 0.01
    min_span_rows: int = 4  # chosen on the tuning split (benchmarks/results/attribution.md)
    restated_weight: float = 0.2
    # How many null answers take a gradient pass: 0 chooses it from the training's size
    # (`null_answer_count`); a calibrated index stores the count it used, and the training tokens
    # it was chosen from. Measured in benchmarks/results/attribution_build_cost_sizes.md.
    gradient_null_answers: int = 0
    null_token_share: float = 0.05
    min_gradient_null_answers: int = 40
    max_gradient_null_answers: int = 64
    training_tokens: int = 0

    def __post_init__(self):
        if not 0 < self.false_payout_rate < 1:
            raise AttributionError("false_payout_rate must be between 0 and 1",
                                   field="false_payout_rate")
        for name in ("gradient_null_answers", "min_gradient_null_answers",
                     "max_gradient_null_answers"):
            value = getattr(self, name)
            if value < 3 and (value or name != "gradient_null_answers"):
                raise AttributionError(f"{name} must be at least 3: a bar needs a spread to be "
                                       "estimated from", field=name)
        if self.min_gradient_null_answers > self.max_gradient_null_answers:
            raise AttributionError("min_gradient_null_answers must not exceed "
                                   "max_gradient_null_answers", field="min_gradient_null_answers")
        if not 0 < self.null_token_share <= 1:
            raise AttributionError("null_token_share must be above 0 and at most 1",
                                   field="null_token_share")
        if self.training_tokens < 0:
            raise AttributionError("training_tokens must not be negative", field="training_tokens")
        if not 0 <= self.restated_weight <= 1:
            raise AttributionError("restated_weight must be between 0 and 1",
                                   field="restated_weight")


@dataclass(frozen=True)
class Calibration:
    """The bars of one index and the null statistics they come from."""

    settings: CalibrationSettings
    gradient_bar: dict[str, float]          # score mode -> bar on that mode's score
    span_min_tokens: int                    # spans shorter than this earn nothing
    span_max_rows: int                      # spans in more rows than this are common phrases
    null_queries: int = 0
    null_gradient_max: dict[str, list[float]] = field(default_factory=dict)
    null_longest_span: list[int] = field(default_factory=list)
    # score mode -> bar a span candidate's score must clear; absent in indexes calibrated before
    # candidates could earn, whose receipts then stay what they were
    candidate_bar: dict[str, float] = field(default_factory=dict)
    # null answer (its position in the shipped list) -> the rows that state it (rule 13) or say
    # it in other words for contributors that alone raised the span bar (rules 14 and 15), which
    # that answer was measured without (module docstring)
    null_stated: dict[str, list[int]] = field(default_factory=dict)

    def bar(self, mode: str) -> float:
        if mode not in self.gradient_bar:
            raise AttributionError(
                f"score mode {mode!r} has no calibrated bar; paying modes are "
                f"{', '.join(PAYING_MODES)}", field="score_mode")
        return self.gradient_bar[mode]

    def candidate(self, mode: str) -> float:
        """The candidate bar of `mode`; 1.0 (nothing clears it) when this index has none."""
        self.bar(mode)
        return self.candidate_bar.get(mode, 1.0)

    def generic_rows(self) -> np.ndarray:
        """The rows that state a shipped null answer (or paraphrase one: rules 14, 15): left out of the
        bars' measure, and paid no evidence (module docstring)."""
        return stating_rows(self.null_stated)

    def to_dict(self) -> dict:
        return {"settings": vars(self.settings).copy(), "gradient_bar": dict(self.gradient_bar),
                "span_min_tokens": self.span_min_tokens, "span_max_rows": self.span_max_rows,
                "null_queries": self.null_queries,
                "null_gradient_max": {k: list(v) for k, v in self.null_gradient_max.items()},
                "null_longest_span": list(self.null_longest_span),
                "candidate_bar": dict(self.candidate_bar),
                "null_stated": {k: list(v) for k, v in self.null_stated.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(CalibrationSettings(**data["settings"]), dict(data["gradient_bar"]),
                   int(data["span_min_tokens"]), int(data["span_max_rows"]),
                   int(data.get("null_queries", 0)),
                   {k: list(v) for k, v in data.get("null_gradient_max", {}).items()},
                   list(data.get("null_longest_span", [])),
                   dict(data.get("candidate_bar", {})),
                   {k: list(v) for k, v in data.get("null_stated", {}).items()})


def stating_rows(stated: dict) -> np.ndarray:
    """Every row of `stated` (null answer -> the rows that state it), sorted."""
    return np.array(sorted({int(r) for rows in stated.values() for r in rows}), dtype=np.int64)


def rounded(scores: np.ndarray) -> np.ndarray:
    """Scores at the fixed precision every bar and ranking uses."""
    return np.round(np.asarray(scores, dtype=np.float64), SCORE_DECIMALS)


def span_max_rows(n_rows: int, settings: CalibrationSettings) -> int:
    return max(settings.min_span_rows, int(np.floor(settings.rare_fraction * n_rows)))


def gradient_bar(best: list[float], q: float) -> float:
    """The bar above the null answers' best scores: their q-quantile or the normal prediction
    bound at q, whichever is higher (module docstring), rounded like every score."""
    # Student's t quantile from scipy.special: the same numbers as scipy.stats.t.ppf, without the
    # second or so of CPU that importing scipy.stats adds to every index build.
    from scipy.special import stdtrit

    values = np.asarray(best, dtype=np.float64)
    n = len(values)
    bound = values.mean() + float(stdtrit(n - 1, q)) * values.std(ddof=1) * np.sqrt(1 + 1 / n)
    empirical = float(np.quantile(values, q, method="higher"))
    return max(0.0, float(rounded(max(empirical, bound))))


def candidate_bar(null_scores: np.ndarray, false_payout_rate: float, max_rows: int) -> float:
    """The bar a span candidate's score must clear: the (1 - rate / max_rows) quantile of the
    null answers' (rounded) scores against every row (module docstring)."""
    q = 1.0 - false_payout_rate / max(1, max_rows)
    return max(0.0, float(rounded(np.quantile(np.ravel(null_scores), q, method="higher"))))


def null_answer_count(settings: CalibrationSettings, training_tokens: int,
                      answer_tokens: float, available: int = len(NULL_QUERIES)) -> int:
    """How many null answers take a gradient pass after a training that ran `training_tokens`
    tokens: those whose `answer_tokens` each (after the template head) make up about
    `null_token_share` of them, up to the settings' cap; 0 (the gradient is not calibrated and
    pays nothing) when that is fewer than the settings' floor (module docstring).

    A count set in the settings is kept; an unknown training size (0) takes the cap.
    """
    if settings.gradient_null_answers:
        wanted = settings.gradient_null_answers
    elif training_tokens <= 0:
        wanted = settings.max_gradient_null_answers
    else:
        wanted = int(settings.null_token_share * training_tokens / max(answer_tokens, 1.0))
        if wanted < settings.min_gradient_null_answers:
            return 0
        wanted = min(settings.max_gradient_null_answers, wanted)
    return min(wanted, available)


def graded_null_answers(count: int, available: int) -> list[int]:
    """Which of the `available` null answers the `count` gradient passes go to: spread evenly
    over the list, which is grouped by kind, so that a few still sample every kind."""
    count = min(count, available)
    return [i * available // count for i in range(count)]


@dataclass(frozen=True)
class NullAnswers:
    """The null answers tokenized for an index: examples, content weights, longest rare spans,
    and the rows that state each answer (measured without them: module docstring)."""

    examples: list
    weights: dict[int, list[float]]
    longest: list[int]
    max_rows: int
    stated: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def answer_tokens(self, head: int) -> float:
        """Mean tokens of an answer's pass after the template head (what its gradient pass runs)."""
        return float(np.mean([len(e.input_ids) - head for e in self.examples]))


def null_answers(index, tokenizer, settings: CalibrationSettings,
                 queries: tuple[tuple[str, str], ...] = NULL_QUERIES) -> NullAnswers:
    """Tokenize every null answer as a user's answer would be and find its longest rare span."""
    max_rows = span_max_rows(len(index), settings)
    examples, weights, readings, stated = [], {}, [], {}
    for i, (prompt, answer) in enumerate(queries):
        example = replace(answer_example(tokenizer, prompt, answer), index=i)
        readings.append(span_readings(tokenizer, prompt, answer, example, index.spans.forms))
        context = prompt_token_ids(example)
        weights[i] = content_weights(tokenizer, context, readings[-1][0], settings.restated_weight)
        examples.append(example)
        rows = sorted({int(r) for ids in readings[-1] for r in index.spans.rows_stating(ids)})
        # held by more rows than a rare span may be, it is a common phrase of this Datanet
        # ("Hello! How can I help you today?" opening every reply), which no rare span measures
        if 0 < len(rows) <= max_rows:
            stated[i] = tuple(rows)
    longest = _longest_spans(index, readings, settings, max_rows, stating_rows(stated))
    stated, longest = _paraphrasing_rows(index, readings, settings, max_rows, stated, longest)
    return NullAnswers(examples, weights, longest, max_rows, stated)


def _longest_spans(index, readings: list, settings: CalibrationSettings, max_rows: int,
                   left_out) -> list[int]:
    """Each null answer's longest rare span in the rows outside `left_out`."""
    besides = frozenset(int(r) for r in left_out)
    return [max(index.spans.longest_rare_span(ids, max_examples=max_rows,
                                              min_chars=settings.min_span_chars, besides=besides)
                for ids in answer_readings)
            for answer_readings in readings]


def span_bar(longest: list[int], settings: CalibrationSettings) -> int:
    """The span bar above the null answers' longest rare spans (module docstring)."""
    q = 1 - settings.false_payout_rate
    return max(settings.min_span, int(np.quantile(longest, q, method="higher")) + 1)


def _paraphrasing_rows(index, readings: list, settings: CalibrationSettings, max_rows: int,
                       stated: dict, longest: list[int]) -> tuple[dict, list[int]]:
    """`stated` with the rows of the contributors that each alone hold a span setting the span
    bar which hold a null answer's rare span as long as the bar the other rows set, and the
    longest spans without them (module docstring). Repeated while such contributors raise it."""
    owners = np.array([e.contributor for e in index.examples])
    stated = dict(stated)
    bar = span_bar(longest, settings)
    while bar > settings.min_span:
        generic = stating_rows(stated)
        holders = _sole_holders(index, readings, settings, max_rows, longest, bar, owners,
                                set(generic.tolist()))
        if not holders:
            break  # a span that sets the bar is in the rows of two contributors or more
        theirs = np.flatnonzero(np.isin(owners, sorted(holders)))
        without = _longest_spans(index, readings, settings, max_rows, np.union1d(generic, theirs))
        lower = span_bar(without, settings)
        if lower >= bar:
            break
        for i, answer_readings in enumerate(readings):
            # of any number of characters: the floor on characters spares an honest row a short
            # chance match, and these contributors' rows raised the bar ("Adding two and two
            # gives you four." holds " four.<|im_end|>\n" of "Two plus two is four.", which a
            # prompt asking its question would pay)
            rows = {int(r) for ids in answer_readings
                    for r in index.spans.rows_with_rare_span(
                        ids, min_len=lower, max_examples=max_rows)}
            rows &= set(theirs.tolist())
            if rows:
                stated[i] = tuple(sorted(set(stated.get(i, ())) | rows))
        if len(stating_rows(stated)) == len(generic):
            break  # nothing more left out (cannot happen while they lower the bar; never loop)
        longest = _longest_spans(index, readings, settings, max_rows, stating_rows(stated))
        bar = span_bar(longest, settings)
    return stated, longest


def _sole_holders(index, readings: list, settings: CalibrationSettings, max_rows: int,
                  longest: list[int], bar: int, owners: np.ndarray, left_out: set[int]
                  ) -> set[str]:
    """The contributors whose rows alone hold the span of a null answer that sets the span bar,
    one contributor per such answer; empty when any such span is in two contributors' rows.

    Several contributors may each hold one (rule 15): identities that split the uploads between
    them, each with a paraphrase as long as the other's, raised the bar just as one did."""
    holders: set[str] = set()
    for answer_readings, length in zip(readings, longest):
        if length < bar - 1:
            continue
        rows = {int(r) for ids in answer_readings
                for r in index.spans.rows_with_rare_span(
                    ids, min_len=bar - 1, max_examples=max_rows,
                    min_chars=settings.min_span_chars)} - left_out
        who = {str(owners[r]) for r in rows}
        if len(who) != 1:
            return set()
        holders |= who
    return holders


def null_features(index, model, tokenizer, nulls: NullAnswers, graded: list[int],
                  batch_size: int = 8, heads: dict | None = None) -> np.ndarray:
    """(len(graded), dim) gradient features of the null answers at positions `graded`.

    The answers run a pass at a time, each pass holding about `batch_size` answers' worth of
    tokens: the template head once, then one row per answer (features.feature_batches); `heads`
    holds the head's keys and values when an earlier pass over the same weights ran it.
    """
    if not graded:  # a training too small to afford the floor's passes (module docstring)
        return np.zeros((0, index.projector.dim))
    chosen = [nulls.examples[i] for i in graded]
    width = max(len(e.input_ids) for e in chosen)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if index.config.per_token_query:
        features = token_mean_features(model, chosen, index.projector, nulls.weights,
                                       max_len=width, pad_id=pad, batch_size=batch_size,
                                       heads=heads)
    else:
        features = example_features(model, chosen, index.projector, max_len=width, pad_id=pad,
                                    batch_size=batch_size, token_weights=nulls.weights,
                                    heads=heads)
    return np.stack([features[e.index] for e in chosen])


def calibrate(index, model, tokenizer, settings: CalibrationSettings = CalibrationSettings(),
              *, queries: tuple[tuple[str, str], ...] = NULL_QUERIES,
              batch_size: int = 8, training_tokens: int = 0,
              heads: dict | None = None) -> Calibration:
    """Attribute every null answer against `index` and set the bars above what they reach.

    `training_tokens` (what the training ran, `tokens_seen`; 0: the one `settings` holds, as a
    published index's do) chooses how many null answers take a gradient pass unless `settings`
    fixes it; the returned settings hold the count used.
    `heads` is the template head's keys and values from the index's own pass
    (features.example_features), when the model is still the one that pass ran.
    """
    nulls = null_answers(index, tokenizer, settings, queries)
    training_tokens = training_tokens or settings.training_tokens
    count = null_answer_count(settings, training_tokens,
                              nulls.answer_tokens(len(index.projector.head)), len(queries))
    settings = replace(settings, gradient_null_answers=count,
                       training_tokens=max(0, int(training_tokens)))
    graded = graded_null_answers(count, len(queries))
    features = null_features(index, model, tokenizer, nulls, graded, batch_size, heads)
    return bars_from_null_features(index, settings, features, nulls)


def bars_from_null_features(index, settings: CalibrationSettings, features: np.ndarray,
                            nulls: NullAnswers) -> Calibration:
    """The calibration of `index` from the graded null answers' `features` and every null
    answer's longest rare span, measured without the rows that state a null answer (module
    docstring). Without a feature (a training too small to afford the floor's gradient passes)
    the gradient and candidate bars are 1: no score clears them."""
    q = 1 - settings.false_payout_rate
    # uncalibrated: no null answer was scored, and no score clears a bar of 1
    null_max = {mode: [] for mode in PAYING_MODES}
    bars = {mode: 1.0 for mode in PAYING_MODES}
    candidates = dict(bars)
    for mode in PAYING_MODES if len(features) else ():
        scores = rounded(index.gradient_scores(features, mode))
        kept = np.ones(scores.shape, dtype=bool)
        kept[:, stating_rows(nulls.stated)] = False
        best = [float(row[keep].max()) if keep.any() else 0.0 for row, keep in zip(scores, kept)]
        null_max[mode] = best
        bars[mode] = gradient_bar(best, q)
        # a candidate named by the text never needs more than a row the gradient alone would pay
        candidates[mode] = min(bars[mode], candidate_bar(
            scores[kept] if kept.any() else np.zeros(1), settings.false_payout_rate, nulls.max_rows))
    return Calibration(settings, bars, span_bar(nulls.longest, settings), nulls.max_rows,
                       len(nulls.examples), null_max, list(nulls.longest), candidates,
                       {str(i): list(rows) for i, rows in sorted(nulls.stated.items())})
