"""Validator rounds on a real node and chain: gates reject junk and personal data, staked
validators commit and reveal, stake-weighted consensus decides, outliers are clipped, persistent
outliers are slashed on chain, and every decision is explained."""

import pytest

from ledgerlm.chain import StakeRole
from ledgerlm.client import NodeClient
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import LedgerError

from ..datanets.conftest import QA_SCHEMA, write_jsonl

UNIT = 10**18
CLEAN = [{"question": f"Which harbour does ferry {n} serve?", "answer": f"Ferry {n} serves the {h} harbour."}
         for n, h in enumerate(["north", "south", "old", "east", "river", "island"])]
JUNK = {"question": "asdf qwer zxcv?", "answer": "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"}
PII = {"question": "Who runs the ferry office?", "answer": "Call Jo at jo.smith@example.com or card 4111 1111 1111 1111."}


class Clock:
    def __init__(self):
        import time

        self.now = int(time.time())

    def __call__(self):
        return self.now


@pytest.fixture
def setup(client, alice, bob, tmp_path):
    from eth_account import Account

    validators = [Account.from_key(bytes([40 + i]) * 32) for i in range(3)]
    for v, stake in zip(validators, (300, 200, 100)):
        client.chain.faucet(v.address, eth_wei=UNIT, tokens=stake * UNIT)
        client.chain.stake(v, "validator", stake * UNIT)
    client.chain.faucet(bob.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.stake(bob, "contributor_bond", 10 * UNIT)
    client.create_datanet(DatanetSpec(name="ferries", schema=QA_SCHEMA), alice)
    node = client.http.app.state.node
    clock = Clock()
    node.validation.clock = clock
    return validators, node, clock


def _round(client, alice, validators, clock, scores, *, before_tally=None):
    """Open a round, commit `scores[i](cid)` for validator i, reveal, (call `before_tally`), tally; returns the
    opened round and the tally."""
    opened = client.validation.open_round(alice, "ferries")
    rid = opened["id"]
    salts = {}
    votes = {}
    for i, v in enumerate(validators):
        mine = {int(c): scores[i](int(c)) for c, vs in opened["assignments"].items() if v.address in vs}
        votes[v.address] = mine
        _, salts[v.address] = client.validation.commit(v, rid, mine)
    clock.now = opened["commit_deadline"] + 1
    for v in validators:
        client.validation.reveal(v, rid, votes[v.address], salts[v.address])
    if before_tally is not None:
        before_tally()
    clock.now = opened["reveal_deadline"] + 1
    return opened, client.validation.tally(alice, rid)


def _outlier_rounds(client, alice, bob, validators, clock, tmp_path, rounds: int) -> list[dict]:
    """`rounds` rounds of one record of bob's each, the third validator scoring against the other two."""
    honest, outlier = (lambda cid: 90), (lambda cid: 0)
    tallies = []
    for r in range(rounds):
        client.contribute("ferries", [write_jsonl(tmp_path / f"r{r}.jsonl", [CLEAN[r]])], bob)
        tallies.append(_round(client, alice, validators, clock, [honest, honest, outlier])[1])
    return tallies


def test_gates_then_consensus_with_an_outlier(client, alice, bob, setup, tmp_path):
    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:4] + [JUNK, PII])], bob)
    ids = [c.id for c in client.contributions("ferries")]
    good, bad = ids[:3], ids[3]  # honest validators like the first three, dislike the fourth
    honest = lambda cid: 90 if cid in good else 10  # noqa: E731
    outlier = lambda cid: 0 if cid in good else 100  # noqa: E731
    opened, closed = _round(client, alice, validators, clock, [honest, honest, outlier])

    gated = opened["gated"]
    assert (gated["pass"], gated["flag"], gated["reject"]) == (4, 0, 2)
    # What passed the gates was also valued (Data-OOB here: nothing is accepted yet to compare with).
    assert gated["valuation"]["method"] == "data_oob"
    assert set(gated["valuation"]["by_contributor"]) == {bob.address}
    rejected = {c.id: c for c in client.contributions("ferries", state="rejected", events=True)}
    assert ids[4] in rejected and "junk" in rejected[ids[4]].reason
    assert ids[5] in rejected and "personal_data" in rejected[ids[5]].reason
    assert rejected[ids[5]].events[-1]["details"]["findings"]  # the evidence behind the decision

    assert sorted(c.id for c in client.contributions("ferries", state="accepted")) == good
    assert bad in rejected
    assert rejected[bad].events[-1]["actor"] is None  # decided by the validators, not by who sent the tally
    votes = rejected[bad].events[-1]["details"]["votes"]
    assert votes[validators[2].address] == 100 and rejected[bad].events[-1]["details"]["consensus"] == 10
    outcome = closed["tally"]["validators"]
    assert outcome[validators[2].address]["clipped"] == 4 and outcome[validators[2].address]["agreement_points"] == 0
    assert outcome[validators[0].address]["clipped"] == 0
    rep = client.validation.reputation(validators[2].address)
    assert rep["validator_bps"] < client.validation.reputation(validators[0].address)["validator_bps"]
    # The history says which round moved it and ends where the reputation stands now.
    assert [h["round_id"] for h in rep["history"]["validator"]] == [opened["id"]]
    assert rep["history"]["validator"][-1]["bps"] == rep["validator_bps"]
    contributor = client.validation.reputation(bob.address)["history"]["contributor"]
    assert [h["round_id"] for h in contributor] == [None, None] + [opened["id"]] * 4  # gates, then the round
    # Rejected data cost the contributor part of the bond: at least 0.5 LGR per rejection (three here),
    # but the Staking contract takes at most 10% of a bond for one round's recorded outcome.
    assert client.chain.account(bob.address)["stake"]["contributor_bond"] == 10 * UNIT - UNIT
    # No contribution is lost: everything ended accepted or rejected with reasons.
    assert all(c.state in ("accepted", "rejected") and c.reason for c in client.contributions("ferries"))
    # the dashboard reads the one round that scored a contribution, not every round of the Datanet (each whole)
    node.validation.rounds = lambda *a, **k: pytest.fail("every round of the Datanet read for one contribution")
    page = client.http.get(f"/web/contributions/{bad}").text
    assert f'/web/validation/rounds/{opened["id"]}">' in page and "Consensus score 10" in page
    del node.validation.rounds


def test_a_crash_right_after_the_tally_keeps_its_reputations_and_slashes(client, alice, bob, setup, tmp_path,
                                                                           monkeypatch):
    """The decisions, the reputations they move and what the slash plan is made from are one write: a node that
    stopped before planning the slashes plans them at its next start from the round's own record, so the rejected
    contributions still cost their contributor's bond."""
    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:4])], bob)
    ids = [c.id for c in client.contributions("ferries")]
    reject_all = lambda cid: 0  # noqa: E731

    def crash(*_args, **_kwargs):
        raise RuntimeError("the node stopped here")

    monkeypatch.setattr(node.validation, "_plan_slashes", crash)
    with pytest.raises(Exception, match="stopped here|500"):
        _round(client, alice, validators, clock, [reject_all] * 3)
    monkeypatch.undo()
    assert sorted(c.id for c in client.contributions("ferries", state="rejected")) == ids
    history = client.validation.reputation(bob.address)["history"]["contributor"]
    assert len(history) == len(ids)  # the round's outcomes were kept with its decisions
    assert all(client.validation.reputation(v.address)["history"]["validator"] for v in validators)
    bond = client.chain.account(bob.address)["stake"]["contributor_bond"]
    assert node.validation.execute_slashes() == 1  # the next start plans and carries out the slash
    assert client.chain.account(bob.address)["stake"]["contributor_bond"] < bond == 10 * UNIT
    assert node.validation.execute_slashes() == 0  # once


def test_commit_reveal_rules(client, alice, bob, setup, tmp_path):
    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:2])], bob)
    opened = client.validation.open_round(alice, "ferries")
    rid = opened["id"]
    v = validators[0]
    mine = {int(c): 80 for c, vs in opened["assignments"].items() if v.address in vs}
    with pytest.raises(LedgerError, match="reveal phase .* opens after"):
        client.validation.reveal(v, rid, mine, b"\x01" * 32)
    _, salt = client.validation.commit(v, rid, mine)
    clock.now = opened["commit_deadline"] + 1
    with pytest.raises(LedgerError, match="commit phase .* closed"):
        client.validation.commit(validators[1], rid, mine)
    with pytest.raises(LedgerError, match="do not hash to"):
        client.validation.reveal(v, rid, {c: 20 for c in mine}, salt)  # not what was committed
    client.validation.reveal(v, rid, mine, salt)
    clock.now = opened["reveal_deadline"] + 1
    with pytest.raises(LedgerError, match="closed"):
        client.validation.reveal(validators[1], rid, mine, salt)
    # a TallyRound signed for another round closes nothing here, like a commit or reveal for another round
    from ledgerlm.identity import sign_action

    other = sign_action(alice, "TallyRound", {"roundId": rid + 998}, domain=node.domain).model_dump()
    replayed = client.http.post(f"/validation/rounds/{rid}/tally", json={"action": other})
    assert replayed.status_code == 401 and replayed.json()["error"]["field"] == "roundId", replayed.text
    assert client.validation.round(rid)["state"] == "open"
    closed = client.validation.tally(alice, rid)
    # One validator of three revealed: below the 50% stake quorum? 300 of 600 is exactly half.
    assert closed["state"] == "tallied"
    with pytest.raises(LedgerError, match="already tallied"):
        client.validation.tally(alice, rid)


def test_persistent_outlier_is_slashed_on_chain(client, alice, bob, setup, tmp_path):
    validators, node, clock = setup
    before = client.chain.account(validators[2].address)["stake"]["validator"]
    slashed = [s for t in _outlier_rounds(client, alice, bob, validators, clock, tmp_path, 3)
               for s in t["tally"]["slashed"]]
    assert [s["account"] for s in slashed] == [validators[2].address]
    after = client.chain.account(validators[2].address)["stake"]["validator"]
    assert after == before - before // 10  # 10% of stake, held for its dispute time, then the validators' pool
    assert node.contracts.staking.slashes_held() == before // 10 and node.contracts.staking.reward_pool() == 0
    assert client.chain.account(validators[0].address)["stake"]["validator"] == 300 * UNIT


def test_asking_to_unstake_before_the_tally_does_not_dodge_a_slash(client, alice, bob, setup, tmp_path):
    """Stake cooling down to leave is slashed too (Staking reaches pending stake): a persistent outlier that asks
    to unstake everything before its third round is tallied, and a contributor that unstakes its bond before its
    data is rejected, are slashed as if they had stayed. Before, both slashes were sized on the active stake: 0."""
    validators, node, clock = setup
    _outlier_rounds(client, alice, bob, validators, clock, tmp_path, 2)
    client.contribute("ferries", [write_jsonl(tmp_path / "r2.jsonl", [CLEAN[2]])], bob)
    _, closed = _round(client, alice, validators, clock, [lambda cid: 90, lambda cid: 90, lambda cid: 0],
                       before_tally=lambda: client.chain.request_unstake(validators[2], "validator", 100 * UNIT))
    assert [(s["account"], s["amount"]) for s in closed["tally"]["slashed"]] == [(validators[2].address,
                                                                                 str(10 * UNIT))]
    assert node.contracts.staking.pending_of(validators[2].address, StakeRole.VALIDATOR).amount == 90 * UNIT

    client.chain.request_unstake(bob, "contributor_bond", 10 * UNIT)
    client.contribute("ferries", [write_jsonl(tmp_path / "r3.jsonl", [CLEAN[3]])], bob)
    _, closed = _round(client, alice, validators[:2], clock, [lambda cid: 0] * 2)  # the third has left
    bond = [s for s in closed["tally"]["slashed"] if s["account"] == bob.address]
    assert len(bond) == 1 and int(bond[0]["amount"]) > 0
    assert node.contracts.staking.pending_of(bob.address, StakeRole.CONTRIBUTOR_BOND).amount < 10 * UNIT


def test_withdrawing_a_contribution_once_the_reveals_go_against_it_still_costs_its_bond(client, alice, bob, setup,
                                                                                       tmp_path):
    """The contribution stays withdrawn, but the rejection counts as it would have: its contributor's reputation
    and bond, or withdrawing before the tally would dodge both and the data could be sent again for another try."""
    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "w.jsonl", CLEAN[:4])], bob)
    mine = [c.id for c in client.contributions("ferries", state="pending")]

    def withdraw_all():
        for cid in mine:
            client.withdraw(cid, bob)

    _, closed = _round(client, alice, validators, clock, [lambda cid: 0] * 3, before_tally=withdraw_all)
    assert [c.state for c in client.contributions("ferries")] == ["withdrawn"] * 4
    bond = [s for s in closed["tally"]["slashed"] if s["account"] == bob.address]
    assert len(bond) == 1 and int(bond[0]["amount"]) > 0
    assert node.validation.reputation(bob.address, "contributor") < 5000


def test_rounds_tallied_out_of_order_never_slash_the_same_misconduct_twice(client, alice, bob, setup, tmp_path):
    """Rounds 3 and 4 open at once; round 4 is tallied first and slashes the outlier for rounds 1, 2 and 4.
    Round 3's tally, even after the slash window, must not slash rounds 1 and 2 again."""
    validators, node, clock = setup
    honest = lambda cid: 90  # noqa: E731
    outlier = lambda cid: 0  # noqa: E731
    _outlier_rounds(client, alice, bob, validators, clock, tmp_path, 2)
    opened = []
    for r in (2, 3):
        client.contribute("ferries", [write_jsonl(tmp_path / f"r{r}.jsonl", [CLEAN[r]])], bob)
        opened.append(client.validation.open_round(alice, "ferries"))
    salts = {}
    for o in opened:
        for v, score in zip(validators, (honest, honest, outlier), strict=True):
            votes = {int(c): score(int(c)) for c, vs in o["assignments"].items() if v.address in vs}
            salts[(o["id"], v.address)] = (votes, client.validation.commit(v, o["id"], votes)[1])
    clock.now = max(o["commit_deadline"] for o in opened) + 1
    for o in opened:
        for v in validators:
            client.validation.reveal(v, o["id"], *salts[(o["id"], v.address)])
    clock.now = max(o["reveal_deadline"] for o in opened) + 1
    later = client.validation.tally(alice, opened[1]["id"])
    node.chain.advance_time(node.contracts.staking.contract.functions.slashWindowSeconds().call() + 10)
    earlier = client.validation.tally(alice, opened[0]["id"])
    slashed = [s["account"] for s in later["tally"]["slashed"] + earlier["tally"]["slashed"]]
    assert slashed == [validators[2].address]


def test_gate_policy_is_the_owners(client, alice, bob, setup):
    with pytest.raises(LedgerError, match="only the owner"):
        client.validation.set_policy(bob, "ferries", {"gates": {"junk": "flag"}})
    with pytest.raises(LedgerError, match="unknown gate .nonsense."):
        client.validation.set_policy(alice, "ferries", {"gates": {"nonsense": "flag"}})
    policy = client.validation.set_policy(alice, "ferries", {"gates": {"junk": "flag"}})
    assert client.validation.policy("ferries") == policy


def test_gates_the_owner_tightened_after_an_upload_reject_it_without_costing_its_contributor(
        client, alice, bob, carol, setup, tmp_path):
    """The owner's gates are the owner's, but a policy set after an upload judges data its contributor could not
    have shaped to it: those rejections stand, and cost neither bond nor reputation. Data uploaded after the
    policy was set is judged, and costs, as ever."""
    validators, node, clock = setup
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.stake(carol, "contributor_bond", 10 * UNIT)
    client.contribute("ferries", [write_jsonl(tmp_path / "bob.jsonl", CLEAN[:3])], bob)
    client.validation.set_policy(alice, "ferries", {"gates": {"junk": {"min_chars": 10000}}})
    client.contribute("ferries", [write_jsonl(tmp_path / "carol.jsonl", CLEAN[3:5])], carol)
    with pytest.raises(LedgerError):
        client.validation.open_round(alice, "ferries")  # every record was rejected: nothing left to score
    assert {c.state for c in client.contributions("ferries")} == {"rejected"}
    client.validation.set_policy(alice, "ferries", {"gates": {}})
    client.contribute("ferries", [write_jsonl(tmp_path / "alice.jsonl", [CLEAN[5]])], alice)
    _, closed = _round(client, alice, validators, clock, [lambda cid: 90] * 3)

    slashed = {s["account"] for s in closed["tally"]["slashed"]}
    assert bob.address not in slashed and carol.address in slashed
    assert client.chain.account(bob.address)["stake"]["contributor_bond"] == 10 * UNIT
    assert client.validation.reputation(bob.address)["contributor_bps"] == 5000
    assert client.validation.reputation(carol.address)["contributor_bps"] < 5000


def test_a_tidier_copy_of_a_pending_record_never_takes_its_place(client, alice, bob, carol, setup, tmp_path):
    """A public Datanet's pending records are readable: carol uploads a tidier copy of bob's record before any
    round. The earlier upload stays and the copy is rejected (before, the better-presented copy won, bob's
    original was rejected as its duplicate and his bond slashed)."""
    validators, node, clock = setup
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.stake(carol, "contributor_bond", 10 * UNIT)
    original = {"question": "which harbour does ferry 7 serve",
                "answer": "ferry 7 serves the west harbour, near the old fish market and the customs house"}
    tidy = {"question": "Which harbour does ferry 7 serve?",
            "answer": "Ferry 7 serves the west harbour, near the old fish market and the customs house."}
    client.contribute("ferries", [write_jsonl(tmp_path / "bob.jsonl", [original])], bob)
    client.contribute("ferries", [write_jsonl(tmp_path / "carol.jsonl", [tidy])], carol)
    _, closed = _round(client, alice, validators, clock, [lambda cid: 90] * 3)
    states = {c.contributor: c.state for c in client.contributions("ferries")}
    assert states == {bob.address: "accepted", carol.address: "rejected"}
    assert {s["account"] for s in closed["tally"]["slashed"]} == {carol.address}


TOPICS = {
    "sports": "match goal striker league coach referee stadium season penalty trophy".split(),
    "cooking": "recipe oven garlic sauce dough simmer basil butter skillet pastry".split(),
    "finance": "bond equity dividend inflation mortgage portfolio interest budget audit loan".split(),
}


def test_the_schema_names_the_label_field_and_flipped_labels_are_flagged_end_to_end(client, alice, bob, setup,
                                                                                     tmp_path):
    import random

    rng = random.Random(5)
    schema = {"type": "object", "x-label-field": "topic", "required": ["text", "topic"],
              "properties": {"text": {"type": "string"}, "topic": {"type": "string"}}}
    client.create_datanet(DatanetSpec(name="topics", schema=schema), alice)
    names = list(TOPICS)
    records, flipped = [], set()
    for i in range(36):
        topic = names[i % 3]
        text = "The " + " ".join(rng.choice(TOPICS[topic]) for _ in range(12)) + f" (note {i})."
        if i in (4, 17, 29):
            flipped.add(i)
            topic = names[(i + 1) % 3]
        records.append({"text": text, "topic": topic})
    client.contribute("topics", [write_jsonl(tmp_path / "t.jsonl", records)], bob)
    ids = [c.id for c in client.contributions("topics")]
    opened = client.validation.open_round(alice, "topics")
    assert opened["gated"]["flag"] == len(flipped) and opened["gated"]["reject"] == 0
    flags = {item["contribution_id"]: item["flags"] for v in setup[0] for item in client.validation.queue(v.address)}
    flagged = {cid for cid, fs in flags.items() if any(f["gate"] == "label_noise" for f in fs)}
    assert flagged == {ids[i] for i in flipped}


def test_a_copy_of_a_record_pending_in_an_open_round_is_rejected(client, alice, bob, setup, tmp_path):
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:3])], bob)
    client.validation.open_round(alice, "ferries")
    first = client.contributions("ferries")[0]
    copy = {k: v.upper() for k, v in CLEAN[0].items()}
    client.contribute("ferries", [write_jsonl(tmp_path / "b.jsonl", [copy, CLEAN[4]])], bob)
    opened = client.validation.open_round(alice, "ferries")
    assert (opened["gated"]["pass"], opened["gated"]["reject"]) == (1, 1)
    (rejected,) = client.contributions("ferries", state="rejected")
    assert "near_duplicate" in rejected.reason and f"pending contribution {first.id}" in rejected.reason


def test_a_slash_that_fails_half_way_is_finished_once_and_never_repeated(client, alice, bob, setup, tmp_path,
                                                                        monkeypatch):
    from ledgerlm.chain import ChainError

    validators, node, clock = setup
    honest = lambda cid: 90  # noqa: E731
    outlier = lambda cid: 0  # noqa: E731
    before = client.chain.account(validators[2].address)["stake"]["validator"]
    staking = node.contracts.staking
    real_slash = staking.slash

    def chain_down(*args, **kwargs):
        raise ChainError("the chain went away", field="chain")

    for r in range(3):
        client.contribute("ferries", [write_jsonl(tmp_path / f"r{r}.jsonl", [CLEAN[r]])], bob)
        if r == 2:  # the round that slashes: its outcome is recorded, then the slash itself fails
            monkeypatch.setattr(staking, "slash", chain_down)
            with pytest.raises(LedgerError, match="went away"):
                _round(client, alice, validators, clock, [honest, honest, outlier])
            monkeypatch.setattr(staking, "slash", real_slash)
        else:
            _round(client, alice, validators, clock, [honest, honest, outlier])

    planned = node.validation.round(3).tally["slashed"]
    assert [s["account"] for s in planned] == [validators[2].address] and planned[0]["tx"] is None
    assert node.reconcile()["slashes"] == 1  # the restart finishes the recorded plan...
    assert node.reconcile()["slashes"] == 0  # ...once
    node.validation.execute_slashes(3)
    assert client.chain.account(validators[2].address)["stake"]["validator"] == before - before // 10
    from ledgerlm.node import outcome_id

    # under this node's own outcome id: nodes sharing the contracts each number their rounds from 1
    assert staking.outcome(outcome_id(node.account.address, 3)) == node.validation.round(3).tally["evidence_hash"]


def _private_round(client, alice, bob, member, tmp_path, rows) -> dict:
    """alice's private Datanet `vault` with bob's `rows` and `member` a member, and the round she opens on it."""
    from ledgerlm.client import NodeClient

    client.create_datanet(DatanetSpec(name="vault", schema=QA_SCHEMA, visibility="private"), alice)
    client.add_member("vault", bob.address, alice)
    client.add_member("vault", member.address, alice)
    NodeClient(client.http, reader=bob).contribute("vault", [write_jsonl(tmp_path / "v.jsonl", rows)], bob)
    return client.validation.open_round(alice, "vault")


def test_a_private_datanet_is_scored_only_by_members_and_its_data_needs_their_signature(
        client, alice, bob, setup, tmp_path):
    from ledgerlm.identity import READ_HEADER, sign_read_request

    validators, node, clock = setup
    member, stranger = validators[0], validators[1]
    opened = _private_round(client, alice, bob, member, tmp_path, CLEAN[:2])
    assigned = {v for vs in opened["assignments"].values() for v in vs}
    assert assigned == {member.address}, "only the owner and members may score (and so read) private data"

    http = client.http
    del http.headers["Authorization"]  # from here on nobody presents the operator's credential
    anonymous = http.get(f"/validation/queue/{member.address}").json()
    assert anonymous and all(i["payload"] is None and "withheld" in i for i in anonymous)
    assert "harbour" not in http.get(f"/validation/queue/{member.address}").text
    # the file name and the gates' findings (which quote masked emails, card digits, edited words) are the
    # records' too: once shown to anyone asking
    assert all(i["source"] is None and i["flags"] == [] for i in anonymous)
    assert "v.jsonl" not in http.get(f"/web/validation?address={member.address}").text
    forged = {READ_HEADER: sign_read_request(stranger, node.domain, node=node.account.address)}
    assert all(i["payload"] is None for i in http.get(f"/validation/queue/{member.address}", headers=forged).json())
    signed = {READ_HEADER: sign_read_request(member, node.domain, node=node.account.address)}
    mine = http.get(f"/validation/queue/{member.address}", headers=signed).json()
    assert len(mine) == 2 and all("harbour" in i["payload"] and "v.jsonl" in i["source"] for i in mine)
    # the round itself names the private Datanet, its contributions and validators: the same readers only
    round_id = opened["id"]
    assert http.get(f"/validation/rounds/{round_id}").status_code == 401
    assert http.get(f"/validation/rounds/{round_id}", headers=forged).status_code == 403
    assert http.get(f"/validation/rounds/{round_id}", headers=signed).json()["datanet"] == "vault"
    owner = {READ_HEADER: sign_read_request(alice, node.domain, node=node.account.address)}
    assert http.get(f"/validation/rounds/{round_id}", headers=owner).json()["id"] == round_id
    # the dashboard shows the round page and the rounds list to the same readers
    assert http.get(f"/web/validation/rounds/{round_id}").status_code == 401
    assert f"/web/validation/rounds/{round_id}\"" not in http.get("/web/validation").text
    from ledgerlm.web.access import READ_COOKIE
    http.cookies.set(READ_COOKIE, sign_read_request(member, node.domain, node=node.account.address))
    try:
        assert http.get(f"/web/validation/rounds/{round_id}").status_code == 200
        assert f"/web/validation/rounds/{round_id}\"" in http.get("/web/validation").text
    finally:
        http.cookies.clear()


def test_a_round_refused_for_want_of_staked_validators_changes_nothing(client, alice, bob, tmp_path):
    client.chain.faucet(bob.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.stake(bob, "contributor_bond", 10 * UNIT)
    client.create_datanet(DatanetSpec(name="ferries", schema=QA_SCHEMA), alice)
    client.contribute("ferries", [write_jsonl(tmp_path / "f.jsonl", CLEAN + [JUNK, PII])], bob)
    with pytest.raises(LedgerError, match="no validator has stake") as refused:
        client.validation.open_round(alice, "ferries")
    assert refused.value.status == 409
    # the gates did not run: every contribution still waits, junk and personal data included
    assert [c.state for c in client.contributions("ferries")] == ["pending"] * (len(CLEAN) + 2)


def test_a_replayed_open_round_is_refused_before_the_gates_run(client, alice, bob, setup, tmp_path):
    """The gates reject for good, value and move reputation: a used OpenRound that anyone replays must not run
    them on what was uploaded since."""
    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:2])], bob)
    used = client._sign(alice, "OpenRound", {"datanet": "ferries"})
    assert client.http.post("/datanets/ferries/rounds", json={"action": used}).status_code == 201
    client.contribute("ferries", [write_jsonl(tmp_path / "junk.jsonl", [JUNK])], bob)
    replayed = client.http.post("/datanets/ferries/rounds", json={"action": used})
    assert replayed.status_code == 401 and replayed.json()["error"]["field"] == "nonce"
    junk = [c for c in client.contributions("ferries") if c.id > 2]
    assert [c.state for c in junk] == ["pending"]  # the gates did not run on the junk sent since


def test_a_slash_refused_on_chain_is_a_clear_error_and_the_slashes_before_it_stay_written(
        client, alice, bob, setup, tmp_path, monkeypatch):
    from sqlalchemy import select, update

    from ledgerlm.chain import ChainError
    from ledgerlm.store.schema import validation_rounds

    validators, node, clock = setup
    honest = lambda cid: 90  # noqa: E731
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", [CLEAN[0]])], bob)
    opened, _ = _round(client, alice, validators, clock, [honest, honest, honest])
    staking, first, second = node.contracts.staking, validators[0].address, validators[1].address
    # Another slash spends the second validator's window after the node read what it allowed (a stale read).
    node._slash(10**9, "0x" + "22" * 32, second, int(StakeRole.VALIDATOR), 20 * UNIT)
    monkeypatch.setattr(staking, "slashable", lambda account, role: 10 * UNIT)
    with node.db.begin() as conn:
        tally = conn.execute(select(validation_rounds.c.tally).where(validation_rounds.c.id == opened["id"])).scalar()
        tally["slashed"] = [{"account": a, "role": int(StakeRole.VALIDATOR), "amount": str(10 * UNIT),
                             "reason": "test", "tx": None} for a in (first, second)]
        conn.execute(update(validation_rounds).where(validation_rounds.c.id == opened["id"]).values(tally=tally))

    with pytest.raises(ChainError) as refused:
        node.validation.execute_slashes(opened["id"])

    assert refused.value.error_name == "SlashAboveWindowCap" and refused.value.status == 409
    assert "nothing was taken" in refused.value.message
    written = client.validation.round(opened["id"])["tally"]["slashed"]
    assert written[0]["tx"] and written[0]["taken"] == str(10 * UNIT)  # done before the refusal: kept
    assert written[1]["tx"] is None  # left for reconcile, which takes what the window allows then: nothing
    assert staking.stake_of(second, StakeRole.VALIDATOR) == 180 * UNIT
    monkeypatch.undo()
    assert node.reconcile()["slashes"] == 1
    assert client.validation.round(opened["id"])["tally"]["slashed"][1]["taken"] == "0"
    assert staking.stake_of(first, StakeRole.VALIDATOR) == 290 * UNIT


def test_a_strangers_view_of_a_validators_queue_names_nothing_of_a_private_datanet(
        client, alice, bob, setup, tmp_path):
    from ledgerlm.identity import READ_HEADER, sign_read_request

    validators, node, clock = setup
    member, stranger = validators[0], validators[1]
    opened = _private_round(client, alice, bob, member, tmp_path, CLEAN[:3])
    ids = sorted(int(c) for c in opened["assignments"])

    http = client.http
    del http.headers["Authorization"]  # nobody presents the operator's credential
    forged = {READ_HEADER: sign_read_request(stranger, node.domain, node=node.account.address)}
    for headers in ({}, forged):
        response = http.get(f"/validation/queue/{member.address}", headers=headers)
        # not the Datanet's name, not its contribution ids, not how many of them the validator scores:
        # only that a round of a private Datanet waits for this validator, and until when
        assert "vault" not in response.text
        (only,) = response.json()
        assert only["round_id"] == opened["id"] and only["contribution_id"] is None and only["datanet"] is None
        assert only["commit_deadline"] == opened["commit_deadline"] and member.address in only["withheld"]
        # the round it points to, asked for by id, does not name the Datanet either
        refused = http.get(f"/validation/rounds/{opened['id']}", headers=headers)
        assert refused.status_code in (401, 403) and "vault" not in refused.text
        page = http.get(f"/web/validation?address={member.address}", headers=headers).text
        assert "vault" not in page and f"/web/contributions/{ids[0]}\"" not in page

    signed = {READ_HEADER: sign_read_request(member, node.domain, node=node.account.address)}
    mine = http.get(f"/validation/queue/{member.address}", headers=signed).json()
    assert [i["contribution_id"] for i in mine] == ids and all("harbour" in str(i["payload"]) for i in mine)
    # the client (an agent's wallet reads its tasks through it) signs as the validator when asked
    assert client.validation.queue(member.address, reader=member) == mine
    assert client.validation.queue(member.address)[0]["contribution_id"] is None
    # removed from the Datanet mid-round, the validator still sees what it must vote on, not the data
    client.remove_member("vault", member.address, alice)
    kept = http.get(f"/validation/queue/{member.address}", headers=signed).json()
    assert [(i["contribution_id"], i["datanet"]) for i in kept] == [(c, "vault") for c in ids]
    assert all(i["payload"] is None and i["source"] is None and i["flags"] == [] and i["withheld"] for i in kept)


def test_a_validator_is_never_assigned_their_own_contribution(client, alice, bob, setup, tmp_path):
    validators, node, clock = setup
    mine = validators[0]  # a staked validator contributes too
    client.contribute("ferries", [write_jsonl(tmp_path / "own.jsonl", CLEAN[:3])], mine)
    client.contribute("ferries", [write_jsonl(tmp_path / "bob.jsonl", CLEAN[3:5])], bob)
    own = {c.id for c in client.contributions("ferries") if c.contributor == mine.address}
    opened = client.validation.open_round(alice, "ferries")
    assignments = {int(c): vs for c, vs in opened["assignments"].items()}
    assert own and all(mine.address not in assignments[c] and len(assignments[c]) == 2 for c in own)
    assert all(mine.address in vs for c, vs in assignments.items() if c not in own)  # three validators, k = 3


def test_a_round_whose_only_validator_is_the_contributor_is_refused_and_stores_no_round(client, alice, bob, tmp_path):
    client.chain.faucet(bob.address, eth_wei=UNIT, tokens=20 * UNIT)
    client.chain.stake(bob, "validator", 10 * UNIT)  # the only staked validator contributes everything
    client.create_datanet(DatanetSpec(name="ferries", schema=QA_SCHEMA), alice)
    client.contribute("ferries", [write_jsonl(tmp_path / "f.jsonl", CLEAN[:2])], bob)
    with pytest.raises(LedgerError, match="nobody scores their own data") as refused:
        client.validation.open_round(alice, "ferries")
    assert refused.value.status == 409 and refused.value.field == "validators"
    from sqlalchemy import func, select

    from ledgerlm.store.schema import round_assignments, validation_rounds

    with client.http.app.state.node.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(validation_rounds)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(round_assignments)).scalar() == 0
    assert [c.state for c in client.contributions("ferries")] == ["pending", "pending"]


def test_the_owner_cannot_decide_a_contribution_its_validators_are_scoring(client, alice, bob, setup, tmp_path):
    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:2])], bob)
    opened = client.validation.open_round(alice, "ferries")
    scored = int(next(iter(opened["assignments"])))
    with pytest.raises(LedgerError, match="being scored in open validation round") as refused:
        client.review(scored, alice, accept=True)
    assert refused.value.status == 409
    with pytest.raises(LedgerError, match="being scored"):
        client.review_many("ferries", [scored], alice, accept=False)
    assert client.contribution(scored).state == "pending"  # left to the round's tally


def test_a_stranger_may_tally_a_private_round_but_learns_only_that_it_is_tallied(client, alice, bob, carol, setup,
                                                                              tmp_path):
    validators, node, clock = setup
    opened = _private_round(client, alice, bob, validators[0], tmp_path, CLEAN[:2])
    del client.http.headers["Authorization"]  # nobody presents the operator's credential from here on
    clock.now = opened["reveal_deadline"] + 1
    view = NodeClient(client.http).validation.tally(carol, opened["id"])  # carol: no member, no validator
    assert view == {"id": opened["id"], "state": "tallied"}


def test_a_strangers_agent_learns_nothing_of_a_private_round_from_its_refused_commit(client, alice, bob, tmp_path):
    from eth_account import Account

    from ledgerlm.identity import READ_HEADER

    member = Account.from_key(b"\x41" * 32)
    client.chain.faucet(member.address, eth_wei=UNIT, tokens=300 * UNIT)
    client.chain.stake(member, "validator", 300 * UNIT)
    client.chain.faucet(bob.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.stake(bob, "contributor_bond", 10 * UNIT)
    client.create_datanet(DatanetSpec(name="vault", schema=QA_SCHEMA, visibility="private"), alice)
    client.add_member("vault", bob.address, alice)
    client.add_member("vault", member.address, alice)
    NodeClient(client.http, reader=bob).contribute("vault", [write_jsonl(tmp_path / "v.jsonl", CLEAN[:2])], bob)
    round_id = client.validation.open_round(alice, "vault")["id"]

    http = client.http
    del http.headers["Authorization"]  # from here on: no operator credential
    stranger_owner, stranger_agent = Account.from_key(b"\x66" * 32), Account.from_key(b"\x67" * 32)
    stranger = NodeClient(http)
    # a stranger sees nothing of the round that names the Datanet (round ids are sequential)
    refused = http.get(f"/validation/rounds/{round_id}",
                       headers={READ_HEADER: stranger.read_header(stranger_agent)})
    assert refused.status_code == 403 and "vault" not in refused.text

    # an agent of the stranger's own, whose policy allows validating a decoy Datanet only
    stranger.agents.set_policy(stranger_owner, stranger_agent.address, {
        "budget": 1, "perEpoch": False, "allowModels": [], "allowDatanets": ["decoy"], "priceCapped": False,
        "maxPricePer1k": 0, "actions": ["validate"], "paused": False}, bind=stranger_agent)
    action = stranger._sign(stranger_agent, "CommitVotes", {"roundId": round_id, "commit": "0x" + "00" * 32})
    leaked = http.post(f"/validation/rounds/{round_id}/commit", json={"action": action})
    # the round's own refusal comes first (not assigned), not the policy's, which would name the Datanet
    assert leaked.status_code in (400, 403, 409) and "vault" not in leaked.text
    assert leaked.json()["error"]["field"] == "validator"


def test_rounds_a_private_datanets_owner_scores_lower_reputations_but_never_raise_them(client, alice, bob, setup,
                                                                                       tmp_path):
    """The owner of a private Datanet picks who scores it, its own keys among them: one-record rounds a key scored
    alone counted as perfect rounds, raising its validator reputation (its share of every public pool) and a second
    key's contributor reputation, and pushing its bad public rounds out of the slash window."""
    validators, node, clock = setup
    member = validators[2]
    before = {"validator": client.validation.reputation(member.address)["validator_bps"],
              "contributor": client.validation.reputation(bob.address)["contributor_bps"]}
    opened = _private_round(client, alice, bob, member, tmp_path, CLEAN[:2])
    rid = opened["id"]
    votes = {int(c): 90 for c in opened["assignments"]}
    _, salt = client.validation.commit(member, rid, votes)
    clock.now = opened["commit_deadline"] + 1
    client.validation.reveal(member, rid, votes, salt)
    clock.now = opened["reveal_deadline"] + 1
    tallied = client.validation.tally(alice, rid)
    assert {c["decision"] for c in tallied["tally"]["contributions"].values()} == {"accept"}
    assert client.validation.reputation(member.address)["validator_bps"] == before["validator"]
    assert client.validation.reputation(bob.address)["contributor_bps"] == before["contributor"]


def test_two_rounds_tallied_at_once_take_a_gate_rejected_records_bond_once(client, alice, bob, setup, tmp_path):
    """Each slash plan is made from the other rounds' recorded plans: two tallies planning at once each saw none,
    and both slashed bob's bond for the same junk record."""
    import threading

    from ledgerlm.identity import SignedAction
    from tests.loops import at_once

    validators, node, clock = setup
    client.contribute("ferries", [write_jsonl(tmp_path / "a.jsonl", CLEAN[:2] + [JUNK])], bob)
    first = client.validation.open_round(alice, "ferries")
    client.contribute("ferries", [write_jsonl(tmp_path / "b.jsonl", CLEAN[2:4])], bob)
    second = client.validation.open_round(alice, "ferries")
    assert first["gated"]["reject"] == 1
    junk = next(c.id for c in client.contributions("ferries", state="rejected"))
    salts, votes = {}, {}
    for opened in (first, second):
        for v in validators:
            mine = {int(c): 90 for c, vs in opened["assignments"].items() if v.address in vs}
            votes[opened["id"], v.address] = mine
            _, salts[opened["id"], v.address] = client.validation.commit(v, opened["id"], mine)
    clock.now = max(first["commit_deadline"], second["commit_deadline"]) + 1
    for opened in (first, second):
        for v in validators:
            client.validation.reveal(v, opened["id"], votes[opened["id"], v.address], salts[opened["id"], v.address])
    clock.now = max(first["reveal_deadline"], second["reveal_deadline"]) + 1

    # both planners are held inside their plan until the other arrives, or for a second when it cannot
    meet = threading.Barrier(2, timeout=1)
    gate_rejections = node.validation._gate_rejections

    def held(round_id):
        try:
            meet.wait()
        except threading.BrokenBarrierError:
            pass
        return gate_rejections(round_id)

    node.validation._gate_rejections = held
    actions = {r["id"]: SignedAction(**client._sign(alice, "TallyRound", {"roundId": r["id"]}))
               for r in (first, second)}
    errors = at_once(node.validation.tally, list(actions.items()))
    assert errors == []
    slashed = [s for rid in actions for s in node.validation.round(rid).tally["slashed"]
               if junk in s.get("contributions", [])]
    assert len(slashed) == 1
