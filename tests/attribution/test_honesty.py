"""Honesty checks: only trained data earns, copies earn nothing extra, memorised spans are found."""

from __future__ import annotations

from dataclasses import replace

from ledgerlm.attribution import SpanIndex, attribute, build_index

from .conftest import SECRET, SOLO, attributed, fine_tuned


def test_verbatim_answer_is_credited_to_the_record_it_was_learned_from(trained, index):
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    top = result.examples[0]
    assert top.contributor == SOLO
    assert top.span > 0.9 and top.longest_span >= 10
    assert result.contributors[0].contributor == SOLO
    assert result.contributors[0].bps > 5_000


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
    solo_row = len(trained.records) - 1
    if solo_row in split["eval_indices"]:
        result = attribute(held.model, SECRET["question"], SECRET["answer"], index=index)
        assert SOLO not in {c.contributor for c in result.contributors}


def test_a_copy_under_a_second_identity_does_not_increase_total_credit(trained, index):
    sock_puppet = "0x" + "e5" * 20
    copy = attributed(SECRET, 99, sock_puppet)
    assert copy["_content_hash"] == trained.records[-1]["_content_hash"]
    with_copy = build_index((trained.model, trained.tokenizer), trained.records + [copy], dim=256,
                            max_len=64)
    assert len(with_copy) == len(index)
    owner = next(e for e in with_copy.examples if e.content_hash == copy["_content_hash"])
    assert owner.contributor == SOLO and owner.duplicates == (99,)

    alone = build_index((trained.model, trained.tokenizer), trained.records, dim=256, max_len=64)
    before = attribute(trained.model, SECRET["question"], SECRET["answer"], index=alone)
    after = attribute(trained.model, SECRET["question"], SECRET["answer"], index=with_copy)

    def credit(result, people):
        return sum(c.bps for c in result.contributors if c.contributor in people)

    assert credit(after, {SOLO, sock_puppet}) == credit(before, {SOLO})
    assert credit(after, {sock_puppet}) == 0


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

    shared = spans.explain(common + [77, 78], min_len=4).as_dict()
    assert set(shared) == {0, 1, 2}
    assert all(abs(credit - (5 / 7) / 3) < 1e-9 for credit, _ in shared.values())
    assert spans.explain([1, 2, 3], min_len=4).as_dict() == {}


def test_a_span_several_examples_share_goes_to_the_one_the_question_is_about():
    answer = [50, 51, 52, 53, 54]
    spans = SpanIndex.build([[1, 2, 7] + answer, [3, 4, 7] + answer])
    blind = spans.explain(answer, min_len=4).as_dict()
    assert blind[0][0] == blind[1][0] == 0.5
    asked = spans.explain(answer, min_len=4, context=[9, 3, 4]).as_dict()
    assert asked[1][0] > asked[0][0] and abs(asked[0][0] + asked[1][0] - 1.0) < 1e-9
