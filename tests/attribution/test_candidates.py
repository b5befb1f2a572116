"""Span candidates: a rare span several records share goes to the one the gradient sets apart above the calibrated bar, or to nobody."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ledgerlm.attribution import attribute
from ledgerlm.attribution.attribute import resolve_candidates

from .conftest import ALICE, BOB
from .test_honesty import UNRELATED


def rows_of(index, contributor: str) -> list[int]:
    return [e.row for e in index.examples if e.contributor == contributor]


def test_the_candidate_bar_is_calibrated_and_never_above_the_gradient_bar(index):
    calibration = index.calibration
    for mode in calibration.gradient_bar:
        assert 0 < calibration.candidate(mode) <= calibration.bar(mode)
    # an index calibrated before candidates could earn lets none earn
    assert replace(calibration, candidate_bar={}).candidate("cosine") == 1.0
    assert type(calibration).from_dict(calibration.to_dict()) == calibration


def test_among_a_shared_spans_candidates_the_one_the_gradient_sets_apart_earns(index):
    alice, bob = rows_of(index, ALICE)[0], rows_of(index, BOB)[0]
    candidates = ((np.array([alice, bob]), 0.6, 5),)
    bar = 0.5
    scores = np.zeros(len(index))
    scores[[alice, bob]] = 0.9, 0.6
    picked = resolve_candidates(index, scores, candidates, bar)
    # (0.9 - max(0.5, 0.6)) / (1 - 0.5) of the span's unpaid 0.6: the margin over the rival
    assert list(picked) == [alice] and np.isclose(picked[alice][0], 0.6 * 0.6)

    scores[[alice, bob]] = 0.9, 0.9  # the gradient cannot tell the two owners apart
    assert resolve_candidates(index, scores, candidates, bar) == {}
    scores[[alice, bob]] = 0.45, 0.1  # set apart, but no higher than an unrelated answer scores
    assert resolve_candidates(index, scores, candidates, bar) == {}
    scores[[alice, bob]] = 0.9, 0.1
    assert resolve_candidates(index, scores, candidates, 1.0) == {}  # no calibrated bar: nobody


def test_an_unrelated_prompt_pays_nobody_and_earns_no_candidate_evidence(trained, index):
    for question, answer in UNRELATED:
        result = attribute(trained.model, question, answer, index=index)
        assert result.unattributed, (answer, result.contributors)
        assert not any(e.candidate for e in result.examples)



def test_a_receipt_lists_rows_holding_the_answers_rare_span_before_gradient_only_rows(index):
    from ledgerlm.attribution.attribute import AttributionSettings, Evidence, result_from_evidence

    alice, bob = rows_of(index, ALICE)[0], rows_of(index, BOB)[0]
    rows = np.array(sorted([alice, bob]))
    zeros = np.zeros(2)
    gradient = np.where(rows == bob, 0.9, 0.2)  # the gradient prefers Bob's row
    holds = rows == alice                       # Alice's row holds a rare span of the answer
    evidence = Evidence(rows, gradient, zeros, zeros, np.zeros(2, dtype=np.int64), zeros, 0.0,
                        0.5, 4, 6, zeros, holds)
    result = result_from_evidence(index, evidence, AttributionSettings())
    # nobody is paid (no evidence), and the text's candidate is listed first
    assert result.unattributed and result.evidence_bps == 0
    assert [e.row for e in result.examples] == [alice, bob]
    # without the span, the gradient's order
    plain = replace(evidence, holds_span=np.zeros(2, dtype=bool))
    assert [e.row for e in result_from_evidence(index, plain, AttributionSettings()).examples] == [bob, alice]
