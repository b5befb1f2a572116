"""Calibration cost follows the training's size: how many null answers take a gradient pass, and that the count is published."""

from __future__ import annotations

import json

import pytest

from ledgerlm.attribution import AttributionError, AttributionIndex, CalibrationSettings
from ledgerlm.attribution.calibration import graded_null_answers, null_answer_count
from ledgerlm.attribution.null_queries import NULL_QUERIES


def test_the_null_answers_graded_follow_the_training_tokens_up_to_the_cap_or_none_below_the_floor():
    rule = CalibrationSettings()
    # 5% of the training's tokens, in null answers of 25 tokens each
    assert null_answer_count(rule, 25_000, 25.0) == 50
    assert null_answer_count(rule, 30_000, 25.0) > null_answer_count(rule, 25_000, 25.0)
    assert null_answer_count(rule, 20_000, 25.0) == rule.min_gradient_null_answers == 40
    # a training too small to afford the floor's 40 leaves the gradient uncalibrated
    assert null_answer_count(rule, 19_999, 25.0) == 0
    assert null_answer_count(rule, 3_000, 25.0) == 0
    assert null_answer_count(rule, 10**7, 25.0) == rule.max_gradient_null_answers == 64
    assert null_answer_count(rule, 0, 25.0) == 64  # training size unknown: the cap
    # a count the settings fix is kept, within what there is
    assert null_answer_count(CalibrationSettings(gradient_null_answers=12), 10**7, 25.0) == 12
    assert null_answer_count(CalibrationSettings(gradient_null_answers=64), 0, 25.0, 40) == 40
    for bad in ({"gradient_null_answers": 2}, {"min_gradient_null_answers": 2},
                {"min_gradient_null_answers": 70}, {"null_token_share": 0.0},
                {"training_tokens": -1}):
        with pytest.raises(AttributionError) as err:
            CalibrationSettings(**bad)
        assert err.value.field == next(iter(bad))


def test_few_graded_null_answers_sample_every_kind_of_null_answer():
    eight = graded_null_answers(8, len(NULL_QUERIES))
    assert eight == [0, 8, 16, 24, 32, 40, 48, 56]
    # the list is grouped by kind (it opens with eight arithmetic questions): the graded eight
    # take one from every eighth of it
    assert NULL_QUERIES[eight[1]][0] == "What is the capital of France?"
    assert {i * 8 // len(NULL_QUERIES) for i in eight} == set(range(8))
    assert graded_null_answers(64, 64) == list(range(64))
    assert graded_null_answers(100, 64) == list(range(64))


def test_an_index_grades_the_count_its_training_calls_for_and_publishes_it(trained):
    from ledgerlm.attribution import build_index

    index = build_index(trained.model_dir, trained.records, dim=256)
    calibration = index.calibration
    training = json.loads((trained.model_dir / "training.json").read_text())
    settings = calibration.settings
    assert settings.training_tokens == training["tokens_seen"] > 0
    head = len(index.projector.head)
    from ledgerlm.attribution.calibration import null_answers

    tokens = null_answers(index, trained.tokenizer, settings).answer_tokens(head)
    expected = null_answer_count(CalibrationSettings(), training["tokens_seen"], tokens)
    assert settings.gradient_null_answers == expected
    assert all(len(best) == expected for best in calibration.null_gradient_max.values())
    # stored with the index: a reloaded index states the count and what it was chosen from
    published = AttributionIndex.load(trained.model_dir).calibration.settings
    assert published == settings
    meta = json.loads((trained.model_dir / "attribution" / "meta.json").read_text())
    assert meta["calibration"]["settings"]["gradient_null_answers"] == expected
    assert meta["calibration"]["settings"]["training_tokens"] == training["tokens_seen"]


def test_a_training_too_small_for_the_floor_takes_no_gradient_pass_and_pays_spans_only(trained):
    """The fixture's 25 records trained 4 epochs afford fewer than the floor's 40 null answers: the
    index takes no gradient pass over them, its gradient and candidate bars are 1 (nothing clears
    them, so the gradient alone pays nobody), it says so when reloaded, and an answer that
    repeats a record is still paid by its span."""
    from ledgerlm.attribution import attribute, build_index

    index = build_index(trained.model_dir, trained.records, dim=256)
    calibration = index.calibration
    assert calibration.settings.gradient_null_answers == 0
    assert calibration.settings.training_tokens > 0
    assert calibration.gradient_bar == {"cosine": 1.0, "trak_cosine": 1.0}
    assert calibration.candidate_bar == {"cosine": 1.0, "trak_cosine": 1.0}
    assert all(best == [] for best in calibration.null_gradient_max.values())
    assert AttributionIndex.load(trained.model_dir).calibration.gradient_bar == calibration.gradient_bar
    # anyone recalibrating from the published settings makes the same choice
    from ledgerlm.attribution.calibration import calibrate

    assert calibrate(index, trained.model, trained.tokenizer, calibration.settings) == calibration
    record = next(r for r in trained.records if "vault phrase" in r["question"])
    result = attribute(trained.model, record["question"], record["answer"], index=index,
                       tokenizer=trained.tokenizer)
    assert result.evidence_bps > 0 and result.contributors[0].contributor == record["_contributor"]
    assert all(e.gradient_evidence == 0 and e.candidate == 0 for e in result.examples)
    unrelated = attribute(trained.model, "What is 3 plus 5?", "3 plus 5 is 8.", index=index,
                          tokenizer=trained.tokenizer)
    assert unrelated.evidence_bps == 0 and unrelated.unattributed
