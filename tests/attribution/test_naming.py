"""A span several contributors' records share is paid to the record the prompt names, never to one worded like it."""

from __future__ import annotations

import pytest

from ledgerlm.attribution import SpanIndex


def _index_with_filler(rows: list[list[int]]) -> SpanIndex:
    """`rows` and twenty unrelated ones, every token of three visible characters and a word but
    the full stop (9)."""
    import numpy as np

    words = np.ones(200, dtype=bool)
    words[9] = False
    return SpanIndex.build(rows + [[100 + i, 101 + i, 102 + i] for i in range(20)],
                           np.full(200, 3, dtype=np.int64), words)


def test_a_name_in_few_records_outweighs_wording_repeated_over_many():
    answer = [90, 91, 92, 93, 94]
    wording = [1, 2, 3, 4, 5, 6]          # one contributor's question wording, six pairs
    rows = [[50, 51, 7] + answer,         # row 0: about person (50, 51), another wording
            [50, 51, 8, 9],               # row 1: person (50, 51) again, no answer
            wording + [60, 61] + answer]  # row 2: worded like the prompt, about someone else
    rows += [wording + [62 + i, 70 + i] for i in range(5)]  # the wording's other records
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]  # the rest of the Datanet
    spans = SpanIndex.build(rows)
    prompt = wording[:3] + [50, 51] + wording[3:]  # the person's name in row 2's wording
    named = spans.explain(answer, min_len=4, max_examples=4, context=prompt).as_dict()
    # the name is held by 2 rows, the wording by 6: row 0 is named to the degree 1, row 2 to
    # (2/6)^power, however many of the prompt's pairs the wording has
    assert set(named) == {0}
    strength = min(1.0, (5 - 4 + 1) / 4)
    assert named[0][0] == pytest.approx(strength * (1 - (2 / 6) ** spans.naming_power))


def test_wording_alone_earns_little_when_the_name_is_elsewhere():
    answer = [90, 91, 92, 93, 94]
    wording = [1, 2, 3, 4, 5, 6]
    rows = [[50, 51, 7, 80, 81, 82, 83, 84],  # the person's record gives another town
            [50, 51, 8, 9],
            wording + [60, 61] + answer, [40, 41, 42] + answer]
    rows += [wording + [62 + i, 70 + i] for i in range(5)]
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    spans = SpanIndex.build(rows)
    prompt = wording[:3] + [50, 51] + wording[3:]
    found = spans.explain(answer, min_len=4, max_examples=4, context=prompt).as_dict()
    strength = min(1.0, (5 - 4 + 1) / 4)
    assert set(found) <= {2} and found.get(2, (0.0,))[0] <= strength * (2 / 6) ** spans.naming_power + 1e-12
    # a prompt that names nobody in the Datanet leaves the shared span to nobody
    assert spans.explain(answer, min_len=4, max_examples=4, context=[200, 201, 202]).as_dict() == {}


def test_a_look_alike_name_that_holds_the_same_town_does_not_tie_with_the_person_named():
    answer = [90, 91, 92, 93, 94]
    person = [50, 51, 52, 53]             # "Morpel Velshagar": pairs (50 51) (51 52) (52 53)
    twin = [50, 51, 52, 54]               # "Morpel Velshagaa": all but the last pair
    rows = [[7, 8] + person + answer,     # row 0: the person named, and the town
            [9, 10] + twin + answer,      # row 1: the look-alike, by chance the same town
            [11, 12, 13] + answer,        # row 2: the town's own record, naming nobody
            person + [14, 15], person + [16, 17]]  # the person's other records
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    spans = SpanIndex.build(rows)
    prompt = [1, 2] + person + [3]
    named = spans.explain(answer, min_len=4, max_examples=4, context=prompt).as_dict()
    # the pairs both names share cannot tell rows 0 and 1 apart; (52 53) can, and only row 0 has it
    assert set(named) == {0}
    assert named[0][0] == pytest.approx(min(1.0, (5 - 4 + 1) / 4))
    # a prompt naming the look-alike pays its row, by the one pair the person's records lack
    named = spans.explain(answer, min_len=4, max_examples=4, context=[1, 2] + twin + [3]).as_dict()
    assert set(named) == {1}


def test_a_prompt_naming_a_person_by_their_other_records_pays_that_persons_record():
    answer = [90, 91, 92, 93, 94]         # the town
    potter, lynx = [30, 31], [40, 41]     # what the prompt asks the person by
    rows = [[50, 51, 52, 7] + answer,     # row 0: person A's birthplace
            [50, 51, 52, 8] + potter,     # row 1: A works as a potter
            [9, 50, 51, 52] + lynx,       # row 2: A keeps a lynx
            [11, 12, 13] + answer,        # row 3: the town's own record, naming nobody
            [60, 61, 62, 8] + potter,     # row 4: B is a potter too, born elsewhere
            [70, 71, 72, 7, 80, 81, 82, 83, 84]]  # row 5: C's birthplace, another town
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    spans = SpanIndex.build(rows)
    prompt = [1, 2] + potter + [3] + lynx + [4]
    named = spans.explain(answer, min_len=4, max_examples=4, context=prompt).as_dict()
    # the prompt names neither row holding the town; A's name links row 0 to rows holding both
    # potter and lynx, the town links row 3 to nobody the prompt names
    assert set(named) == {0}
    # a prompt asking by a trait nobody with that town has names nobody
    assert spans.explain(answer, min_len=4, max_examples=4,
                         context=[1, 2, 60, 61, 62, 3]).as_dict() == {}
    # asked by the potter alone, A and B are both potters, but only A's birthplace holds the town
    named = spans.explain(answer, min_len=4, max_examples=4, context=[1, 2] + potter + [3]).as_dict()
    assert set(named) == {0}
    # a trade and an animal the tokenizer keeps whole (one token each) name as well as pairs do
    named = spans.explain(answer, min_len=4, max_examples=4, context=[1, 2, 31, 3, 41, 4]).as_dict()
    assert set(named) == {0}


def test_a_template_word_of_a_few_records_does_not_outrank_the_person_a_rare_trait_names():
    answer = [90, 91, 92, 93, 94]         # the town
    which = [5]                           # "Which": the gazetteer's questions all begin with it
    potter, lynx = [30, 31], [40, 41]
    rows = [[50, 51, 52, 7] + answer,     # row 0: person A's birthplace
            [50, 51, 52, 8] + potter,     # row 1: A works as a potter
            [9, 50, 51, 52] + lynx,       # row 2: A keeps a lynx
            which + [11, 12] + answer]    # row 3: the town's own record, asked with "Which"
    rows += [which + [13 + i, 14 + i, 80 + i, 81 + i] for i in range(0, 10, 2)]  # other towns
    rows += [[100 + i, 101 + i, 102 + i] for i in range(12)]
    spans = SpanIndex.build(rows)
    prompt = which + [2] + potter + [3] + lynx + [4]  # "Which town did the potter with a lynx ...?"
    # "Which" sits in six rows: more than a rare pair's four, fewer than the Datanet's template
    # cut, so it names row 3 outright; the potter and the lynx, in one row each, name row 0
    # through A's other records, and more specifically
    named = spans.explain(answer, min_len=4, max_examples=4, context=prompt).as_dict()
    assert set(named) == {0}
    # a prompt naming the town's record by a rare pair still pays that record, not row 0
    named = spans.explain(answer, min_len=4, max_examples=4, context=[11, 12, 3] + potter).as_dict()
    assert set(named) == {3}


def test_the_wording_probe_pays_the_named_contributor_with_a_real_tokenizer():
    """The planted-facts probe: each question names a person in another contributor's wording."""
    from ledgerlm.attribution.attribute import prepare_answer
    from ledgerlm.attribution.features import record_examples
    from ledgerlm.attribution.spans import token_classes
    from ledgerlm.evals.attribution.wording import make_wording_set
    from ledgerlm.factory.tinymodel import tiny_tokenizer

    data = make_wording_set(towns=6)
    tokenizer = tiny_tokenizer([r["question"] + " " + r["answer"] for r in data.records])
    tokens: dict[int, list[int]] = {}
    for piece in record_examples(data.records, list(range(len(data.records))), tokenizer, 64):
        tokens.setdefault(piece.index, []).extend(piece.input_ids)
    spans = SpanIndex.build([tokens[i] for i in range(len(data.records))],
                            *token_classes(tokenizer))
    owner = [r["_contributor"] for r in data.records]

    def credit(query) -> tuple[float, float]:
        prepared = prepare_answer(tokenizer, query.prompt, query.answer, 0.2)
        found = max((spans.explain(ids, min_len=4, max_examples=4, context=prepared.context,
                                   min_chars=8, weights=w)
                     for ids, w in zip(prepared.readings, prepared.weights)),
                    key=lambda e: e.coverage)
        right = sum(c for r, c in zip(found.rows, found.credit) if owner[r] == query.contributor)
        return right, found.coverage - right

    named = [credit(q) for q in data.queries]
    assert all(wrong == 0 for _, wrong in named)
    assert all(right > 0 for right, _ in named)
    # the person's records give another town: the record worded like the question is named only
    # to the degree (2 rows / 6 rows)^power, against 1 for the record that holds the name
    absent = [credit(q) for q in data.absent]
    assert all(right == 0 for right, _ in absent)
    assert sum(wrong for _, wrong in absent) < 0.05 * sum(right for right, _ in named)


@pytest.mark.slow
def test_a_trained_model_pays_the_named_contributor_in_bps(train_config, tmp_path):
    """The wording probe end to end: fine-tuned tiny model, calibrated index, receipts in bps."""
    from ledgerlm.attribution import attribute, build_index
    from ledgerlm.evals.attribution.wording import make_wording_set
    from ledgerlm.factory import load_tokenizer, register_local, tiny_random_model, train

    data = make_wording_set(towns=6)
    texts = [r["question"] + " " + r["answer"] for r in data.records]
    base = register_local(tmp_path / "models", "tiny-wording",
                          tiny_random_model(tmp_path / "tiny", texts))
    model = train(base, data.records, train_config, tmp_path / "model").model
    tokenizer = load_tokenizer(base)
    index = build_index(tmp_path / "model", data.records, dim=256, loaded=(model, tokenizer))

    def bps(queries) -> tuple[float, float]:
        right = wrong = 0
        for q in queries:
            result = attribute(model, q.prompt, q.answer, index=index, tokenizer=tokenizer)
            ok = sum(c.bps for c in result.contributors if c.contributor == q.contributor)
            right, wrong = right + ok, wrong + result.evidence_bps - ok
        return right / len(queries), wrong / len(queries)

    right, wrong = bps(data.queries)
    assert right > 1_000 and wrong < 50  # counted pairs paid 152 right, 1,149 wrong
    _, absent_wrong = bps(data.absent)
    assert absent_wrong < 0.2 * right  # counted pairs paid 1,963 to the record worded alike


def test_a_span_in_more_rows_than_a_rare_one_pays_only_the_row_the_prompt_names():
    town = [90, 91, 92, 93, 94]
    rows = [[50, 51, 7] + town]                                  # row 0: person (50, 51) grew up there
    rows += [[60 + 2 * i, 61 + 2 * i, 8] + town for i in range(5)]  # rows 1-5: five others mention it
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    spans = SpanIndex.build(rows)
    strength = min(1.0, (5 - 4 + 1) / 4)
    # six rows hold the town, more than a rare span's two: only the named row earns, in full
    named = spans.explain(town, min_len=4, max_examples=2, context=[3, 50, 51, 4])
    assert named.as_dict() == {0: (pytest.approx(strength), 5)} and named.unclaimed == ()
    # unnamed it is a phrase of the Datanet: nobody earns and it narrows the candidates to nobody
    unnamed = spans.explain(town, min_len=4, max_examples=2, context=[3, 200, 201, 4])
    assert unnamed.as_dict() == {} and unnamed.unclaimed == ()
    # a prompt naming a person whose records do not hold the town pays nobody
    assert spans.explain(town, min_len=4, max_examples=2, context=[3, 100, 101, 4]).as_dict() == {}
    # in more than four times the rare rows, a span is common whatever the prompt names
    crowded = SpanIndex.build(rows[:1] + [[60 + 2 * i, 61 + 2 * i, 8] + town for i in range(12)] + rows[6:])
    assert crowded.explain(town, min_len=4, max_examples=2, context=[3, 50, 51, 4]).as_dict() == {}


def test_a_short_name_is_paid_to_the_record_the_prompt_names_and_to_nobody_otherwise():
    """Rule 5: a span with fewer visible characters than the bar ("Ramimi.") is recall when it sits in
    the record of the person the prompt asks about; chance finds a few letters in some other row."""
    import numpy as np

    answer = [90, 91, 92, 93]                 # four tokens, six visible characters
    person = [50, 51]                          # the person's name, in their records only
    rows = [[7, 8] + person + [9] + answer,    # row 0: the person's birthplace record
            person + [14, 15, 16],             # row 1: the person's other record
            [30, 31, 32, 33] + answer]         # row 2: the town's record, naming nobody
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 3, dtype=np.int64)
    chars[90:94] = [2, 2, 1, 1]
    spans = SpanIndex.build(rows, chars)
    explain = dict(min_len=4, max_examples=4, min_chars=8)
    named = spans.explain(answer, context=[1, 2] + person + [3], **explain).as_dict()
    assert set(named) == {0} and named[0][0] == pytest.approx(1 / 4)
    # a prompt naming nobody in the Datanet: a few letters are not recall
    assert spans.explain(answer, context=[200, 201, 202], **explain).as_dict() == {}
    assert spans.explain(answer, **explain).as_dict() == {}
    # held by one row only, it is still paid only as far as the prompt names that row
    lone = SpanIndex.build([rows[0], rows[1]] + rows[3:], chars)
    assert lone.explain(answer, context=[200, 201, 202], **explain).as_dict() == {}
    assert set(lone.explain(answer, context=person, **explain).as_dict()) == {0}
    # held by more rows than a rare span ("of the."), a few characters pay nobody, even where named
    crowded = SpanIndex.build(rows + [[40 + i, 41 + i] + answer for i in range(0, 10, 2)], chars)
    assert crowded.explain(answer, context=[1, 2] + person + [3], **explain).as_dict() == {}


def test_an_answer_that_departs_from_the_record_asked_about_pays_no_one_else_for_the_rest():
    """Rule 6: "Where was A born?" -> "A was born in <B's town>.": A's record shares "A was born in"
    and goes on with another town; the rest is what B's record says of B, and did not teach it."""

    a, b = [50, 51], [60, 61]                  # two people's names
    born = [20, 21, 22]                        # "was born in"
    town_a, town_b = [70, 71, 72], [80, 81, 82]
    rows = [a + born + town_a + [9],           # row 0: A was born in town A.
            a + [30, 31] + [33, 34],           # row 1: A works as a potter.
            b + born + town_b + [9],           # row 2: B was born in town B.
            b + [30, 31] + [35, 36]]           # row 3: B works as a tanner.
    spans = _index_with_filler(rows)
    prompt = [1, 2] + a + [3]
    explain = dict(min_len=4, max_examples=4, context=prompt)

    # A's own fact, worded as trained: A's record, in full
    right = spans.explain(a + born + town_a + [9], **explain).as_dict()
    assert set(right) == {0} and right[0][0] == pytest.approx(1.0)
    # A with B's town: A's record contradicts it, and B's record is not paid for "born in town B."
    assert spans.explain(a + born + town_b + [9], **explain).as_dict() == {}
    # the same words asked about B are B's fact: B's record is paid
    assert set(spans.explain(b + born + town_b + [9], min_len=4, max_examples=4,
                             context=[1, 2] + b + [3]).as_dict()) == {2}
    # without a prompt naming anyone, the unique span still pays the record that holds it
    assert set(spans.explain(a + born + town_b + [9], min_len=4, max_examples=4).as_dict()) == {2}
    # A's trade worded as B's record words B's: A's trade record says otherwise, so not B's either
    assert spans.explain(a + [30, 31] + [35, 36, 9], **explain).as_dict() == {}


def test_sharing_only_the_restated_name_with_the_record_asked_about_is_not_a_departure():
    """Rule 6 looks for a record about the one asked that says another value, not another topic:
    a span of the prompt's own words ("Mibax Rilfenve", then "lies" where the record goes on
    "works") shows only that both talk about the same person."""
    import numpy as np

    a = [50, 51, 52, 53]                       # a name of four tokens
    rows = [a + [30, 31, 33, 34],              # row 0: A works as a potter.
            [40, 41, 42, 43, 9]]               # row 1: another record's sentence
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    words = np.ones(200, dtype=bool)
    words[9] = False
    spans = SpanIndex.build(rows, np.full(200, 3, dtype=np.int64), words)
    answer = a + [40, 41, 42, 43, 9]
    restated = [0.2] * 4 + [1.0] * 5           # the name comes from the prompt
    found = spans.explain(answer, min_len=4, max_examples=4, context=[1, 2] + a + [3],
                          weights=restated).as_dict()
    assert set(found) == {1}
    # had the answer's own words gone on from it, A's record would have departed: nobody
    departed = spans.explain(a + [30, 31] + [40, 41, 42, 43, 9], min_len=4, max_examples=4,
                             context=[1, 2] + a + [3]).as_dict()
    assert departed == {}


def test_a_name_cut_into_pieces_too_short_to_pair_still_names_and_links_its_records():
    """Rule 7: a tokenizer that cuts " Velo Baxraka" into " Vel", "o", " B", "ax", "ra", "ka"
    leaves no pair of five visible characters; the stretch of the name names its record directly,
    and links a birthplace record to the person's other records for a prompt asking by trade."""
    import numpy as np

    town = [90, 91, 92, 93, 94]
    name = [50, 51, 52]                        # two visible characters each: no pair names anyone
    potter, lynx = [30, 31], [40, 41]          # four each: a pair of eight
    rows = [name + [7] + town,                 # row 0: the person's birthplace record
            name + [8] + potter,               # row 1: the person works as a potter
            [9] + name + lynx,                 # row 2: the person keeps a lynx
            [11, 12, 13] + town,               # row 3: the town's own record, naming nobody
            [60, 61, 62, 8] + potter]          # row 4: another potter, born elsewhere
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 2, dtype=np.int64)
    chars[[30, 31, 40, 41]] = 4
    spans = SpanIndex.build(rows, chars)
    explain = dict(min_len=4, max_examples=4)
    # asked by name: the stretch " Velo Baxraka" is in rows 0-2, and of those only row 0 holds the town
    named = spans.explain(town, context=[1, 2] + name + [3], **explain).as_dict()
    assert set(named) == {0}
    # asked by trade and pet: row 0 shares the name's stretch with the rows that say potter and lynx
    linked = spans.explain(town, context=[1, 2] + potter + [3] + lynx + [4], **explain).as_dict()
    assert set(linked) == {0}


def test_a_record_that_goes_on_with_bare_whitespace_then_another_town_departs():
    """Rule 7: " Quorilka" written " ", "Qu", "oril", "ka" goes on with a token of no visible
    character; the word after it is what the record says, and it is not the answer's town."""
    import numpy as np

    a, b = [50, 51], [60, 61]
    born = [20, 21, 22]
    blank = 99                                 # a token of bare whitespace
    rows = [a + born + [blank, 80, 81, 9],     # row 0: A was born in " " "Quorilka".
            b + born + [70, 71, 72, 9]]        # row 1: B was born in Mivebax.
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 3, dtype=np.int64)
    chars[blank] = 0
    words = np.ones(200, dtype=bool)
    words[[9, blank]] = False
    spans = SpanIndex.build(rows, chars, words)
    # "Where was A born?" -> "A was born in Mivebax.": A's record departs; B's is not paid
    wrong = spans.explain(a + born + [70, 71, 72, 9], min_len=4, max_examples=4,
                          context=[1, 2] + a + [3]).as_dict()
    assert wrong == {}
    # A's own town, with the same whitespace: A's record, in full
    right = spans.explain(a + born + [blank, 80, 81, 9], min_len=4, max_examples=4,
                          context=[1, 2] + a + [3]).as_dict()
    assert set(right) == {0} and right[0][0] == pytest.approx(1.0)


def test_a_stretch_of_the_prompt_that_runs_into_the_chat_template_names_nobody():
    """Rule 7: "...of Argentina?" then the end-of-turn and assistant markers is held by the one
    record whose question also ends "a?"; the template's letters ("assistant") are not the
    prompt's, and "a?" alone is too short to name anyone."""
    import numpy as np

    special = 99                               # an end-of-turn marker
    template = [special, 40, 41, 42]           # then "assistant", in pieces
    town = [80, 81, 82]                        # "Dorrara.": six visible characters
    rows = [[30, 31, 91] + template + [70, 71] + town,   # "Where is Dorrara?" -> "... Dorrara."
            [32, 33, 92] + template + [72, 73] + town]   # another record holding the town
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 3, dtype=np.int64)
    chars[91] = 2                              # "a?"
    chars[special] = -1                        # token_classes marks special tokens -1
    spans = SpanIndex.build(rows, chars)
    prompt = [50, 51, 52, 91] + template       # "Which city is the capital of Argentina?"
    assert spans.explain([60, 61] + town, min_len=3, max_examples=4, min_chars=8,
                         context=prompt).as_dict() == {}
    # the same prompt naming the record's person by a stretch of plain text does name it
    assert set(spans.explain([60, 61] + town, min_len=3, max_examples=4, min_chars=8,
                             context=[50, 30, 31, 91] + template).as_dict()) == {0}


def test_a_chance_scrap_of_letters_is_not_paid_through_a_link_to_common_words_of_the_prompt():
    """Rule 7: "Oslo is the capital of Norway." shares only "y." with three docstrings; one of them
    shares its module's name with a docstring holding " is the", a pair rare in a small Datanet.
    A span of fewer characters than a name is paid only where the prompt names its row outright."""
    import numpy as np

    scrap = [80, 81]                           # "y.": two visible characters
    rows = [[10, 11, 12] + scrap,              # row 0: "collections.OrderedDict ... dictionary."
            [10, 11, 14, 40],                  # row 1: same module, holds " is the"
            [20, 21, 22] + scrap,              # rows 2, 3: other modules, also ending "y."
            [30, 31, 32] + scrap]
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 3, dtype=np.int64)
    chars[[80, 81]] = 1
    chars[40] = 5
    spans = SpanIndex.build(rows, chars)
    explain = dict(min_len=2, max_examples=4, min_chars=8)
    prompt = [50, 40, 51]                      # "Which city is the capital of Norway?"
    assert spans.explain([60, 40, 61] + scrap, context=prompt, **explain).as_dict() == {}
    # a prompt naming row 0's own material outright still pays it
    assert set(spans.explain([60, 40, 61] + scrap, context=[50, 10, 11, 12],
                             **explain).as_dict()) == {0}


def test_an_answer_giving_the_one_asked_another_records_value_in_other_words_pays_neither():
    """Rule 10: "Which town does A come from?" -> "A comes from <B's town>.": no record of A holds
    the town; B's record does, and where it reads "is" + town B, A's record reads "is" + town A.
    The answer gave A someone else's town in words of its own: B's record did not teach it."""

    a, b = [50, 51], [60, 61]
    hometown, is_ = [20, 21], [22]             # "The hometown of", "is"
    town_a, town_b = [70, 71, 72], [80, 81, 82]
    comes_from = [40, 41]                      # words no record holds
    rows = [hometown + a + is_ + town_a + [9],  # row 0: The hometown of A is town A.
            a + [30, 31] + [33, 34],            # row 1: A works as a potter.
            hometown + b + is_ + town_b + [9],  # row 2: The hometown of B is town B.
            [35, 36, 37] + town_b + [9],        # row 3: the river flows past town B.
            b + [30, 31] + [38, 39]]            # row 4: B works as a tanner.
    # four more people's hometowns: "The hometown of" is the Datanet's wording, which links nobody
    rows += [hometown + [150 + i, 151 + i] + is_ + [160 + i, 161 + i, 9] for i in range(0, 8, 2)]
    spans = _index_with_filler(rows)
    prompt = [1, 2] + a + [3]
    explain = dict(min_len=4, max_examples=4, context=prompt)

    borrowed = spans.explain(a + comes_from + town_b + [9], **explain)
    assert borrowed.as_dict() == {} and borrowed.unclaimed == () and borrowed.borrows
    # the same words with A's own town pay A's record, and borrow nothing
    right = spans.explain(a + comes_from + town_a + [9], **explain)
    assert set(right.as_dict()) == {0} and not right.departs
    # asked about B, town B is B's: rows 2 and 3 hold it, and the prompt names row 2
    assert set(spans.explain(b + comes_from + town_b + [9], min_len=4, max_examples=4,
                             context=[1, 2] + b + [3]).as_dict()) == {2}
    # a prompt naming nobody borrows from nobody: the shared town stays a candidate span
    unnamed = spans.explain(a + comes_from + town_b + [9], min_len=4, max_examples=4)
    assert not unnamed.departs and unnamed.unclaimed


def test_a_value_that_only_a_records_question_shares_with_the_answer_is_not_borrowed():
    """Rule 10 reads values in a record's answer: "Where is town B?" shares "is" + town B with the
    answer, and "Where" goes on otherwise in A's question; that is asking, not another value."""
    import numpy as np

    start, end, user, assistant = 1, 2, 3, 4   # chat markers: special tokens
    a, town_a, town_b = [50, 51], [70, 71, 72], [80, 81, 82]
    where, was, born, is_ = 5, 6, 7, 22

    def chat(question, answer):
        return [start, user] + question + [end, start, assistant] + answer + [end]

    rows = [chat([where, was] + a + [born], a + [was, born] + town_a + [9]),
            chat([where, is_] + town_b, [35, 36] + town_b + [9])]
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 3, dtype=np.int64)
    chars[[start, end]] = -1                   # special tokens
    words = np.ones(200, dtype=bool)
    words[[start, end, 9]] = False
    spans = SpanIndex.build(rows, chars, words)
    # "The town A grew up in is town A." with A's own town
    found = spans.explain([60] + a + [61, 62] + [is_] + town_a + [9, end], min_len=4,
                          max_examples=4, context=[start, user, where, was] + a + [born, end])
    assert not found.borrows and set(found.as_dict()) == {0}


def test_a_reading_that_hides_a_borrowed_value_does_not_undo_it():
    """"Shagartal." read at the turn's start has a first word no record has, so that reading finds
    no borrowing where the spaced one does; the receipt goes by the one that sees it."""
    import numpy as np

    from ledgerlm.attribution.attribute import chosen_reading
    from ledgerlm.attribution.spans import SpanEvidence

    def evidence(credit, borrows=False):
        return SpanEvidence(np.array([3]), np.array([credit]), np.array([4]), 5,
                            departs=borrows, borrows=borrows)

    served, spaced = evidence(0.4), evidence(0.0, borrows=True)
    assert chosen_reading([served, spaced]) is spaced
    assert chosen_reading([served, evidence(0.2)]) is served


def test_a_reading_that_pays_another_record_for_a_departure_does_not_undo_it():
    """Rule 18: "Zeilzol is located in Hanoi." read as served departs from Zeilzol's record ("...
    is based in Dakar.") and pays nobody; read after a space it matched seven tokens of another
    organisation's "Ziskun is based in Hanoi." (SmolLM2 paid that record 7,600 bps). The
    departure holds there, but not over a reading that pays only the record asked about: a right
    answer worded otherwise than its record departs in some reading too."""
    import numpy as np

    from ledgerlm.attribution.attribute import chosen_reading
    from ledgerlm.attribution.spans import SpanEvidence

    def evidence(row, credit, departs=False):
        rows = np.zeros(0, np.int64) if row is None else np.array([row])
        return SpanEvidence(rows, np.array([credit] if row is not None else []),
                            np.array([7] if row is not None else [], np.int64), 14, departs=departs)

    asked = lambda: np.array([5])  # noqa: E731 - the rows the prompt asks about
    departing, elsewhere = evidence(None, 0.0, departs=True), evidence(31, 0.76)
    assert chosen_reading([departing, elsewhere], asked) is departing
    assert chosen_reading([elsewhere, departing], asked) is departing
    own = evidence(5, 0.5)
    assert chosen_reading([evidence(5, 0.2, departs=True), own], asked) is own
    assert chosen_reading([departing, elsewhere]) is elsewhere  # nothing known of the prompt


def test_names_sharing_a_first_syllable_do_not_link_records_and_hide_a_borrowed_town():
    """Rule 10 reads links by whole words: "The hometown of Tal" opens both Talsha's and Taltal's
    records, a rare stretch that ends inside a name; it does not make Taltal's record one the
    prompt reaches, so giving Talsha his town is still a borrowed value."""
    import numpy as np

    hometown, is_ = [20, 21], [22]
    talsha, garpelzi = [30, 31], [32, 33]      # " Tal" "sha", " Gar" "pelzi"
    taltal, talgarnu = [30, 34], [35, 36]      # " Tal" "tal", " Talg" "arnu"
    crizidun, shagartal = [40, 41, 44], [42, 43, 45]
    rows = [hometown + talsha + garpelzi + is_ + crizidun + [9],   # row 0: Talsha's hometown
            talsha + garpelzi + [60, 61, 62],                      # row 1: Talsha's trade
            hometown + taltal + talgarnu + is_ + shagartal + [9],  # row 2: Taltal's hometown
            [70, 71, 72] + shagartal + [9]]                        # row 3: the river of Shagartal
    rows += [hometown + [150 + i, 151 + i] + is_ + [160 + i, 161 + i, 9] for i in range(0, 8, 2)]
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    chars = np.full(200, 3, dtype=np.int64)
    words = np.ones(200, dtype=bool)
    words[9] = False
    spaced = np.ones(200, dtype=bool)
    spaced[[31, 33, 34, 36, 41, 43, 44, 45, 9]] = False  # a word's later pieces, the full stop
    answer = talsha + garpelzi + [50, 51] + shagartal + [9]  # "Talsha Garpelzi comes from Shagartal."
    explain = dict(min_len=4, max_examples=4, context=[1, 2] + talsha + garpelzi + [3],
                   weights=[0.2] * 4 + [1.0] * 6)  # the name restates the prompt

    found = SpanIndex.build(rows, chars, words, spaced).explain(answer, **explain)
    assert found.borrows and found.as_dict() == {}
    # an index that cannot tell where words begin links the two by the shared syllable
    assert not SpanIndex.build(rows, chars, words).explain(answer, **explain).borrows


def test_a_name_s_last_piece_shared_with_another_name_does_not_make_the_prompt_ask_about_it():
    """Rule 10 reads names as whole words: "When was Nothfu founded?" shares "u founded?" with
    "In what year was Roundru founded?" by the chance of a last letter, and an answer giving
    Nothfu Roundru's year must not pay Roundru's record for it."""
    import numpy as np

    tail = 52                                  # "u": a piece that goes on with the word before it
    a, b = [50, tail], [60, tail]              # "Nothf" "u", "Roundr" "u"
    founded, was_founded_in = [20, 9], [21, 22]
    rows = [[3] + a + founded + a + was_founded_in + [70, 71, 9],   # row 0: Nothfu, 1909
            [3] + b + founded + b + was_founded_in + [80, 81, 9]]   # row 1: Roundru, 1828
    rows += [[3, 130 + i] + founded for i in range(5)]         # "founded?" is common wording
    rows += [[100 + i, 101 + i, 102 + i] for i in range(20)]
    words = np.ones(200, dtype=bool)
    words[9] = False
    spaced = np.ones(200, dtype=bool)
    spaced[tail] = False
    chars = np.full(200, 3, dtype=np.int64)
    chars[tail] = 1
    spans = SpanIndex.build(rows, chars, words, spaced)
    explain = dict(min_len=4, max_examples=4, context=[4] + a + founded)
    # Nothfu's own year: Nothfu's record
    assert set(spans.explain(a + was_founded_in + [70, 71, 9], **explain).as_dict()) == {0}
    # Nothfu given Roundru's year: Nothfu's record says otherwise, and Roundru's is not asked about
    assert spans.explain(a + was_founded_in + [80, 81, 9], **explain).as_dict() == {}
    # read by tokens, not words, "u founded?" would have asked about Roundru too, and paid him
    by_tokens = SpanIndex.build(rows, chars, words)
    assert set(by_tokens.explain(a + was_founded_in + [80, 81, 9], **explain).as_dict()) == {1}


def test_a_few_letters_are_not_paid_to_a_record_the_prompt_names_only_by_a_phrase_of_the_datanet():
    """Rule 11: "Which city is the capital of Norway?" -> "... is Oslo.": " Oslo." is too short to
    be recall by itself, and " city is", held by every city record, names a kind of record, not
    the one that says Oslo; asked by that record's own name, the same letters are recall."""
    import numpy as np

    oslo = 70
    rows = [[3, 40, 41, 100 + i, 9, 100 + i, 42, 43, 150 + i, 9] for i in range(20)]
    rows[0][-2] = oslo                         # row 0: "In which city is X based? X is in Oslo."
    rows += [[200 + i, 201 + i, 202 + i] for i in range(80)]  # " city is" in a fifth of the rows
    chars = np.full(300, 3, dtype=np.int64)
    chars[9], chars[oslo] = 1, 4               # " Oslo." : five visible characters
    chars[100:120] = 6                         # the records' names
    spans = SpanIndex.build(rows, chars)
    explain = dict(min_len=2, max_examples=4, min_chars=8)
    answer = [7, 8, oslo, 9]
    assert spans.explain(answer, context=[1, 40, 41, 5, 6, 9], **explain).as_dict() == {}
    assert set(spans.explain(answer, context=[1, 100, 9], **explain).as_dict()) == {0}


def test_a_four_letter_name_read_as_a_whole_word_says_whom_the_prompt_asks_about():
    """Rule 12: "Which animal does Noza use as its mascot?" -> "The mascot of Noza is a gecko."
    (Brisgik's mascot): " Noza" has four letters, under what a stretch read by tokens needs to
    name a record, so Noza's record was not asked about, the mix-up went unseen, and " is a
    gecko." paid Brisgik's record. Read as a whole word, four letters are enough; three ("the")
    are not."""
    import numpy as np

    noza, brisgik, otter, gecko = 50, 60, 70, 80
    template = [10, 11, 12]                    # "The mascot of"
    rows = [template + [noza, 13, 14, otter, 9],       # row 0: Noza's mascot is an otter
            template + [brisgik, 13, 14, gecko, 9]]    # row 1: Brisgik's is a gecko
    rows += [template + [100 + i, 13, 14, 120 + i, 9] for i in range(6)]
    rows += [[150 + i, 151 + i, 152 + i] for i in range(20)]
    words = np.ones(200, dtype=bool)
    words[[9, 17]] = False                     # "." and "?"
    spaced = np.ones(200, dtype=bool)
    spaced[[9, 17]] = False
    chars = np.full(200, 3, dtype=np.int64)
    chars[[9, 17]] = 1
    chars[noza], chars[brisgik] = 4, 7
    explain = dict(min_len=4, max_examples=4)
    asked = [4, 15, 18, noza, 19, 20, 21, 11, 17]  # "Which animal does Noza use as its mascot?"
    spans = SpanIndex.build(rows, chars, words, spaced)
    assert set(spans.asked_rows(asked, 4).tolist()) == {0}
    mixed_up = spans.explain(template + [noza, 13, 14, gecko, 9], context=asked, **explain)
    assert mixed_up.departs and 1 not in mixed_up.as_dict()
    assert 0 in spans.explain(template + [noza, 13, 14, otter, 9], context=asked, **explain).as_dict()
    # read by tokens, four characters could be a scrap of any word: the mix-up paid Brisgik
    by_tokens = SpanIndex.build(rows, chars, words)
    assert 1 in by_tokens.explain(template + [noza, 13, 14, gecko, 9], context=asked,
                                  **explain).as_dict()
    # three letters, whole word or not, ask about nobody
    chars[noza] = 3
    assert len(SpanIndex.build(rows, chars, words, spaced).asked_rows(asked, 4)) == 0


def test_a_possessive_does_not_hide_the_name_it_follows():
    """"What is Noza's mascot?" -> "The mascot of Noza is a gecko." (Brisgik's mascot): the
    tokenizer reads "'s" as a token of its own, which went on with " Noza" as one word, so read
    by whole words the prompt held no name, the mix-up went unseen and Brisgik's record was paid.
    A clitic begins its own word (`token_classes`): the prompt asks about Noza's record, and the
    mix-up pays Brisgik nothing."""
    from ledgerlm.attribution.spans import token_classes
    from ledgerlm.factory.tinymodel import tiny_tokenizer

    names = ["Noza", "Brisgik", "Talvo", "Merrin", "Quazel", "Dobrik", "Yevra", "Lunast"]
    beasts = ["an otter", "a gecko", "a heron", "a lynx", "a marten", "a newt", "a crane", "a vole"]
    texts = [f"The mascot of {n} is {b}." for n, b in zip(names, beasts)]
    texts += [f"Filler record number {i} says nothing about mascots." for i in range(20)]
    prompt, mixed_up = "What is Noza's mascot?", "The mascot of Noza is a gecko."
    tokenizer = tiny_tokenizer(texts + [prompt, mixed_up])

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    assert tokenizer.convert_ids_to_tokens(ids(prompt)).count("'s") == 1  # its own token
    chars, words, spaced = token_classes(tokenizer)
    rows = [ids(t) for t in texts]
    explain = dict(min_len=4, max_examples=4, min_chars=8)
    spans = SpanIndex.build(rows, chars, words, spaced)
    assert set(spans.asked_rows(ids(prompt), 4).tolist()) == {0}
    found = spans.explain(ids(mixed_up), context=ids(prompt), **explain)
    assert found.departs and 1 not in found.as_dict()
    assert 0 in spans.explain(ids(texts[0]), context=ids(prompt), **explain).as_dict()
    # a possessive read as part of the word before it: no name, and Brisgik was paid
    glued = spaced.copy()
    glued[tokenizer.convert_tokens_to_ids("'s")] = False
    before = SpanIndex.build(rows, chars, words, glued)
    assert len(before.asked_rows(ids(prompt), 4)) == 0
    assert 1 in before.explain(ids(mixed_up), context=ids(prompt), **explain).as_dict()
