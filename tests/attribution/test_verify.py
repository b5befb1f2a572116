"""Reading receipts for `ledgerlm attribute --verify` and comparing a recomputed split field by field."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ledgerlm.attribution import AttributionError
from ledgerlm.attribution.verify import compare, differences, read_receipt, verify_receipt

RESULT = {"evidence_bps": 7000, "pool_bps": 3000, "index_adapter_sha256": "ab", "gradient_bar": 0.4,
          "span_min_tokens": 4,
          "contributions": [{"contribution_id": 3, "contributor": "0xaa", "bps": 5000},
                            {"contribution_id": 9, "contributor": "0xbb", "bps": 2000}],
          "contributors": [{"contributor": "0xaa", "bps": 5000}, {"contributor": "0xbb", "bps": 2000}]}


def test_reads_the_attribute_json_and_a_serving_receipt(tmp_path):
    cli = tmp_path / "cli.json"
    cli.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **RESULT}))
    assert read_receipt(cli).attribution["evidence_bps"] == 7000
    served = tmp_path / "served.json"
    served.write_text(json.dumps({"receipt": {
        "model_id": "m", "attribution": RESULT,
        "request": {"messages": [{"role": "user", "content": "q?"}], "completion": "a."}}}))
    receipt = read_receipt(served)
    assert receipt.model == "m" and receipt.answer == "a." and receipt.prompt[0]["content"] == "q?"


def test_a_public_receipt_without_its_text_cannot_be_verified(tmp_path):
    public = tmp_path / "public.json"
    public.write_text(json.dumps({"model_id": "m", "attribution": RESULT,
                                  "request": {"split": {}}}))
    with pytest.raises(AttributionError) as err:
        read_receipt(public)
    assert err.value.field == "receipt.prompt"


def test_every_changed_share_and_total_is_reported(tmp_path):
    assert differences(RESULT, RESULT) == []
    changed = {**RESULT, "evidence_bps": 6999,
               "contributors": [{"contributor": "0xaa", "bps": 4999}, RESULT["contributors"][1]]}
    found = differences(RESULT, changed)
    assert any(line.startswith("evidence_bps") for line in found)
    assert any("contributors 0xaa" in line for line in found)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **RESULT}))
    check = verify_receipt(read_receipt(path), lambda m, p, a: changed)
    assert not check.verified and check.differences == found


def test_a_receipt_listing_a_row_or_a_contributor_twice_or_bps_that_do_not_add_up_does_not_verify(tmp_path):
    row = {"row": 1, "record": 0, "contribution_id": 3, "contributor": "0xaa", "gradient": 0.5, "span": 0.0,
           "longest_span": 0, "combined": 0.5}
    honest = {**RESULT, "examples": [row]}
    assert differences(honest, honest) == []
    forged_row = {**honest, "examples": [row, {**row, "contributor": "0xdead"}]}  # the last one read would win
    doubled = {**honest, "contributors": [*RESULT["contributors"], {"contributor": "0xbb", "bps": 12000}]}
    short = {**honest, "pool_bps": 2000}
    for receipt, words in ((forged_row, "examples 1 listed twice"), (doubled, "contributors 0xbb listed twice"),
                           (short, "evidence_bps + pool_bps")):
        path = tmp_path / "r.json"
        path.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **receipt}))
        check = verify_receipt(read_receipt(path), lambda m, p, a: honest)
        assert not check.verified and any(words in line for line in check.mismatches), check.mismatches


def test_a_receipt_made_under_another_rule_says_so_before_its_shares(tmp_path):
    from ledgerlm.attribution.attribute import RULE

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **RESULT}))  # no rule: made before
    check = verify_receipt(read_receipt(path), lambda m, p, a: {**RESULT, "rule": RULE})
    assert not check.verified and check.mismatches[0].startswith(
        f"rule: the receipt was made under attribution rule 1, this node computes rule {RULE}")
    assert verify_receipt(read_receipt(path), lambda m, p, a: RESULT).verified  # same rule, same split


ROWS = {**RESULT, "examples": [
    {"row": 3, "record": 3, "contribution_id": 3, "contributor": "0xaa", "gradient": 0.6123,
     "gradient_evidence": 0.3, "span": 0.4, "longest_span": 5, "combined": 0.5},
    {"row": 9, "record": 9, "contribution_id": 9, "contributor": "0xbb", "gradient": 0.5011,
     "gradient_evidence": 0.1, "span": 0.1, "longest_span": 4, "combined": 0.2}]}


def recomputed(**changes) -> dict:
    """ROWS with row 3's fields and the shares changed as a recomputation elsewhere might."""
    rows = [dict(ROWS["examples"][0]), dict(ROWS["examples"][1])]
    rows[0].update(changes.pop("row", {}))
    return {**ROWS, "examples": rows, **changes}


def shares(aa: int, bb: int) -> dict:
    return {"evidence_bps": aa + bb, "pool_bps": 10_000 - aa - bb,
            "contributions": [{"contribution_id": 3, "contributor": "0xaa", "bps": aa},
                              {"contribution_id": 9, "contributor": "0xbb", "bps": bb}],
            "contributors": [{"contributor": "0xaa", "bps": aa}, {"contributor": "0xbb", "bps": bb}]}


def check(tmp_path, actual):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **ROWS}))
    return verify_receipt(read_receipt(path), lambda m, p, a: actual)


def test_a_score_one_digit_off_and_the_bps_it_moves_are_within_rounding_tolerance(tmp_path):
    actual = recomputed(row={"gradient": 0.6124, "gradient_evidence": 0.300114, "combined": 0.500068},
                        **shares(5001, 2000))
    outcome = check(tmp_path, actual)
    assert outcome.verified and not outcome.identical and outcome.mismatches == []
    assert all("within rounding tolerance" in line for line in outcome.differences)
    assert any(line.startswith("contributors 0xaa bps: receipt 5000, recomputed 5001")
               for line in outcome.differences)
    identical = check(tmp_path, ROWS)
    assert identical.verified and identical.identical and identical.differences == []


def test_shares_that_no_score_difference_explains_are_a_mismatch(tmp_path):
    edited = check(tmp_path, recomputed(**shares(5001, 2000)))  # the same scores, one bp moved
    assert not edited.verified
    assert edited.mismatches == edited.differences
    assert any("contributors 0xaa bps" in line and "(mismatch)" in line for line in edited.mismatches)
    far = check(tmp_path, recomputed(row={"gradient": 0.6523}, **shares(5400, 2000)))
    assert not far.verified and any("row 3 gradient" in line for line in far.mismatches)
    too_many = check(tmp_path, recomputed(row={"gradient": 0.6124}, **shares(6000, 2000)))
    assert not too_many.verified and any("0xaa" in line for line in too_many.mismatches)


def test_token_level_fields_must_match_exactly_even_when_scores_differ(tmp_path):
    spans = check(tmp_path, recomputed(row={"gradient": 0.6124, "span": 0.41}))
    assert not spans.verified and any("row 3 span" in line for line in spans.mismatches)
    index = check(tmp_path, recomputed(row={"gradient": 0.6124}, index_adapter_sha256="cd"))
    assert not index.verified and any("index_adapter_sha256" in line for line in index.mismatches)


def test_float_noise_in_a_real_answer_feature_is_never_a_mismatch(trained, index):
    """An answer's feature as another device might sum it (relative noise 1e-4, far above what
    float64 leaves): whatever moves is reported as rounding, and another answer's feature is not."""
    import numpy as np

    from ledgerlm.attribution import AttributionSettings
    from ledgerlm.attribution.attribute import gather_evidence, prepare_answer, result_from_evidence
    from ledgerlm.attribution.features import answer_feature

    low = replace(index, calibration=replace(index.calibration,
                                             gradient_bar={"cosine": 0.2, "trak_cosine": 0.2}))
    settings = AttributionSettings()
    rng = np.random.default_rng(0)
    moved = 0
    for question, answer in [("What colour is crate 7?", "Seven is a white one."),
                             ("Hello?", "Red red red."), ("Which colour does crate 4 have?",
                                                          "Crate 4 is violet, I believe.")]:
        query = prepare_answer(trained.tokenizer, question, answer,
                               low.calibration.settings.restated_weight)
        feature = answer_feature(trained.model, low.projector, query.example, query.weights[0])

        def result(f, query=query):
            return result_from_evidence(low, gather_evidence(low, f, query, settings),
                                        settings).to_dict()

        served = result(feature)
        for _ in range(8):
            found = compare(served, result(feature * (1 + 1e-4 * rng.standard_normal(len(feature)))))
            assert [d for d in found if not d.within_rounding] == []
            moved += bool(found)
        other = prepare_answer(trained.tokenizer, "Describe crate 5.", "Silver, mostly.", 0.0)
        swapped = answer_feature(trained.model, low.projector, other.example, other.weights[0])
        assert any(not d.within_rounding for d in compare(served, result(swapped)))
    assert moved > 0  # the noise did move scores across a rounding boundary
