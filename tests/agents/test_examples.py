"""The three example agents end to end on the tiny model: a contributor, a validator with stake, a buyer."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledgerlm.agents import AgentWallet, PolicyRefusal
from ledgerlm.datanets import DatanetSpec

from ..datanets.conftest import QA_SCHEMA

EXAMPLES = Path(__file__).parents[2] / "examples" / "agents"
UNIT = 10**18


@pytest.fixture(scope="module")
def examples():
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield {name: importlib.import_module(name) for name in ("buyer", "contributor", "validator")}
    finally:
        sys.path.remove(str(EXAMPLES))


def _wallet(world, name: str, **kw) -> AgentWallet:
    world.create(name, **kw)
    return AgentWallet(world.client, world.registry, name, world.account(name))


def test_contributor_then_validator_agents_carry_documents_through_a_round(world, examples, tmp_path):
    client, owner = world.client, world.owner
    client.create_datanet(DatanetSpec(name="agent-facts", schema=QA_SCHEMA), owner)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "reef.txt").write_text("question: What colour is the reef?\nanswer: The reef is copper.\n\n"
                                   "question: What colour is the gull?\nanswer: The gull is grey.\n")
    (docs / "notes.md").write_text("just a note with no answer\n\n"
                                   "question: Where is the kelp?\nanswer: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\n")
    scribe = _wallet(world, "scribe", allow_datanets=["agent-facts"])
    sent = examples["contributor"].contribute_folder(scribe, "agent-facts", docs)
    assert sent["submitted"] == 3 and [(b["file"], b["paragraph"]) for b in sent["rejected"]] == [("notes.md", 0)]
    stored = client.contributions("agent-facts", payload=True)
    assert {c.contributor for c in stored} == {scribe.account.address} and len(stored) == 3

    checker = _wallet(world, "checker", stake=5 * UNIT)
    opened = client.validation.open_round(owner, "agent-facts")
    assigned = {int(c) for c, vs in opened["assignments"].items() if checker.account.address in vs}
    assert assigned  # the only staked validator is the agent
    voted = examples["validator"].validate_rounds(checker)["rounds"][str(opened["id"])]
    assert {int(c) for c in voted} == assigned  # the agent scored exactly what it was assigned
    junk = next(c.id for c in stored if "kkkk" in str(c.payload))
    while int(time.time()) <= opened["reveal_deadline"]:
        time.sleep(0.2)
    client.validation.tally(owner, opened["id"])
    states = {c.id: c.state for c in client.contributions("agent-facts")}
    # the junk answer never reaches a vote (the gates reject it) or is voted down; the two facts pass
    assert states[junk] == "rejected" and voted.get(str(junk), examples["validator"].BAD) == examples["validator"].BAD
    assert sorted(s for i, s in states.items() if i != junk) == ["accepted", "accepted"]
    revealed = client.validation.round(opened["id"])
    assert checker.account.address in str(revealed)  # its own signed commit and reveal are on the round
    assert [e.field for e in scribe.audit.entries() if not e.ok] == []


def test_validator_scores_flagged_and_degenerate_data_low(examples):
    score, good, bad = examples["validator"].score, examples["validator"].GOOD, examples["validator"].BAD
    assert score({"flags": [{"gate": "junk"}], "payload": {"answer": "fine text"}}) == bad
    assert score({"flags": [], "payload": {"question": "Where?", "answer": "kkkkkkkkkkkkkkkkkkkkkk"}}) == bad
    assert score({"flags": [], "payload": {"question": "Where is the kelp?", "answer": "In the bay."}}) == good


def test_validator_judges_a_record_with_a_served_model_combined_with_the_gates(world, examples):
    v = examples["validator"]
    question = "What colour is the reef?"
    assert v.agreement("The reef is copper.", "The reef is copper.", question) == 1.0
    assert v.agreement("The reef is copper.", "The reef is blue.", question) == 0.0  # same words, other claim
    assert v.judged_score(v.GOOD, 1.0, 0.9) == v.GOOD and v.judged_score(v.GOOD, 0.0, 0.9) < 25
    assert v.judged_score(v.GOOD, 0.0, 0.0) == v.GOOD  # an untrusted judge moves nothing

    judge_agent = _wallet(world, "judge", allow_models=["tiny"])
    # as the validation queue sends it: the record's JSON text
    record = {"flags": [], "payload": json.dumps({"question": question, "answer": "The reef is copper."})}
    scored = v.score(record, v.Judge("tiny", trust=1.0), judge_agent)
    asked = [e for e in judge_agent.audit.entries() if e.tool == "call_model"]
    assert len(asked) == 1 and asked[0].ok and asked[0].cost > 0  # one paid call, under the agent's policy
    said = asked[0].result["answer"]
    assert scored == v.judged_score(v.GOOD, v.agreement(said, "The reef is copper.", question), 1.0)
    assert v.score({**record, "flags": [{"gate": "junk"}]}, v.Judge("tiny", 1.0), judge_agent) == v.BAD
    assert len([e for e in judge_agent.audit.entries() if e.tool == "call_model"]) == 1  # flagged: no call
    assert v.pick_judge(judge_agent) is None  # the random base model has no measured quality to trust


def test_buyer_ranks_by_quality_per_price_and_pays_within_budget(world, examples):
    rank = examples["buyer"].rank
    catalog = [{"id": "cheap-bad", "price_per_1k": "10", "metrics": {"eval": {"after": {"token_f1": 0.1}}}},
               {"id": "dear-good", "price_per_1k": "100", "metrics": {"eval": {"after": {"token_f1": 0.9}}}},
               {"id": "mid", "price_per_1k": "20", "metrics": {"eval": {"after": {"token_f1": 0.5}}}},
               {"id": "unmeasured", "price_per_1k": "1", "metrics": {}}]
    assert [m["id"] for m in rank(catalog)] == ["mid", "cheap-bad", "dear-good", "unmeasured"]

    shopper = _wallet(world, "shopper")
    bought = examples["buyer"].buy_answer(shopper, "What colour is the reef?", max_tokens=4)
    assert bought["model"] == "tiny" and int(bought["fee"]) > 0
    assert [e.cost for e in shopper.audit.entries() if e.tool == "call_model"] == [int(bought["fee"])]

    world.pause("shopper")
    with pytest.raises(PolicyRefusal, match="paused"):  # the kill switch stops it before it even looks
        examples["buyer"].buy_answer(shopper, "again?", max_tokens=4)


def test_each_example_is_one_command():
    for name in ("buyer", "contributor", "validator"):
        shown = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True,
                               text=True, timeout=120)
        assert shown.returncode == 0 and "--agent" in shown.stdout, shown.stderr
