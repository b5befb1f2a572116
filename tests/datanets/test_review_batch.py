"""The owner reviews many contributions under one signature: all of them change, or none."""

import pytest
from sqlalchemy import func, select

from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import AuthError, ConflictError, NotFoundError
from ledgerlm.identity import sign_action
from ledgerlm.node import Node
from ledgerlm.store.schema import signed_actions

from .conftest import QA_SCHEMA, write_jsonl


def _upload(client, who, tmp_path, n, name="qa"):
    records = [{"question": f"{name} q{i}?", "answer": f"a{i}"} for i in range(n)]
    receipt = client.contribute(name, [write_jsonl(tmp_path / f"{name}-{who.address}.jsonl", records)], who)
    return list(range(receipt.first_contribution_id, receipt.first_contribution_id + receipt.contribution_count))


def _states(client, name="qa"):
    return {c.id: c.state for c in client.contributions(name)}


def _review_actions(home) -> int:
    node = Node.open(home)
    try:
        with node.db.connect() as conn:
            return conn.execute(select(func.count()).select_from(signed_actions)
                                .where(signed_actions.c.action == "ReviewContributions")).scalar()
    finally:
        node.close()


def test_one_signature_accepts_a_batch_and_each_contribution_records_it(client, qa, alice, bob, home, tmp_path):
    ids = _upload(client, bob, tmp_path, 6)
    batch = client.review_many("qa", ids[:4], alice, accept=True, reason="checked")
    assert batch.state == "accepted" and batch.contribution_ids == ids[:4]
    assert _states(client) == {**dict.fromkeys(ids[:4], "accepted"), **dict.fromkeys(ids[4:], "pending")}
    assert _review_actions(home) == 1
    events = [client.contribution(i).events[-1] for i in ids[:4]]
    assert {e["action_id"] for e in events} != {None} and len({e["action_id"] for e in events}) == 1
    assert {e["reason"] for e in events} == {"checked"}

    client.review_many("qa", ids[4:], alice, accept=False)
    assert client.contribution(ids[5]).reason == "rejected by owner"


def test_a_batch_with_one_settled_contribution_changes_nothing(client, qa, alice, bob, tmp_path):
    ids = _upload(client, bob, tmp_path, 5)
    client.review(ids[2], alice, accept=False)
    with pytest.raises(ConflictError, match=f"contribution {ids[2]} is no longer pending"):
        client.review_many("qa", ids, alice, accept=True)
    assert list(_states(client).values()).count("pending") == 4


def test_ids_of_another_datanet_are_refused(client, qa, alice, bob, tmp_path):
    client.create_datanet(DatanetSpec(name="other", schema=QA_SCHEMA), alice)
    ours, theirs = _upload(client, bob, tmp_path, 2), _upload(client, bob, tmp_path, 2, name="other")
    with pytest.raises(NotFoundError, match=f"contributions {theirs[0]}, {theirs[1]} are not in Datanet 'qa'"):
        client.review_many("qa", ours + theirs, alice, accept=True)
    assert set(_states(client).values()) == {"pending"}


def test_only_the_owner_signs_and_a_signature_counts_once(client, http, qa, alice, bob, tmp_path):
    ids = _upload(client, bob, tmp_path, 3)
    with pytest.raises(AuthError, match="only the owner"):
        client.review_many("qa", ids, bob, accept=True)
    action = sign_action(alice, "ReviewContributions", {"datanet": "qa", "contributionIds": ids[:1], "accept": True,
                                                        "reason": ""}, domain=client.domain).model_dump()
    assert http.post("/datanets/qa/reviews", json={"action": action}).status_code == 200
    replay = http.post("/datanets/qa/reviews", json={"action": action})
    assert replay.status_code == 409 and "no longer pending" in replay.json()["error"]["message"]
    wrong_place = http.post("/datanets/other/reviews", json={"action": action})
    assert wrong_place.status_code == 401 and wrong_place.json()["error"]["field"] == "datanet"


def test_empty_and_repeated_ids_are_refused(client, qa, alice, bob, tmp_path):
    ids = _upload(client, bob, tmp_path, 2)
    with pytest.raises(Exception, match="contributionIds is empty"):
        client.review_many("qa", [], alice, accept=True)
    with pytest.raises(Exception, match="more than once"):
        client.review_many("qa", [ids[0], ids[0]], alice, accept=True)


def test_an_id_past_any_contribution_s_is_refused_naming_the_field(client, qa, alice):
    with pytest.raises(Exception, match="past any contribution") as refused:
        client.review_many("qa", [2**63], alice, accept=True)
    assert refused.value.field == "contributionIds"
