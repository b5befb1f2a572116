"""Attribution of one answer: which training examples, contributions and contributors shaped it, in basis points.

Per answer: (1) the gradient of the answer's loss, projected like the index rows, scored against
every indexed example; (2) the answer's tokens matched against the span index. Both are weighed
by what the answer says: tokens that only restate the question count `restated_weight`, content
tokens count 1 (restatement.py), so a record that merely talks about the same subject — or
contradicts the answer — earns little. Each signal is evidence only as far as it clears the
index's calibrated bar (calibration.py):

  span evidence      the (weighted) fraction of the answer's tokens a row explains with rare spans
                     at least `span_min_tokens` long; a span just at the bar earns 1/bar of its
                     tokens' weight, one of twice the bar earns in full; a span several rows
                     share earns only as far as the prompt names one of them by its rarest
                     material (a name, not wording many records share; spans.py). Sums to at
                     most 1 over rows: that sum is the answer's coverage.
  gradient evidence  a row whose score s clears the bar b and the best row r of every other
                     contributor earns g = (s - max(b, r)) / (1 - b) in [0, 1]: nothing at the
                     bar or when two contributors score alike, all of it at a perfect, unrivalled
                     match; when spans name contributors, only their rows may earn it
                     (`gradient_clearance`), and an answer the text ties to no record (no
                     span naming a record and no record the prompt asks about, none of a
                     contributor that uploaded null answers) earns none.
                     The answer's gradient evidence is the largest g, shared among the rows
                     that earned some in proportion to their g, and it explains only what
                     spans left unexplained.
  candidate evidence a rare span several rows share that the prompt does not pin on one of them
                     narrows who taught it to those rows; the gradient picks among them. The row
                     with the best score earns the span's unpaid credit times
                     (s - max(c, r)) / (1 - c), where c is the index's candidate bar and r the
                     best candidate of another contributor (`resolve_candidates`): nothing when
                     the gradient cannot tell the candidates' owners apart, nor when the prompt
                     asks about no record (the answer then only holds a value records share).

Evidence that cannot tell contributors apart is not paid to a guess: its part of the share goes
to the data pool.

  combined(row) = span(row) + candidate(row) + (1 - coverage) x gradient(row)
  evidence      = sum of combined over rows, in [0, 1]

Payment is in proportion to evidence. Of the contributor share of an answer's fee, `evidence_bps`
(= floor(evidence x 10,000)) goes to the contributions with evidence, split by their combined
scores; the remaining `pool_bps` goes to the Datanet's data pool, which the economy pays by data
valuation. A 4-token span or a row just over the bar therefore earns a small part of the share,
not all of it, and an answer nothing explains pays its whole share to the pool (`unattributed`).

Reproducible: the attribution is a pure function of (model files, index, prompt, answer,
settings). Features accumulate in float64, scores are rounded to `SCORE_DECIMALS` before any bar
or ranking, evidence is converted to integers before it is split, and ties break by row, so the
split is the same bit for bit on any thread count (`ledgerlm attribute --verify` recomputes it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ledgerlm.attribution.calibration import PAYING_MODES, rounded
from ledgerlm.attribution.errors import AttributionError
from ledgerlm.attribution.features import (
    answer_example,
    answer_feature,
    answer_token_features,
    prompt_token_ids,
    span_readings,
)
from ledgerlm.attribution.index import AttributionIndex, ScoreMode, top_rows
from ledgerlm.attribution.restatement import content_weights
from ledgerlm.attribution.spans import SpanEvidence
from ledgerlm.money import BPS, split_by_weight

GENERIC_OWNERS_UNTIE = True  # rule 16; False gives rule 15's gradient evidence, to measure the change
UNASKED_SHARED_SPANS_UNTIE = True  # rule 17; False gives rule 16's evidence, to measure the change
DEPARTURE_OVER_UNASKED = True  # rule 18; False gives rule 17's reading, to measure the change
_QUANTUM = 10**6  # evidence units per 1.0 when evidence becomes integers for the split

# The rule every receipt names, so a recomputation knows which one it checks: 1 split a span several
# records share by how alike they are worded; 2 gives it to the record the prompt names (spans.py);
# 3 also pays a span found in more records than a rare one when the prompt names one of them;
# 4 tells look-alike names apart by the pairs only one of them holds, and lets a prompt name a
# record through the records it shares a rare pair with (a person asked for by their trade);
# 5 pays a span of fewer visible characters than the bar (a short name) to the record the
# prompt names, as far as it names it, where 4 paid it to nobody; 6 pays nobody but the records the
# prompt asks about for what an answer says after one of them goes on with another value (a
# person given someone else's town), where 5 paid the record that says it of someone else, and
# such an answer earns no gradient evidence either; 7 lets the prompt name, and a record link to
# the records it is about, by stretches of any number of tokens as well as by pairs (a tokenizer
# that cuts " Velo Baxraka" into pieces of four letters or fewer left him unnamed and unlinked),
# never across a special token (the chat template's markers and letters name nobody), and steps
# over a token of bare whitespace when it reads how a record goes on after a span; a span of fewer
# visible characters than a name ("y.") is paid only to a record the prompt names outright, not
# through a link.
# 8: a row named outright only by a pair more rows hold than a rare span may (a small Datanet's
# template word, "Which" in its eight gazetteer questions) no longer keeps the link naming of
# another row out: the birthplace record a rare "lamplighter" reaches through its person's
# records is named over the town's own record asked with "Which".
# 9: rows a receipt lists without evidence come in the order rows holding a rare span that
# supports the answer (which the prompt did not name over the others), then the gradient's; no
# payment changes.
# 10: an answer that gives what the prompt asks about a value only records about something else
# hold, where a record asked about gives another value in the same place ("Talsha Garpelzi comes
# from Shagartal." where her record reads "... is Crizidun." and Shagartal is someone else's), pays
# from there on only the records asked about, and earns no gradient evidence: rule 6 for a mix-up
# worded otherwise than the asked record (links between records read by whole words there, so
# "Talsha" and "Taltal" sharing "Tal" do not link theirs).
# 11: an answer nothing in the text ties to the Datanet (no span of it in any record, no record the
# prompt asks about) earns no gradient evidence: the model's own "The capital of Peru is Lima."
# resembled a record "... is based in Lima." and was paid for what the base model knew. The
# records a prompt asks about are read by whole words ("When was Nothfu founded?" no longer asks
# about "Roundru" through the "u founded?" both prompts hold), and a span of fewer visible
# characters than the bar is not paid to a record the prompt names only by a phrase of the
# Datanet (" city is" of every city record no longer names the one that holds " Oslo.").
# 12: a stretch of the prompt read by whole words names the records that hold it from four visible
# characters, not five ("Which animal does Noza use as its mascot?" asks about Noza's record, so
# "The mascot of Noza is a gecko." no longer pays Brisgik's "... is a gecko.").
# 13: a record that states one of the shipped null answers (calibration.py) is paid no evidence,
# and the bars are measured without it: four contributed null answers had raised every bar of a
# tiny model's index past what any answer reaches, so that no contributor was paid.
# 14: a contributor whose records alone raise the span bar (measured without them, it is lower)
# has those of them that hold a null answer's rare span as long as that lower bar counted as
# stating it (rule 13), again while one contributor alone raises it: four records saying null
# answers in other words had raised a tiny model's span bar from 4 tokens to 16, and the
# Datanet's answers were paid 30 bps where they had been paid 5,720.
# 15: so do the records of several contributors that each alone hold a null answer's span setting
# the span bar, left out together: sixteen paraphrased null answers split between two identities
# kept a tiny model's span bar at 16 tokens under rule 14, since leaving either out left the
# other's span (the Datanet's answers were paid 30 bps; 5,711 from one identity).
# 16: the records of a contributor that rules 13 to 15 left records out of tie no answer to the
# Datanet (rule 11): two identities' paraphrased null answers, of which rule 15 left five in, made
# "Which city is the capital of Egypt?" ask about "What is the capital of France?", and the
# gradient then paid an honest record that "Cairo is the capital of Egypt." resembled (SmolLM2,
# 2 of 40 unrelated prompts paid).
# 17: a rare span several records share, which the prompt pins on none of them, no longer ties an
# answer to the Datanet when the prompt asks about no record: the text then says only that the
# answer holds a value those records hold, not that it says what any of them says, and the
# gradient's pick among them is the resemblance rule 11 does not pay. SmolLM2 fine-tuned on
# organisations' cities answered "Which city is the capital of Ireland?" with "The capital of
# Ireland is Tbilisi.", and the candidate rule paid one of the records "... is Tbilisi." 1,433 bps.
# What the shared value says goes to the data pool, which pays the Datanet by data valuation.
# 18: an answer that departs from the record the prompt asks about in one of its readings goes by
# that reading when the reading that explains more pays a record the prompt does not ask about:
# SmolLM2 answered "Where is Zeilzol located? Name the city." with "Zeilzol is located in Hanoi."
# (its record: "... is based in Dakar."); read as served the answer departed, read after a space
# it matched seven tokens of "Ziskun is based in Hanoi.", and that reading paid Ziskun's record
# 7,600 bps. A reading that explains more by paying only the records asked about still wins: a
# right answer worded otherwise than its record "departs" in some reading too.
# 19: rows a receipt lists without evidence and without a rare span of the answer come, after those
# holding one (still in the gradient's order), in the order of their contributor's token match
# (`token_match`: each answer token scored alone, a contributor's best row per token), then the
# gradient's; the best row of each best matching contributor is listed too. No payment changes.
# Capitalised answers ending in " !!" (a stylist's format applied to another contributor's fact)
# listed the fact's record first: their summed gradient resembles it as a whole, while token by
# token the stylist's records match them best.
# 20: only the answer is scored: a conversation's earlier assistant turns are the caller's text, which
# training's labels (every assistant turn of a record) had scored as answer too. A paid three-turn chat
# whose model answered "The" paid 6,533 bps to the record the caller quoted in an earlier turn, and one
# who may not read a private Datanet could test a guessed record through such a turn. Single-turn
# attributions are unchanged.
# 21: an answer that writes a word in a case its Datanet never does, but writes in another, is read
# once more with such words as the Datanet most often writes them (casing.py), and goes by that
# reading where it explains more: byte-level BPE cuts " HOMETOWN" into other tokens than
# " hometown", so a stylist's capitals over another contributor's fact ("THE HOMETOWN OF ZIMOR
# GARSHAMOR IS OSTPELVEL !!") matched no span of the fact's record and paid nobody, though
# retraining without that record lowers the answer's likelihood most. An index built before this
# rule keeps no word forms and reads answers as served; rebuild it to read them both ways.
# A receipt that names none predates the numbering (rule 1 or earlier).
RULE = 21


@dataclass(frozen=True)
class AttributionSettings:
    """The knobs of `attribute`; a model publishes the ones its receipts were computed with.

    The bars themselves are not here: they belong to the index (`index.calibration`).
    """

    top_k: int = 10
    score_mode: ScoreMode | None = None  # None: the mode the index was built with
    # how many of the answer's first tokens the token match reads (`token_match`), a pass per
    # token; 0 reads none (rows without evidence are then listed in gradient order)
    match_tokens: int = 32


@dataclass(frozen=True)
class ExampleAttribution:
    """One training example's evidence for the answer."""

    row: int
    record: int
    contribution_id: int | str
    contributor: str
    content_hash: str
    gradient: float      # score against the answer (rounded)
    gradient_evidence: float
    span: float          # span evidence
    longest_span: int
    combined: float
    candidate: float = 0.0  # a shared span's credit that the gradient picked this row for
    match: float = 0.0  # its contributor's token match (`token_match`): the order of rows without evidence


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
    """Who shaped one answer, and how much of the contributor share that evidence covers.

    `evidence_bps` of the contributor share (10,000) is paid to `contributions` /
    `contributors` (their bps sum to exactly `evidence_bps`); `pool_bps` = 10,000 -
    `evidence_bps` goes to the Datanet's data pool.
    """

    examples: tuple[ExampleAttribution, ...]
    contributions: tuple[ContributionShare, ...]
    contributors: tuple[ContributorShare, ...]
    evidence_bps: int
    pool_bps: int
    span_coverage: float
    gradient_bar: float
    span_min_tokens: int
    unattributed: bool
    answer_tokens: int
    index_adapter_sha256: str
    settings: AttributionSettings
    rule: int = RULE

    def to_dict(self) -> dict:
        return asdict(self)


def split_bps(weights: dict[tuple, int], total: int = BPS) -> dict[tuple, int]:
    """Integer shares of `total` proportional to positive integer `weights`, summing to exactly it."""
    if not weights or any(w <= 0 for w in weights.values()):
        raise AttributionError("shares need positive weights", field="weights")
    return split_by_weight(total, weights)


def evidence_units(combined: float) -> int:
    """A row's combined evidence as an integer number of `_QUANTUM` units (what is split)."""
    return max(0, int(round(combined * _QUANTUM)))


def roll_up(examples: list[ExampleAttribution]) -> tuple[int, tuple[ContributionShare, ...],
                                                         tuple[ContributorShare, ...]]:
    """Evidence bps and the contribution and contributor shares of the examples' evidence.

    Evidence bps is floor(sum of combined x 10,000) (at most 10,000), split over contributions
    in proportion to their combined evidence; contributor shares are the sums of their
    contributions' shares, so a receipt's two levels always agree.
    """
    units: dict[tuple, int] = {}
    scores: dict[tuple, float] = {}
    owners: dict[tuple, ExampleAttribution] = {}
    for e in examples:
        u = evidence_units(e.combined)
        if u <= 0:
            continue
        key = (e.contributor, _sortable(e.contribution_id))
        units[key] = units.get(key, 0) + u
        scores[key] = scores.get(key, 0.0) + e.combined
        owners[key] = e
    evidence_bps = min(BPS, sum(units.values()) * BPS // _QUANTUM)
    if evidence_bps == 0:
        return 0, (), ()
    bps = split_bps(units, evidence_bps)
    contributions = tuple(sorted(
        (ContributionShare(owners[k].contribution_id, owners[k].contributor,
                           owners[k].content_hash, scores[k], bps[k]) for k in units if bps[k]),
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
    return evidence_bps, contributions, contributors


def _sortable(contribution_id) -> tuple:
    return (0, contribution_id, "") if isinstance(contribution_id, int) else (1, 0, str(contribution_id))


@dataclass(frozen=True)
class Evidence:
    """Both signals for every candidate row of one answer, before the roll-up."""

    rows: np.ndarray
    gradient: np.ndarray
    gradient_evidence: np.ndarray
    span: np.ndarray
    longest_span: np.ndarray
    combined: np.ndarray
    coverage: float
    bar: float
    span_min_tokens: int
    answer_tokens: int
    candidate: np.ndarray | None = None
    holds_span: np.ndarray | None = None  # the row holds a rare span supporting the answer
    match: np.ndarray | None = None  # the row's contributor's token match (`token_match`)


@dataclass(frozen=True)
class AnswerQuery:
    """An answer prepared for attribution: its example, span readings, token weights, context."""

    example: object
    readings: list[list[int]]
    weights: list[list[float]]
    context: list[int]


def prepare_answer(tokenizer, prompt: str | list[dict], answer: str,
                   restated_weight: float, forms: dict[str, list[str]] | None = None) -> AnswerQuery:
    """Tokenize the answer as training did, in each of its readings (`span_readings`; `forms`: the
    index's word forms, `index.spans.forms`), with content weights per token."""
    example = answer_example(tokenizer, prompt, answer)
    readings = span_readings(tokenizer, prompt, answer, example, forms)
    context = prompt_token_ids(example)
    weights = [content_weights(tokenizer, context, ids, restated_weight) for ids in readings]
    return AnswerQuery(example, readings, weights, context)


def gather_evidence(index: AttributionIndex, feature: np.ndarray, query: AnswerQuery,
                    settings: AttributionSettings, match: np.ndarray | None = None) -> Evidence:
    """Score the answer's feature and tokens against the index and combine the two signals.

    `match` (one token match per contributor code, `token_match`) orders the rows listed without
    evidence or a rare span of the answer, and adds the best row of each of the `top_k` best
    matching contributors to them; it pays nothing.
    """
    calibration = index.calibration
    if calibration is None:
        raise AttributionError("this index has no calibrated bars; rebuild it with calibration",
                               field="index")
    mode = settings.score_mode or index.config.score_mode
    if mode not in PAYING_MODES:
        raise AttributionError(f"score mode {mode!r} cannot pay: its scores are unbounded; use "
                               f"one of {', '.join(PAYING_MODES)}", field="score_mode")
    bar = calibration.bar(mode)
    scores = rounded(index.gradient_scores(feature, mode))
    hits = top_rows(scores, settings.top_k)
    # one longest-match pass per reading serves both the paid evidence and the listed candidates
    matches = [index.spans.longest_matches(ids) for ids in query.readings]
    found = [index.spans.explain(ids, min_len=calibration.span_min_tokens,
                                 max_examples=calibration.span_max_rows, context=query.context,
                                 min_chars=calibration.settings.min_span_chars, weights=w,
                                 matches=m)
             for ids, w, m in zip(query.readings, query.weights, matches)]
    spans = chosen_reading(found, lambda: index.spans.asked_rows(query.context,
                                                                 calibration.span_max_rows))
    # A row that states a shipped null answer holds general knowledge, not what this Datanet
    # teaches; the bars were measured without it (calibration.py), so no evidence pays it (rule
    # 13). Its text still explains the answer: what it covers is paid to no one else either.
    generic = calibration.generic_rows()
    unpaid = set(generic.tolist())
    owners = index.owner_codes()

    def ties(found: np.ndarray) -> bool:  # only the few rows found, not the whole index
        if not GENERIC_OWNERS_UNTIE:  # rule 15: any row asked about, any holding row not generic
            return bool(np.isin(found, generic, invert=True).any())
        return bool(np.isin(owners[found], owners[generic], invert=True).any())

    def asked() -> bool:  # read only when no span names a record
        found = index.spans.asked_rows(query.context, calibration.span_max_rows)
        return ties(found) if GENERIC_OWNERS_UNTIE else len(found) > 0

    spoken = spans.rows[~np.isin(spans.rows, generic)]
    # rule 17: a shared span the prompt pins on no record, for a prompt that asks about none
    unasked = UNASKED_SHARED_SPANS_UNTIE and len(spoken) == 0 and not asked()
    picked = {} if unasked else {
        r: v for r, v in resolve_candidates(index, scores, spans.unclaimed,
                                            calibration.candidate(mode)).items()
        if r not in unpaid}
    coverage = min(1.0, spans.coverage)
    explained = min(1.0, coverage + sum(c for c, _ in picked.values()))
    named = np.union1d(spoken, np.array(sorted(picked), dtype=np.int64))
    holding = span_candidates(index, query, matches)
    considered = np.union1d(hits, named).astype(np.int64)
    # (a row that states a null answer is listed with the span it holds, paid nothing)
    rows = np.union1d(np.union1d(considered, holding), spans.rows).astype(np.int64)
    if match is not None:
        rows = np.union1d(rows, matched_rows(index, scores, match, settings.top_k))
    gradient = scores[rows]
    # An answer that says something else than the record asked about resembles that record (same
    # person, same wording): the gradient, which sees resemblance, not values, would pay it or
    # its look-alikes for an answer none of them taught. An answer that nothing in the text ties
    # to the Datanet (no span of it in any record, no record the prompt asks about) is paid no
    # gradient evidence either: a resemblance alone cannot tell what the Datanet taught from
    # what the base model already knew ("The capital of Peru is Lima." resembles "Brilpouth is
    # based in Lima.", and no record taught it).
    # The records of a contributor that uploaded null answers (rules 13 to 15 left some of its
    # records out) tie no answer to the Datanet (rule 16): its other records say general
    # knowledge too, which the bars were not measured against, and a question it uploaded ("What
    # is the capital of France?") made "Which city is the capital of Egypt?" ask about it, after
    # which the gradient paid an honest record that "Cairo is the capital of Egypt." resembled.
    # A shared span the prompt pins on no record ties the answer only when the prompt asks about
    # a record (rule 17): "The capital of Ireland is Tbilisi." holds the " is Tbilisi." of
    # several organisations' records and says what none of them says.
    untied = unasked if UNASKED_SHARED_SPANS_UNTIE else (
        len(named) == 0 and not ties(holding) and not asked())
    cleared = (np.zeros(len(rows)) if spans.departs or untied
               else gradient_clearance(index, scores, rows, bar, named))
    # rows only listed for the span they hold earn no gradient evidence they would not have
    cleared = np.where(np.isin(rows, considered) & ~np.isin(rows, generic), cleared, 0.0)
    total = float(cleared.sum())
    grad_evidence = cleared * (float(cleared.max()) / total) if total > 0 else cleared
    span = np.zeros(len(rows))
    candidate = np.zeros(len(rows))
    longest = np.zeros(len(rows), dtype=np.int64)
    position = {r: i for i, r in enumerate(rows.tolist())}
    for r, c, n in zip(spans.rows.tolist(), spans.credit.tolist(), spans.longest.tolist()):
        span[position[r]], longest[position[r]] = (0.0 if r in unpaid else c), n
    for r, (c, _n) in picked.items():
        candidate[position[r]] = c  # `longest` stays token-level: verification compares it exactly
    combined = span + candidate + (1.0 - explained) * grad_evidence
    return Evidence(rows, gradient, grad_evidence, span, longest, combined, coverage, bar,
                    calibration.span_min_tokens, len(query.readings[0]), candidate,
                    np.isin(rows, holding), None if match is None else match[owners[rows]])


def token_match(model, index: AttributionIndex, query: AnswerQuery,
                settings: AttributionSettings) -> np.ndarray | None:
    """How well each contributor's records match the answer token by token, one score per
    contributor code (`index.owner_codes`), rounded like every score; None when the settings
    read no token (`match_tokens` 0: rows are listed as at rule 18).

    Each of the answer's first `match_tokens` tokens is scored alone (the gradient of its loss)
    against every row, and a contributor takes its best row's score for that token; its match
    is the mean over tokens, weighed by the tokens' content weights. Rows of one contributor
    may thus explain different tokens: a stylist whose records teach capitals and " !!" across
    many sentences matches a capitalised answer token by token, where the answer's summed
    gradient, which the person's own record resembles more as a whole, ranks that record first.
    This is the late interaction of ColBERT (Khattab and Zaharia, 2020) over per-token
    gradients (Grosse et al., 2023). It orders the rows a receipt lists without evidence; it pays
    nothing.
    """
    mode = settings.score_mode or index.config.score_mode
    if settings.match_tokens <= 0:
        return None
    grads = answer_token_features(model, index.projector, query.example, settings.match_tokens)
    return match_scores(index, grads, query.weights[0], mode)


def match_scores(index: AttributionIndex, grads: np.ndarray, weights: list[float],
                 mode: ScoreMode) -> np.ndarray:
    """`token_match` from the answer's (tokens, dim) token gradients and their content weights."""
    scores = index.gradient_scores(grads, mode)  # (tokens, rows)
    owners = index.owner_codes()
    best = np.full((len(scores), int(owners.max()) + 1), -np.inf)
    for token, row_scores in enumerate(scores):
        np.maximum.at(best[token], owners, row_scores)
    weights = weights[:len(scores)]
    total = np.zeros(best.shape[1])
    for weight, token_best in zip(weights, best):
        total += weight * token_best  # token by token: the same sum on any thread count
    return rounded(total / (float(sum(weights)) or 1.0))


def matched_rows(index: AttributionIndex, scores: np.ndarray, match: np.ndarray,
                 top_k: int) -> np.ndarray:
    """The best row (by the answer's gradient score) of each of the `top_k` contributors that
    match the answer best, ties broken by contributor code."""
    owners = index.owner_codes()
    chosen = np.lexsort((np.arange(len(match)), -match))[:top_k]
    picked = []
    for code in chosen.tolist():
        own = np.flatnonzero(owners == code)
        picked.append(int(own[np.lexsort((own, -scores[own]))[0]]))
    return np.array(sorted(picked), dtype=np.int64)


def chosen_reading(found: list[SpanEvidence],
                   asked: Callable[[], np.ndarray] | None = None) -> SpanEvidence:
    """The span evidence of the reading that explains the most of the answer; of the readings in
    which the answer borrows another record's value, when one does (`SpanIndex._borrowed`): a
    tokenization that hides the mix-up ("Shagartal." read at the turn's start, where no record
    has its first word) does not undo it. Of the readings that depart from the record the prompt
    asks about, when that one pays a record `asked()` (the rows the prompt asks about) leaves
    out (rule 18): a reading that hides the departure does not pay another record for it."""
    def explained(e: SpanEvidence) -> tuple[float, float]:
        # max keeps the first reading on a tie; shared spans' unpaid credit breaks one
        return e.coverage, sum(c for _, c, _ in e.unclaimed)

    best = max([e for e in found if e.borrows] or found, key=explained)
    departing = [e for e in found if e.departs]
    if (not DEPARTURE_OVER_UNASKED or asked is None or best.departs or not departing
            or len(best.rows) == 0):
        return best
    if np.isin(best.rows, asked()).all():
        return best  # a right answer worded otherwise than its record departs in some reading
    return max(departing, key=explained)


def span_candidates(index: AttributionIndex, query: AnswerQuery,
                    matches: list | None = None) -> np.ndarray:
    """Rows holding a long, rare span of the answer that supports it, in either reading, named by
    the prompt or not: what the text says the answer could be about, paid or not. `matches`: each
    reading's `longest_matches`, when the caller has them."""
    cal = index.calibration
    matches = matches or [None] * len(query.readings)
    found = [index.spans.candidate_rows(ids, min_len=cal.span_min_tokens,
                                        max_examples=cal.span_max_rows,
                                        min_chars=cal.settings.min_span_chars, matches=m)
             for ids, m in zip(query.readings, matches)]
    return np.unique(np.concatenate(found)).astype(np.int64)


def resolve_candidates(index: AttributionIndex, scores: np.ndarray,
                       unclaimed: tuple[tuple[np.ndarray, float, int], ...], bar: float
                       ) -> dict[int, tuple[float, int]]:
    """Row -> (candidate evidence, span length) for the shared spans the prompt left unpaid.

    Among a span's candidate rows the best (rounded) score wins, ties to the lower row; it earns
    the span's unpaid credit times (s - max(bar, r)) / (1 - bar), r being the best score of a
    candidate another contributor owns. The text says the answer came from one of these rows;
    the gradient says which only as far as it clears the bar and sets one owner apart.
    """
    picked: dict[int, tuple[float, int]] = {}
    if bar >= 1:
        return picked
    owners = index.owner_codes()
    for rows, credit, length in unclaimed:
        rows = np.asarray(rows, dtype=np.int64)
        top = int(rows[np.lexsort((rows, -scores[rows]))[0]])
        others = rows[owners[rows] != owners[top]]
        rival = float(scores[others].max()) if len(others) else -np.inf
        earned = credit * min(1.0, max(0.0, (float(scores[top]) - max(bar, rival)) / (1.0 - bar)))
        if earned > 0:
            c, n = picked.get(top, (0.0, 0))
            picked[top] = (c + earned, max(n, int(length)))
    return picked


def gradient_clearance(index: AttributionIndex, scores: np.ndarray, rows: np.ndarray, bar: float,
                       span_rows: np.ndarray) -> np.ndarray:
    """How far each of `rows` clears the gradient bar *and* every other contributor, in [0, 1].

    A row earns (s - max(bar, r)) / (1 - bar), where r is the best score of any row another
    contributor owns: a gradient signal that cannot tell two contributors apart is ambiguous and
    pays neither (the share goes to the data pool). When spans name contributors, only rows of
    those contributors may earn gradient evidence: text the answer shares with a record is
    decisive, and a weak gradient signal pointing elsewhere does not overrule it.
    """
    if bar >= 1:
        return np.zeros(len(rows))
    owners = index.owner_codes()
    best = np.full(int(owners.max()) + 1, -np.inf)
    np.maximum.at(best, owners, scores)
    ranked = np.sort(best)
    top, second = ranked[-1], (ranked[-2] if len(ranked) > 1 else -np.inf)
    rival = np.where(best[owners[rows]] >= top, second, top)
    cleared = np.clip((scores[rows] - np.maximum(bar, rival)) / (1.0 - bar), 0.0, 1.0)
    if len(span_rows):
        named = np.isin(owners[rows], owners[span_rows])
        cleared = np.where(named, cleared, 0.0)
    return cleared


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
    list of chat messages, `tokenizer` defaults to the one loaded with the index. The result
    says how much of the contributor share evidence covers (`evidence_bps`, split over
    `contributors`) and how much goes to the data pool (`pool_bps`).
    """
    settings = settings or AttributionSettings(top_k=top_k)
    tokenizer = tokenizer or index.tokenizer
    if tokenizer is None:
        raise AttributionError("attribute needs the model's tokenizer", field="tokenizer")
    if index.calibration is None:
        raise AttributionError("this index has no calibrated bars; rebuild it with calibration",
                               field="index")
    index.projector.check_model(model)
    query = prepare_answer(tokenizer, prompt, answer, index.calibration.settings.restated_weight,
                           index.spans.forms)
    feature = answer_feature(model, index.projector, query.example, query.weights[0],
                             per_token=index.config.per_token_query)
    evidence = gather_evidence(index, feature, query, settings,
                               token_match(model, index, query, settings))
    return result_from_evidence(index, evidence, settings)


def result_from_evidence(index: AttributionIndex, evidence: Evidence,
                         settings: AttributionSettings) -> AttributionResult:
    units = [evidence_units(c) for c in evidence.combined]
    holds = (evidence.holds_span if evidence.holds_span is not None
             else np.zeros(len(evidence.rows), dtype=bool))
    match = (evidence.match if evidence.match is not None
             else np.zeros(len(evidence.rows)))
    # Equal evidence (none, mostly): a row holding a rare span of the answer before one the
    # gradient alone finds (the text says what the answer could be about, which a resemblance
    # of gradients does not), the answer's gradient choosing among those; then the rows of the
    # contributor that matches the answer token by token best (rule 19), then the stronger
    # gradient first.
    order = sorted(range(len(evidence.rows)),
                   key=lambda i: (-units[i], -bool(holds[i]), 0.0 if holds[i] else -match[i],
                                  -evidence.gradient[i], evidence.rows[i]))
    listed = []
    for i in order[:settings.top_k]:
        e = index.example(int(evidence.rows[i]))
        listed.append(ExampleAttribution(
            row=e.row, record=e.record, contribution_id=e.contribution_id,
            contributor=e.contributor, content_hash=e.content_hash,
            gradient=float(evidence.gradient[i]),
            gradient_evidence=round(float(evidence.gradient_evidence[i]), 6),
            span=round(float(evidence.span[i]), 6), longest_span=int(evidence.longest_span[i]),
            combined=units[i] / _QUANTUM,
            candidate=(round(float(evidence.candidate[i]), 6) if evidence.candidate is not None
                       else 0.0),
            match=float(match[i]),
        ))
    evidence_bps, contributions, contributors = roll_up(listed)
    return AttributionResult(
        examples=tuple(listed), contributions=contributions, contributors=contributors,
        evidence_bps=evidence_bps, pool_bps=BPS - evidence_bps,
        span_coverage=round(evidence.coverage, 6), gradient_bar=evidence.bar,
        span_min_tokens=evidence.span_min_tokens, unattributed=evidence_bps == 0,
        answer_tokens=evidence.answer_tokens,
        index_adapter_sha256=index.config.adapter_sha256, settings=settings,
    )


# ------------------------------------------------------------------------------ serving


def load_model(model_dir: Path, base=None, device=None, dtype=None):
    """The fine-tuned model in `model_dir` (adapter on its base) and its tokenizer, for inference.

    In `dtype` when given (every weight, the adapter's too), else in the device's usual precision.
    """
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
    model = load_adapted_model(base, model_dir, device, dtype=dtype)
    return (model if dtype is None else model.to(dtype)), load_tokenizer(base)


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
        return greedy_answer(self.model, self.tokenizer, prompt, max_new_tokens)


def greedy_answer(model, tokenizer, prompt: str | list[dict], max_new_tokens: int = 64) -> str:
    """`model`'s greedy answer to `prompt` under its chat template."""
    import torch

    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    device = next(model.parameters()).device
    ids = torch.tensor([list(ids)], device=device)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def load_attributor(model_dir: Path, *, base=None, device=None, model=None, tokenizer=None,
                    settings: AttributionSettings | None = None) -> Attributor:
    """Load a model's index (and the model, unless the caller already holds it) for serving.

    The model it loads is float64 on every device, not the bfloat16 or
    float32 a node serves in: an answer's feature is then the same to ~1e-15 whatever the
    device, thread count or order of sums, so its scores, rounded to SCORE_DECIMALS, and the
    split are identical when anyone recomputes them.
    """
    import torch

    index = AttributionIndex.load(model_dir)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(model_dir, base, device, dtype=torch.float64)
    return Attributor(model, tokenizer, index, settings)
