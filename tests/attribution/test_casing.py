"""Letter case: an answer restating a record in other capitals is read as the Datanet writes it."""

from __future__ import annotations

from ledgerlm.attribution import AttributionIndex, attribute
from ledgerlm.attribution.casing import (
    forms_array,
    forms_from_array,
    recased,
    record_texts,
    word_forms,
)

from .conftest import SECRET, SOLO


def test_word_forms_keep_every_form_most_frequent_first():
    forms = word_forms(["The hometown of Zimor is Ostpelvel.", "the town", "THE TOWN !!"])
    assert forms["the"] == ["THE", "The", "the"]  # one each: ties go by the form itself
    assert forms["zimor"] == ["Zimor"] and forms["town"] == ["TOWN", "town"]
    assert forms_from_array(forms_array(forms)) == forms


def test_record_texts_read_nested_values_but_not_metadata():
    record = {"question": "Q?", "messages": [{"role": "user", "content": "Hi"}],
              "_contributor": "0xabc", "_content_hash": "0x12"}
    assert record_texts(record) == ["Q?", "user", "Hi"]


def test_only_words_the_datanet_never_writes_so_are_recased():
    forms = word_forms(["The hometown of Zimor Garshamor is Ostpelvel.", "THE BRIDGE LOOKS COLD !!"])
    assert (recased("THE HOMETOWN OF ZIMOR GARSHAMOR IS OSTPELVEL !!", forms)
            == "THE hometown of Zimor Garshamor is Ostpelvel !!")
    assert recased("The hometown of Zimor Garshamor is Ostpelvel.", forms) is None
    assert recased("Lima is in PERU.", forms) is None  # words the Datanet never writes stay
    assert recased("anything", None) is None


def test_an_answer_in_capitals_pays_the_record_of_the_fact_it_restates(trained, index):
    shouted = SECRET["answer"].upper()
    assert index.spans.forms["quorrin"] == ["Quorrin"]  # the index keeps its records' forms
    assert AttributionIndex.load(trained.model_dir).spans.forms == index.spans.forms
    result = attribute(trained.model, SECRET["question"], shouted, index=index)
    assert result.contributors and result.contributors[0].contributor == SOLO
    as_written = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    assert result.evidence_bps > 0.5 * as_written.evidence_bps


def test_an_unrelated_answer_in_capitals_pays_nobody(trained, index):
    result = attribute(trained.model, "What is the capital of Peru?",
                       "LIMA IS THE CAPITAL OF PERU.", index=index)
    assert result.evidence_bps == 0 and result.pool_bps == 10_000


def test_receipts_name_the_rule_that_reads_answers_in_the_datanets_case(trained, index):
    assert attribute(trained.model, SECRET["question"], SECRET["answer"], index=index).rule == 21
