"""A Datanet's data pool (and its share allocation) weighs each accepted record by its value relative to the batch
it was valued in: a contributor whose lone record went unvalued shares as an average record, and a record valued by
KNN-Shapley in a large batch is not worth a fraction of one valued by Data-OOB in a small one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ledgerlm.datanets import DatanetSpec
from ledgerlm.economy.pools import VALUE_SCALE, valuation_weights
from ledgerlm.store.schema import contributions, gate_reports
from ledgerlm.validation.valuation import relative_values

from ..datanets.conftest import QA_SCHEMA, write_jsonl

FACTS = [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"), ("fern", "olive"),
         ("sand", "amber"), ("kelp", "brown"), ("wave", "teal")]


def _rows(items):
    return [{"question": f"What colour is the {t}?", "answer": f"The {t} is {c}."} for t, c in items]


def test_a_lone_unvalued_record_shares_the_data_pool_as_an_average_record(client, alice, bob, carol, tmp_path):
    node = client.http.app.state.node
    client.create_datanet(DatanetSpec(name="colours", schema=QA_SCHEMA), alice)
    client.contribute("colours", [write_jsonl(tmp_path / "bob.jsonl", _rows(FACTS[:1]))], bob)
    assert node.validation.run_gates("colours")["valuation"] is None  # one record, nothing accepted to value it by
    client.contribute("colours", [write_jsonl(tmp_path / "carol.jsonl", _rows(FACTS[1:5]))], carol)
    assert node.validation.run_gates("colours")["valuation"]["method"] == "data_oob"
    client.review_many("colours", [c.id for c in client.contributions("colours", state="pending")], alice,
                       accept=True)
    client.publish("colours", alice)

    with node.db.connect() as conn:
        weights = valuation_weights(conn, "colours", 1)
        stored = dict(conn.execute(select(contributions.c.contributor, gate_reports.c.value).join(
            gate_reports, gate_reports.c.contribution_id == contributions.c.id)
            .where(contributions.c.contributor == carol.address)).all())
    assert weights[bob.address] == VALUE_SCALE  # as an average record, not nothing
    assert stored and weights[carol.address] > 0

    # once five records are accepted, a lone upload is valued against them (KNN-Shapley), and weighs as its
    # batch's only record: 1 when it helps at all
    client.contribute("colours", [write_jsonl(tmp_path / "erin.jsonl", _rows(FACTS[5:6]))], bob)
    gated = node.validation.run_gates("colours")
    assert gated["valuation"]["method"] == "knn_shapley"
    with node.db.connect() as conn:
        lone = conn.execute(select(gate_reports.c.value).order_by(gate_reports.c.contribution_id.desc())).scalar()
    assert lone["method"] == "knn_shapley" and lone["relative"] in (0.0, 1.0)


@pytest.mark.parametrize("values, expected", [
    ({1: 0.5, 2: 0.25, 3: 0.0}, {1: 2.0, 2: 1.0, 3: 0.0}),        # Data-OOB-like accuracies
    ({1: 0.05, 2: 0.025, 3: -0.01}, {1: 2.0, 2: 1.0, 3: 0.0}),    # KNN-Shapley-like: the same records, 1/10 scale
    ({1: -0.2, 2: 0.0}, {1: 0.0, 2: 0.0}),                        # nothing useful
    ({1: 0.3}, {1: 1.0}),
])
def test_relative_values_compare_batches_valued_on_different_scales(values, expected):
    assert relative_values(values) == expected


def test_values_stored_before_they_were_relative_are_made_relative_within_their_gate_run(client, alice, bob, carol,
                                                                                          tmp_path):
    """A node's older reports hold raw values only: KNN-Shapley's (about 1/size of their batch) beside Data-OOB's
    accuracies would leave the first batch's contributors a sliver of the pool after the upgrade."""
    from sqlalchemy import update

    node = client.http.app.state.node
    client.create_datanet(DatanetSpec(name="colours", schema=QA_SCHEMA), alice)
    client.contribute("colours", [write_jsonl(tmp_path / "bob.jsonl", _rows(FACTS[:2]))], bob)
    client.contribute("colours", [write_jsonl(tmp_path / "carol.jsonl", _rows(FACTS[2:4]))], carol)
    node.validation.run_gates("colours")
    client.review_many("colours", [c.id for c in client.contributions("colours", state="pending")], alice,
                       accept=True)
    with node.db.begin() as conn:
        for c in client.contributions("colours"):
            older = (0.01, 1) if c.contributor == bob.address else (0.5, 2)  # (raw value, its gate run's time)
            conn.execute(update(gate_reports).where(gate_reports.c.contribution_id == c.id)
                         .values(value={"method": "legacy", "value": older[0]}, created_at=older[1]))
    with node.db.connect() as conn:
        assert valuation_weights(conn, "colours") == {bob.address: 2 * VALUE_SCALE, carol.address: 2 * VALUE_SCALE}
