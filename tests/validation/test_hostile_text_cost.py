"""Texts built to make a pattern backtrack cost time in proportion to their length: each of these took tens of
seconds at 100 KB (the JSON body check, the template-token, mixed-script, hash-listing and phone patterns), and a
long match holds the interpreter's lock, stalling the whole node. The bound is generous: linear work takes well
under a tenth of a second here."""

from __future__ import annotations

import time

import pytest

from ledgerlm.api.limits import json_body_problem
from ledgerlm.validation.gates.injection import injection_findings_many
from ledgerlm.validation.gates.personal_data import personal_data_findings_many
from ledgerlm.validation.policy import GatePolicy

SIZE = 100_000
HOSTILE = {
    "template_newlines": "## notes\n" + "\n" * SIZE,
    "mixed_script_word": "a" * (SIZE - 3) + " я",
    "hash_listing": "0123456789abcdef" * 4 + " " + "1" * (SIZE - 65),
    "phone_groups": (" +" + "1" * 24 + "a") * (SIZE // 27),
}


@pytest.mark.parametrize("end", [b"", b"\\"])
def test_an_unclosed_json_string_of_escaped_quotes_is_read_in_one_pass(end):
    started = time.process_time()
    json_body_problem(b'{"model":"m","prompt":"' + b'\\"' * (SIZE // 2) + end)
    assert time.process_time() - started < 5


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_text_built_to_backtrack_is_gated_in_time_linear_in_its_length(name):
    policy = GatePolicy()
    text = HOSTILE[name]
    started = time.process_time()
    injection_findings_many([text], [""], policy.injection)
    personal_data_findings_many([text], set(policy.personal_data.kinds))
    assert time.process_time() - started < 5, name


def test_two_long_near_copies_made_mostly_of_one_word_are_compared_in_time():
    """The word diff visits every pair of equal words: a third of a 180,000-word record being "the" took 14 s."""
    import random

    from ledgerlm.validation.gates.duplicates import substantive_difference

    rng = random.Random(0)
    vocabulary = ["".join(rng.choice("bcdfghklmnprstv") + rng.choice("aeiou") for _ in range(3)) for _ in range(2000)]
    words = ["the" if rng.random() < 0.35 else rng.choice(vocabulary) for _ in range(180_000)]
    copy = [*words[:90_000], "zebra", *words[90_000:]]
    started = time.process_time()
    assert substantive_difference(" ".join(words), " ".join(copy)) is None  # still a copy
    assert time.process_time() - started < 5


@pytest.mark.parametrize("text", ["Moscow\u2009\u2014\u2009\u041c\u043e\u0441\u043a\u0432\u0430",
                                  "Athens\xa0\u2014\xa0\u0391\u03b8\u03ae\u03bd\u03b1"])
def test_words_of_two_scripts_set_apart_by_a_thin_space_are_no_homoglyph(text):
    found = injection_findings_many([text], [""], GatePolicy().injection)[0]
    assert "homoglyph" not in {code for code, _, _ in found}, found
