"""The held-out attribution Datanet: every contributor gets the same number of facts, every query names its record, every contradicting answer gives another value."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from attribution_heldout import heldout_datanet, names_value  # noqa: E402


def test_facts_are_dealt_evenly_and_each_query_names_its_record_and_owner():
    records, queries, contradicted, facts = heldout_datanet(8, 12)
    assert sorted(Counter(r["_contributor"] for r in records).values()) == [12] * 8
    assert len({r["_content_hash"] for r in records}) == 96
    for q, c, f in zip(queries, contradicted, facts):
        record = records[q.records[0]]
        assert q.contributor == record["_contributor"] == c.contributor
        assert q.answer == record["answer"] and names_value(q.answer, f.value)
        assert q.prompt != record["question"]          # asked in words the records never use
        assert not names_value(c.answer, f.value) and c.answer != q.answer


def test_a_value_is_named_as_a_whole_word_only():
    assert names_value("Kramal plays the flute.", "flute")
    assert not names_value("Kramal plays the flute.", "lute")


def test_more_halves_continue_the_held_out_runs_stream():
    import numpy as np
    from attribution_heldout_retrains import half_masks

    rng = np.random.default_rng(0)  # the held-out run's own loop (attribution_heldout.py)
    first = []
    for _ in range(3):
        keep = np.zeros(96, dtype=bool)
        keep[rng.choice(96, 48, replace=False)] = True
        first.append(keep)
    more = half_masks(0, 96, 5)
    assert np.array_equal(more[:3], np.stack(first))
    assert (more.sum(axis=1) == 48).all() and len({m.tobytes() for m in more}) == 5
