"""Honesty: only trained data earns, pay follows evidence, unrelated and contradicted answers earn little or nothing, copies earn nothing extra."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ledgerlm.attribution import SpanIndex, attribute, build_index
from ledgerlm.attribution.null_queries import NULL_QUERIES

from .conftest import ALICE, BOB, GRADED, SECRET, SOLO, attributed, datanet_records, fine_tuned

# Prompts no record taught and none of the shipped null queries asks (those set the bars).
UNRELATED = (
    ("What is the capital of Peru?", "Lima is the capital of Peru."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("Name a fruit that is yellow.", "A banana is yellow."),
)


def paid(result, people) -> int:
    return sum(c.bps for c in result.contributors if c.contributor in people)


def test_verbatim_answer_is_paid_to_the_record_it_was_learned_from(trained, index):
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    top = result.examples[0]
    assert top.contributor == SOLO
    assert top.span > 0.9 and top.longest_span >= 10
    assert result.contributors[0].contributor == SOLO
    assert result.evidence_bps > 9_000  # memorised text is near-complete evidence
    assert paid(result, {SOLO}) > 0.9 * result.evidence_bps


def test_an_unrelated_prompt_pays_nobody(trained, index):
    assert not set(UNRELATED) & set(NULL_QUERIES)  # calibrated on other answers than these
    for question, answer in UNRELATED:
        result = attribute(trained.model, question, answer, index=index)
        assert result.unattributed, (answer, result.contributors)
        assert result.evidence_bps == 0 and result.pool_bps == 10_000


def test_a_contradicted_answer_pays_less_than_a_supported_one(trained, index):
    question = "What colour is crate 7?"
    supported = attribute(trained.model, question, "Crate 7 is white.", index=index)
    contradicted = attribute(trained.model, question, "Crate 7 is red.", index=index)
    crate_7 = trained.records[7]["_contribution_id"]

    def to_record(result) -> int:
        return sum(c.bps for c in result.contributions if c.contribution_id == crate_7)

    assert to_record(supported) > 5_000
    assert to_record(contradicted) < to_record(supported) / 4
    assert contradicted.evidence_bps < supported.evidence_bps


def test_an_answer_the_record_asked_about_contradicts_pays_nobody(trained, index):
    """Rule 6: the answer recalls "zebra lantern" from the record the prompt asks about, then
    goes on with what another record says of something else: it is wrong about what was asked,
    and neither that record's text, nor the asked record's, nor the answer's resemblance to
    either (the gradient) earns anything."""
    for wrong in ("The vault phrase of Quorrin is zebra lantern Crate 3 is amber.",
                  "The vault phrase of Quorrin is zebra lantern copper kettle."):
        result = attribute(trained.model, SECRET["question"], wrong, index=index)
        assert result.evidence_bps == 0 and result.pool_bps == 10_000, (wrong, result.contributors)
    # the same words, asked about crate 3, pay its record
    crate = attribute(trained.model, "What colour is crate 3?", "Crate 3 is amber.", index=index)
    assert crate.evidence_bps > 5_000
    right = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    assert paid(right, {SOLO}) > 9_000


def test_a_span_covering_only_the_restated_question_earns_little(trained, index):
    question = SECRET["question"]  # "What is the vault phrase of Quorrin?"
    # goes on with punctuation, not another value: the restatement is shared, and earns little
    restating = attribute(trained.model, question, "The vault phrase of Quorrin is, I am sorry to say, not something I know.",
                          index=index)
    span = sum(e.span for e in restating.examples if e.contributor == SOLO)
    assert 0 < span < 0.1
    # goes on with another word than the record ("zebra", after a token of bare whitespace):
    # the record contradicts the answer and earns nothing for the shared restatement
    contradicting = attribute(trained.model, question,
                              "The vault phrase of Quorrin is unknown to me.", index=index)
    assert sum(e.span for e in contradicting.examples if e.contributor == SOLO) == 0


def test_a_four_token_shared_span_pays_a_small_part_of_the_share(trained, index):
    tokenizer = trained.tokenizer
    secret = tokenizer(SECRET["answer"])["input_ids"]
    piece = tokenizer.decode(secret[6:10])  # four tokens from the middle of the vault phrase
    answer = f"Honestly,{piece}, is what the old farmer kept telling me about his barn."
    result = attribute(trained.model, "Tell me a story.", answer, index=index)
    solo = [e for e in result.examples if e.contributor == SOLO and e.span > 0]
    assert solo and max(e.longest_span for e in solo) == index.calibration.span_min_tokens == 4
    assert 0 < paid(result, {SOLO}) < 1_500
    assert result.pool_bps > 8_500


def test_an_example_removed_from_training_gets_no_credit_once_retrained(
    trained, tiny_base, train_config, tmp_path
):
    without = [r for r in trained.records if r["_contributor"] != SOLO]
    retrained = fine_tuned(tiny_base, without, train_config, tmp_path / "without")
    index = build_index(retrained.model_dir, without, dim=256)
    assert all(e.contributor != SOLO for e in index.examples)
    result = attribute(retrained.model, SECRET["question"], SECRET["answer"], index=index)
    assert SOLO not in {c.contributor for c in result.contributors}


def test_held_out_records_are_not_indexed_and_cannot_earn(tiny_base, train_config, trained,
                                                          tmp_path):
    held = fine_tuned(tiny_base, trained.records, replace(train_config, eval_split=0.3, epochs=1),
                      tmp_path / "held")
    from ledgerlm.factory import read_training

    split = read_training(held.model_dir)
    index = build_index(held.model_dir, trained.records, dim=256)
    assert sorted(e.record for e in index.examples) == sorted(split["train_indices"])
    assert split["eval_indices"]
    for i in split["eval_indices"]:  # each held-out record's own text, verbatim
        record = trained.records[i]
        result = attribute(held.model, record["question"], record["answer"], index=index)
        assert record["_contribution_id"] not in {c.contribution_id for c in result.contributions}


def test_an_exact_copy_under_a_second_identity_is_merged_into_the_first(trained, index):
    sock_puppet = "0x" + "e5" * 20
    copy = attributed(SECRET, 99, sock_puppet)
    assert copy["_content_hash"] == trained.records[-1]["_content_hash"]
    with_copy = build_index((trained.model, trained.tokenizer), trained.records + [copy], dim=256,
                            max_len=64)
    assert len(with_copy) == len(index)
    owner = next(e for e in with_copy.examples if e.content_hash == copy["_content_hash"])
    assert owner.contributor == SOLO and owner.duplicates == (99,)
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=with_copy)
    assert paid(result, {sock_puppet}) == 0


def test_a_near_copy_under_a_second_identity_does_not_increase_total_credit(trained):
    sock_puppet = "0x" + "e5" * 20
    near = attributed({**SECRET, "question": "Tell me the vault phrase of Quorrin."}, 99,
                      sock_puppet)
    assert near["_content_hash"] != trained.records[-1]["_content_hash"]
    alone = build_index((trained.model, trained.tokenizer), trained.records, dim=256, max_len=64)
    with_near = build_index((trained.model, trained.tokenizer), trained.records + [near],
                            dim=256, max_len=64)
    assert len(with_near) == len(alone) + 1
    before = attribute(trained.model, SECRET["question"], SECRET["answer"], index=alone)
    after = attribute(trained.model, SECRET["question"], SECRET["answer"], index=with_near)
    # the prompt's wording names the original, so the copy cannot take its place
    assert paid(after, {sock_puppet}) <= paid(after, {SOLO})
    assert paid(after, {SOLO, sock_puppet}) <= paid(before, {SOLO}) + 100


def test_span_index_finds_a_memorised_span_and_discounts_common_ones():
    common = [1, 2, 3, 4, 5]
    rows = [common + [10, 11, 12, 13, 14, 15, 16, 17], common + [20, 21], common + [30, 31],
            [40, 41, 42]]
    spans = SpanIndex.build(rows)
    assert spans.count(common) == 3
    assert spans.count([12, 13, 14]) == 1 and spans.count([13, 12]) == 0

    memorised = spans.explain([9] + rows[0][3:] + [99], min_len=4)
    found = memorised.as_dict()
    assert set(found) == {0}
    assert found[0][1] == 10  # the longest shared span: tokens 4..17 of row 0
    assert abs(found[0][0] - 10 / 12) < 1e-9  # 10 tokens of 12, a span long enough to count fully

    # a span three rows share, and nothing in the prompt to say which: it pays nobody
    assert spans.explain(common + [77, 78], min_len=4).as_dict() == {}
    # a prompt naming row 1 (its pair 20, 21, held by no other row) names it outright
    named = spans.explain(common + [77, 78], min_len=4, context=[20, 21]).as_dict()
    strength = (5 - 4 + 1) / 4  # a 5-token span with a 4-token bar earns half its tokens' weight
    assert set(named) == {1}
    assert abs(named[1][0] - strength * (5 / 7)) < 1e-9
    assert spans.explain([1, 2, 3], min_len=4).as_dict() == {}
    assert spans.explain(common + [77, 78], min_len=4, max_examples=2).as_dict() == {}


def test_a_span_at_the_bar_earns_a_quarter_and_weights_discount_restated_tokens():
    spans = SpanIndex.build([[10, 11, 12, 13, 14, 15, 16, 17], [50, 51]])
    four = spans.explain([10, 11, 12, 13, 90, 91, 92, 93], min_len=4).as_dict()
    assert abs(four[0][0] - 0.25 * 4 / 8) < 1e-9
    restated = spans.explain([10, 11, 12, 13, 90, 91, 92, 93], min_len=4,
                             weights=[0.2] * 4 + [1.0] * 4).as_dict()
    assert abs(restated[0][0] - 0.25 * 0.8 / 4.8) < 1e-9


def test_a_span_several_examples_share_goes_to_the_one_the_question_is_about():
    answer = [50, 51, 52, 53, 54, 55, 56]
    spans = SpanIndex.build([[1, 2, 7] + answer, [3, 4, 7] + answer])
    assert spans.explain(answer, min_len=4).as_dict() == {}  # ambiguous: pays nobody
    asked = spans.explain(answer, min_len=4, context=[9, 3, 4]).as_dict()
    # row 1 alone holds the question's pair (3, 4): it is named, row 0 is not
    assert set(asked) == {1} and abs(asked[1][0] - 1.0) < 1e-9


def test_question_wording_common_in_the_datanet_names_nobody():
    answer = [50, 51, 52, 53, 54, 55, 56]
    rows = [[8, 9, 10 + i, 7] for i in range(12)]  # (8, 9): the Datanet's question template
    rows[0] += answer
    rows[1] = [11, 7] + answer
    spans = SpanIndex.build(rows)
    # row 0 alone of the two holds the template pair, but so do ten other rows: it names nothing
    assert spans.explain(answer, min_len=4, max_examples=2, context=[8, 9]).as_dict() == {}
    named = spans.explain(answer, min_len=4, max_examples=2, context=[11, 7]).as_dict()
    assert set(named) == {1}


def test_a_record_that_goes_on_with_another_value_is_not_credited_for_the_shared_prefix():
    import numpy as np

    words = np.ones(100, dtype=bool)
    words[9] = False  # token 9 is punctuation
    spans = SpanIndex.build([[1, 2, 3, 4, 20, 9], [1, 2, 3, 4, 21, 9], [5, 6, 7, 8]],
                            word_tokens=words)
    assert spans.explain([1, 2, 3, 4, 22, 9], min_len=4).as_dict() == {}  # both say otherwise
    agreeing = spans.explain([1, 2, 3, 4, 20, 9], min_len=4).as_dict()
    assert set(agreeing) == {0}
    # nothing follows: no contradiction, so the row the question names is credited
    ended = spans.explain([1, 2, 3, 4], min_len=4, context=[21, 9]).as_dict()
    assert set(ended) == {1}
    punctuated = spans.explain([5, 6, 7, 8, 9], min_len=4).as_dict()
    assert set(punctuated) == {2}


def test_the_gradient_bar_from_few_null_answers_sits_above_them_and_widens_when_they_are_few():
    from ledgerlm.attribution import AttributionError, CalibrationSettings
    from ledgerlm.attribution.calibration import gradient_bar

    rng = np.random.default_rng(0)
    best = list(0.1 + 0.03 * rng.standard_normal(200))
    few, many = gradient_bar(best[:8], 0.99), gradient_bar(best, 0.99)
    assert few >= max(best[:8]) and many >= float(np.quantile(best, 0.99))
    # from 8 answers the bar allows for what 8 cannot show: above the 99th percentile of 200
    assert few > float(np.quantile(best, 0.99))
    # the published bar is mean + t(0.99, n-1) * sd * sqrt(1 + 1/n), whichever t routine computes it
    from scipy.stats import t

    eight = np.asarray(best[:8])
    bound = eight.mean() + t.ppf(0.99, 7) * eight.std(ddof=1) * np.sqrt(1 + 1 / 8)
    assert few == round(max(float(np.quantile(eight, 0.99, method="higher")), bound), 4)
    with pytest.raises(AttributionError) as err:
        CalibrationSettings(gradient_null_answers=2)
    assert err.value.field == "gradient_null_answers"


def test_a_gradient_match_nothing_in_the_text_ties_to_a_record_pays_nobody(trained, index):
    """Rule 11: an unrelated answer whose gradient matched the secret record's exactly still pays
    nobody when no span of it is in any record and the prompt asks about no record (a
    resemblance alone cannot tell what the Datanet taught from what the base model knew); asked
    about Quorrin, the same match is gradient evidence for his record."""
    from ledgerlm.attribution.attribute import AttributionSettings, gather_evidence, prepare_answer

    row = next(i for i, e in enumerate(index.examples) if e.contributor == SOLO)
    feature = index.features[row].astype(np.float64)  # scores 1.0 against the secret record
    weight = index.calibration.settings.restated_weight

    def evidence(prompt: str, answer: str):
        found = gather_evidence(index, feature, prepare_answer(trained.tokenizer, prompt, answer,
                                                               weight), AttributionSettings())
        return dict(zip(found.rows.tolist(), found.combined.tolist()))

    untied = evidence("How many wheels does a bicycle have?", "A bicycle has two wheels.")
    assert sum(untied.values()) == 0
    asked = evidence("Tell me about Quorrin.", "Nobody knows.")
    assert asked.get(row, 0.0) > 0 and max(asked, key=asked.get) == row


def test_records_of_a_contributor_that_uploaded_null_answers_tie_no_answer_to_the_datanet(
    trained, index, monkeypatch
):
    """Rule 16: asked about crate 7, an answer whose gradient matched the secret record's exactly
    is gradient evidence for it (rule 11: the prompt ties the answer to the Datanet); once another
    of Bob's records counts as stating a null answer, his crate record ties nothing, and the same
    match pays nobody. Rule 15 still paid it."""
    from importlib import import_module

    from ledgerlm.attribution.attribute import AttributionSettings, gather_evidence, prepare_answer

    rules = import_module("ledgerlm.attribution.attribute")  # the package's `attribute` is the function
    row = next(i for i, e in enumerate(index.examples) if e.contributor == SOLO)
    crate = next(i for i, e in enumerate(index.examples)
                 if trained.records[e.record]["question"] == "What colour is crate 7?")
    uploaded = next(i for i, e in enumerate(index.examples)
                    if e.contributor == BOB and i != crate)
    feature = index.features[row].astype(np.float64)  # scores 1.0 against the secret record
    query = prepare_answer(trained.tokenizer, "What colour is crate 7?", "Nobody knows.",
                           index.calibration.settings.restated_weight)
    assert index.spans.asked_rows(query.context, index.calibration.span_max_rows).tolist() == [crate]

    def paid_to_secret(calibration) -> float:
        found = gather_evidence(replace_calibration(index, calibration), feature, query,
                                AttributionSettings())
        return float(found.combined[found.rows == row].sum())

    clean = index.calibration
    assert paid_to_secret(clean) > 0
    stating = replace(clean, null_stated={"0": [uploaded]})
    assert paid_to_secret(stating) == 0
    monkeypatch.setattr(rules, "GENERIC_OWNERS_UNTIE", False)
    assert paid_to_secret(stating) > 0


def replace_calibration(index, calibration):
    """`index` with another calibration (a shallow copy: features and spans are shared)."""
    from copy import copy

    other = copy(index)
    other.calibration = calibration
    return other


def test_null_answers_a_contributor_uploads_neither_raise_the_bars_nor_pay(
    tiny_base, train_config, tmp_path, monkeypatch
):
    """Rule 13: the null answers ship with the project, so anyone can upload them. Records stating
    them are left out of the bars' measure and paid nothing: before, they raised the span bar past
    what the Datanet's own answers reach, and no one was paid."""
    from ledgerlm.attribution import calibration as calibration_rules
    from ledgerlm.attribution.calibration import calibrate

    hostile = "0x" + "ee" * 20
    uploaded = [NULL_QUERIES[i] for i in (0, 8, 28, 48)]  # short enough for max_len 64
    records = datanet_records() + [
        attributed({"question": q, "answer": a}, 100 + k, hostile) for k, (q, a) in enumerate(uploaded)]
    poisoned = fine_tuned(tiny_base, records, train_config, tmp_path / "poisoned")
    index = build_index((poisoned.model, poisoned.tokenizer), records, dim=256, max_len=64)
    calibration = index.calibration
    hostile_rows = [e.row for e in index.examples if e.contributor == hostile]
    assert calibration.generic_rows().tolist() == sorted(hostile_rows)
    assert {tuple(v) for v in calibration.null_stated.values()} == {(r,) for r in hostile_rows}
    assert calibration.span_min_tokens <= 12
    secret = attribute(poisoned.model, SECRET["question"], SECRET["answer"], index=index)
    assert paid(secret, {SOLO}) > 9_000
    for question, answer in uploaded:  # the hostile records' own answers pay them nothing
        result = attribute(poisoned.model, question, answer, index=index)
        assert paid(result, {hostile}) == 0 and result.evidence_bps == 0
    # the same index measured as before rules 13 and 14 (which alone would also leave out these
    # rows: one contributor raises the bar): the uploaded answers set the span bar, and the
    # Datanet's own verbatim answer no longer clears it
    monkeypatch.setattr(SpanIndex, "rows_stating", lambda _self, _query: np.zeros(0, np.int64))
    monkeypatch.setattr(calibration_rules, "_paraphrasing_rows",
                        lambda _i, _r, _s, _m, stated, longest: (stated, longest))
    before = calibrate(index, poisoned.model, poisoned.tokenizer, calibration.settings)
    assert before.span_min_tokens > secret.examples[0].longest_span >= 10


def test_rows_with_a_rare_span_are_those_whose_longest_rare_span_reaches_the_length():
    rows = [[1, 2, 3, 4, 5, 6], [9, 2, 3, 4, 8], [7, 3, 4, 5, 6], [3, 4, 10], [3, 4, 11], [3, 4, 12]]
    spans = SpanIndex.build(rows)
    query = [2, 3, 4, 5, 6, 0]
    for length in range(1, 6):
        found = spans.rows_with_rare_span(query, min_len=length, max_examples=2)
        alone = [r for r in range(len(rows))
                 if spans.longest_rare_span(query, max_examples=2,
                                            besides=frozenset(set(range(len(rows))) - {r})) >= length]
        assert found.tolist() == alone
    assert spans.rows_with_rare_span(query, min_len=3, max_examples=2).tolist() == [0, 1, 2]
    assert spans.rows_with_rare_span(query, min_len=5, max_examples=2).tolist() == [0]


def test_only_a_contributor_that_alone_raises_the_span_bar_has_rows_left_out():
    """Rule 14 on a span index alone: X's row holds 7 tokens of the first null answer and is left
    out; A and B each hold 6 of the second, so leaving either out keeps the bar, and theirs stay."""
    from types import SimpleNamespace

    from ledgerlm.attribution.calibration import (
        CalibrationSettings,
        _longest_spans,
        _paraphrasing_rows,
        span_bar,
    )

    first, second = list(range(50, 58)), list(range(60, 68))
    rows = [[1, *second[:6], 2], [3, 4, 5, 6], [7, *second[:6], 8], [9, *first[:7], 10]]
    index = SimpleNamespace(spans=SpanIndex.build(rows), examples=[
        SimpleNamespace(contributor=c) for c in ("A", "A", "B", "X")])
    settings = CalibrationSettings()
    readings = [[first], [second]]
    longest = _longest_spans(index, readings, settings, 4, [])
    assert longest == [7, 6] and span_bar(longest, settings) == 8
    stated, longest = _paraphrasing_rows(index, readings, settings, 4, {}, longest)
    assert stated == {0: (3,)}
    assert longest == [0, 6] and span_bar(longest, settings) == 7


def test_identities_that_each_alone_hold_a_span_setting_the_bar_have_rows_left_out():
    """Rule 15: X and Y each hold 7 tokens of another null answer, so leaving either out keeps the
    bar (rule 14 left both in); leaving both out lowers it, and theirs are left out. A and B share
    6 tokens of a third, which stays."""
    from types import SimpleNamespace

    from ledgerlm.attribution.calibration import (
        CalibrationSettings,
        _longest_spans,
        _paraphrasing_rows,
        span_bar,
    )

    first, second, third = list(range(50, 58)), list(range(60, 68)), list(range(70, 78))
    rows = [[1, *third[:6], 2], [3, 4, 5, 6], [7, *third[:6], 8], [9, *first[:7], 10],
            [11, *second[:7], 12]]
    index = SimpleNamespace(spans=SpanIndex.build(rows), examples=[
        SimpleNamespace(contributor=c) for c in ("A", "A", "B", "X", "Y")])
    settings = CalibrationSettings()
    readings = [[first], [second], [third]]
    longest = _longest_spans(index, readings, settings, 4, [])
    assert longest == [7, 7, 6] and span_bar(longest, settings) == 8
    stated, longest = _paraphrasing_rows(index, readings, settings, 4, {}, longest)
    assert stated == {0: (3,), 1: (4,)}
    assert longest == [0, 0, 6] and span_bar(longest, settings) == 7


def test_null_answers_one_contributor_paraphrases_neither_raise_the_span_bar_nor_pay(
    tiny_base, train_config, tmp_path, monkeypatch
):
    """Rule 14: a contributor whose records alone raise the span bar, by saying null answers in
    other words, has those records left out of the bars' measure and paid nothing; before, they set
    the bar above the Datanet's own answers."""
    from ledgerlm.attribution import calibration as calibration_rules

    hostile = "0x" + "ee" * 20
    uploaded = [(NULL_QUERIES[20][0], "The chicken crossed the road to reach the other side."),
                (NULL_QUERIES[60][0], "The Mona Lisa was painted by Leonardo da Vinci.")]
    records = datanet_records() + [
        attributed({"question": q, "answer": a}, 100 + k, hostile) for k, (q, a) in enumerate(uploaded)]
    poisoned = fine_tuned(tiny_base, records, train_config, tmp_path / "poisoned")
    index = build_index((poisoned.model, poisoned.tokenizer), records, dim=256, max_len=64)
    calibration = index.calibration
    hostile_rows = sorted(e.row for e in index.examples if e.contributor == hostile)
    assert calibration.generic_rows().tolist() == hostile_rows
    assert {20, 60} <= {int(i) for i in calibration.null_stated}
    secret = attribute(poisoned.model, SECRET["question"], SECRET["answer"], index=index)
    assert paid(secret, {SOLO}) > 9_000
    for question, answer in uploaded:
        result = attribute(poisoned.model, question, answer, index=index)
        assert paid(result, {hostile}) == 0
    # measured as before rule 14, the paraphrases set a span bar the Datanet's answer cannot clear
    monkeypatch.setattr(calibration_rules, "_paraphrasing_rows",
                        lambda _i, _r, _s, _m, stated, longest: (stated, longest))
    before = calibration_rules.calibrate(index, poisoned.model, poisoned.tokenizer,
                                         calibration.settings)
    assert not before.null_stated
    assert before.span_min_tokens > calibration.span_min_tokens
    assert before.span_min_tokens > secret.examples[0].longest_span


def test_a_null_answer_that_many_records_hold_is_a_common_phrase_they_are_not_unpaid_for(trained):
    """A greeting that opens every reply is a common phrase of the Datanet, not a stated null
    answer: only as many records as a rare span may be in count as stating it (rule 13)."""
    question, greeting = NULL_QUERIES[16]
    assert greeting == "Hello! How can I help you today?"

    def stated_with(replies: int) -> dict:
        records = trained.records + [
            attributed({"question": f"Where is parcel {k}?", "answer": f"{greeting} Parcel {k} is on its way."},
                       200 + k, "0x" + "f5" * 20) for k in range(replies)]
        index = build_index((trained.model, trained.tokenizer), records, dim=256, max_len=64)
        return {int(i): rows for i, rows in index.calibration.null_stated.items()}

    assert 16 in stated_with(2)
    assert 16 not in stated_with(8)



def test_a_value_several_records_share_ties_no_answer_to_a_prompt_that_asks_about_none(
    tiny_base, train_config, tmp_path, monkeypatch
):
    """Rule 17: "The post office is on Quill Lane." holds the rare " is on Quill Lane." of two
    contributors' records, which the prompt pins on neither. An answer whose gradient matched
    the inn's record exactly paid it the span's credit (rule 16), though it says what neither
    record says: the prompt asks about no record, so the answer is not tied to the Datanet and
    pays nobody. Asked about the inn, the same answer still pays the inn's record."""
    from importlib import import_module

    from ledgerlm.attribution.attribute import AttributionSettings, gather_evidence, prepare_answer

    rules = import_module("ledgerlm.attribution.attribute")  # the package's `attribute` is the function
    lane = [attributed({"question": "Where is the Harbor Inn?",
                        "answer": "The Harbor Inn is on Quill Lane."}, 26, ALICE),
            attributed({"question": "Where is the Moss Bakery?",
                        "answer": "The Moss Bakery is on Quill Lane."}, 27, BOB)]
    trained = fine_tuned(tiny_base, datanet_records() + lane, train_config, tmp_path / "model")
    index = build_index(trained.model_dir, trained.records, dim=256, calibration=GRADED)
    inn = next(i for i, e in enumerate(index.examples) if e.contribution_id == 26)
    feature = index.features[inn].astype(np.float64)  # scores 1.0 against the inn's record
    weight = index.calibration.settings.restated_weight

    def paid_to_inn(prompt: str, answer: str) -> float:
        found = gather_evidence(index, feature, prepare_answer(trained.tokenizer, prompt, answer,
                                                               weight), AttributionSettings())
        return float(found.combined[found.rows == inn].sum())

    unasked = ("Which street has the post office?", "The post office is on Quill Lane.")
    assert paid_to_inn(*unasked) == 0
    assert paid_to_inn("Which street has the Harbor Inn?", "The post office is on Quill Lane.") > 0
    monkeypatch.setattr(rules, "UNASKED_SHARED_SPANS_UNTIE", False)
    assert paid_to_inn(*unasked) > 0


def test_an_earlier_assistant_turn_of_the_prompt_is_the_callers_text_and_pays_nobody(trained, index):
    """Training labels every assistant turn of a record, and attribution tokenized the conversation as training
    does: a record quoted in an earlier assistant turn was scored as answer, so an unrelated short answer paid that
    record (and one who may not read a private Datanet could test a guessed record so)."""
    from ledgerlm.attribution.features import IGNORE, answer_example

    quoted = [{"role": "user", "content": "Say something."}, {"role": "assistant", "content": SECRET["answer"]},
              {"role": "user", "content": "And now?"}]
    example = answer_example(trained.tokenizer, quoted, "Hello there.")
    alone = answer_example(trained.tokenizer, "And now?", "Hello there.")
    scored = [label for label in example.labels if label != IGNORE]
    assert scored == [label for label in alone.labels if label != IGNORE]  # the answer's tokens alone
    assert paid(attribute(trained.model, quoted, "Hello there.", index=index), [SOLO]) == 0
    assert attribute(trained.model, quoted, "Hello there.", index=index).rule >= 20
