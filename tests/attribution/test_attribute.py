"""attribute(): result shape, determinism, integer roll-up in proportion to evidence, and answers that nothing explains."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from ledgerlm.attribution import (
    AttributionError,
    AttributionIndex,
    AttributionSettings,
    ExampleAttribution,
    attribute,
    load_attributor,
    roll_up,
    split_bps,
)

from .conftest import ALICE, BOB, CAROL, SECRET, SOLO


def test_result_splits_the_evidence_bps_and_gives_the_rest_to_the_pool(trained, index):
    result = attribute(trained.model, "What colour is crate 7?", "Crate 7 is white.", index=index,
                       top_k=5)
    assert not result.unattributed
    assert 0 < len(result.examples) <= 5
    combined = [e.combined for e in result.examples]
    assert combined == sorted(combined, reverse=True)
    assert all(isinstance(c.bps, int) and c.bps > 0 for c in result.contributions)
    assert 0 < result.evidence_bps <= 10_000
    assert result.evidence_bps + result.pool_bps == 10_000
    assert result.evidence_bps == int(sum(combined) * 10_000 + 1e-9)
    assert sum(c.bps for c in result.contributions) == result.evidence_bps
    assert sum(c.bps for c in result.contributors) == result.evidence_bps
    assert {c.contributor for c in result.contributors} <= {ALICE, BOB, CAROL, SOLO}
    per_person = {}
    for c in result.contributions:
        per_person[c.contributor] = per_person.get(c.contributor, 0) + c.bps
    assert per_person == {c.contributor: c.bps for c in result.contributors}
    assert result.index_adapter_sha256 == index.config.adapter_sha256 != ""


def test_same_inputs_give_identical_results(trained, index):
    first = attribute(trained.model, "What colour is crate 3?", "Crate 3 is amber.", index=index)
    again = attribute(trained.model, "What colour is crate 3?", "Crate 3 is amber.", index=index)
    assert first == again
    assert first.to_dict() == again.to_dict()


def test_saved_index_and_warm_attributor_reproduce_the_in_memory_result(trained, index):
    expected = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    loaded = AttributionIndex.load(trained.model_dir)
    assert (loaded.features == index.features).all()
    # which tokens begin a word travels with the span index (rule 10 reads links by whole words)
    assert (loaded.spans.spaced_tokens == index.spans.spaced_tokens).all()
    assert loaded.spans.spaced_tokens.any() and not loaded.spans.spaced_tokens.all()
    attributor = load_attributor(trained.model_dir, model=trained.model,
                                 tokenizer=trained.tokenizer)
    assert attributor.attribute(SECRET["question"], SECRET["answer"]) == expected
    from_disk = load_attributor(trained.model_dir)  # loads base + adapter itself
    assert from_disk.attribute(SECRET["question"], SECRET["answer"]).contributors == \
        expected.contributors


def test_rebuilding_the_index_gives_the_same_scores(trained, index):
    from ledgerlm.attribution import build_index

    rebuilt = build_index(trained.model_dir, trained.records, dim=256, save=False,
                          calibration=index.calibration.settings)
    assert (rebuilt.features == index.features).all()
    question, answer = "What colour is crate 11?", "Crate 11 is black."
    assert attribute(trained.model, question, answer, index=rebuilt) == \
        attribute(trained.model, question, answer, index=index)


def test_nothing_clears_the_bars_means_unattributed_and_all_to_the_pool(trained, index):
    strict = replace(index, calibration=replace(index.calibration, span_min_tokens=10_000,
                                                gradient_bar={"cosine": 1.0, "trak_cosine": 1.0}))
    result = attribute(trained.model, "What colour is crate 2?", "Crate 2 is blue.", index=strict)
    assert result.unattributed
    assert result.evidence_bps == 0 and result.pool_bps == 10_000
    assert result.contributions == () and result.contributors == ()
    assert result.examples  # the evidence is still shown, it just earns nothing


def test_a_score_mode_without_a_bar_cannot_pay(trained, index):
    with pytest.raises(AttributionError) as err:
        attribute(trained.model, "What colour is crate 2?", "Crate 2 is blue.", index=index,
                  settings=AttributionSettings(score_mode="dot"))
    assert err.value.field == "score_mode"


def test_the_split_is_identical_with_one_and_two_threads(trained, index):
    import torch

    question, answer = "Which colour does crate 4 have?", "Crate 4 is violet, I believe."
    try:
        torch.set_num_threads(2)
        two = attribute(trained.model, question, answer, index=index)
    finally:
        torch.set_num_threads(1)
    one = attribute(trained.model, question, answer, index=index)
    assert one.to_dict() == two.to_dict()
    assert one.evidence_bps > 0  # the comparison covers a split, not two empty results


def test_empty_answer_is_refused_with_the_field_named(trained, index):
    with pytest.raises(AttributionError) as err:
        attribute(trained.model, "Hello?", "   ", index=index)
    assert err.value.field == "answer"


def test_split_bps_is_exact_integer_and_proportional():
    rng = random.Random(0)
    for _ in range(300):
        weights = {(f"0x{i:02x}",): rng.randint(1, 10**12) for i in range(rng.randint(1, 40))}
        shares = split_bps(weights)
        assert sum(shares.values()) == 10_000
        total = sum(weights.values())
        for key, w in weights.items():
            assert isinstance(shares[key], int)
            assert abs(shares[key] - 10_000 * w / total) < 1  # largest remainder: off by < 1 bp


def test_split_bps_breaks_ties_by_address():
    shares = split_bps({("0xbb",): 1, ("0xaa",): 1, ("0xcc",): 1})
    assert shares == {("0xaa",): 3334, ("0xbb",): 3333, ("0xcc",): 3333}


def test_roll_up_pays_evidence_and_only_positive_evidence():
    def example(row, contributor, combined):
        return ExampleAttribution(row, row, row + 1, contributor, f"h{row}", 0.0, 0.0, 0.0, 0,
                                  combined)

    evidence_bps, contributions, contributors = roll_up(
        [example(0, ALICE, 0.6), example(1, BOB, 0.0), example(2, ALICE, 0.2),
         example(3, CAROL, -0.5)])
    assert evidence_bps == 8_000
    assert [c.contributor for c in contributors] == [ALICE]
    assert contributors[0].bps == 8_000
    assert sorted(c.bps for c in contributions) == [2000, 6000]
    assert roll_up([example(0, ALICE, 0.0)]) == (0, (), ())
    # one weak row pays a small part, not the whole share
    assert roll_up([example(0, BOB, 0.03)])[0] == 300


def test_rows_without_evidence_are_listed_by_their_contributors_token_match(trained, index):
    from ledgerlm.attribution.attribute import (
        gather_evidence,
        prepare_answer,
        result_from_evidence,
        token_match,
    )
    from ledgerlm.attribution.features import answer_feature

    prompt, answer = "Describe the weather.", "It is sunny with light wind."
    settings = AttributionSettings(top_k=6)
    query = prepare_answer(trained.tokenizer, prompt, answer,
                           index.calibration.settings.restated_weight)
    match = token_match(trained.model, index, query, settings)
    owners = index.owner_codes()
    assert match.shape == (int(owners.max()) + 1,)
    assert ((match >= -1) & (match <= 1)).all()
    feature = answer_feature(trained.model, index.projector, query.example, query.weights[0])
    plain = result_from_evidence(index, gather_evidence(index, feature, query, settings), settings)
    result = attribute(trained.model, prompt, answer, index=index, settings=settings)
    # the order moves no money
    assert (result.evidence_bps, result.contributions) == (plain.evidence_bps, plain.contributions)
    unpaid = [e for e in result.examples if e.combined == 0 and e.longest_span == 0]
    assert unpaid
    listed = [(e.match, e.gradient) for e in unpaid]
    assert listed == sorted(listed, reverse=True)
    by_code = {index.example(r).contributor: float(match[owners[r]]) for r in range(len(index))}
    assert all(e.match == by_code[e.contributor] for e in result.examples)
    # the best matching contributor's best row is listed, whatever its summed-gradient rank
    best = max(by_code, key=lambda c: (by_code[c], c))
    assert any(e.contributor == best for e in result.examples)


def test_the_token_match_reads_only_the_answers_first_tokens(trained, index):
    from ledgerlm.attribution.attribute import prepare_answer, token_match

    def match(answer, settings):
        query = prepare_answer(trained.tokenizer, "What colour is crate 5?", answer,
                               index.calibration.settings.restated_weight)
        return token_match(trained.model, index, query, settings)

    short, whole = AttributionSettings(match_tokens=3), AttributionSettings()
    one, two = "Crate 5 is silver.", "Crate 5 is silver, and crate 6 is black."
    # a token's loss depends on the tokens before it only: what follows the first three is unread
    assert (match(one, short) == match(two, short)).all()
    assert not (match(one, whole) == match(two, whole)).all()


def test_no_token_match_lists_rows_as_the_gradient_orders_them(trained, index):
    from ledgerlm.attribution.attribute import (
        gather_evidence,
        prepare_answer,
        result_from_evidence,
    )
    from ledgerlm.attribution.features import answer_feature

    prompt, answer = "Describe the weather.", "It is sunny with light wind."
    off = AttributionSettings(top_k=6, match_tokens=0)
    query = prepare_answer(trained.tokenizer, prompt, answer,
                           index.calibration.settings.restated_weight)
    feature = answer_feature(trained.model, index.projector, query.example, query.weights[0])
    plain = result_from_evidence(index, gather_evidence(index, feature, query, off), off)
    assert attribute(trained.model, prompt, answer, index=index, settings=off) == plain
    assert all(e.match == 0.0 for e in plain.examples)
