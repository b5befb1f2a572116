"""`ledgerlm validate policy|open|queue|commit|reveal|tally|round show|reputation` on a real round.

The round's clock is moved past its deadlines instead of waiting for them: a fixed wait is either slow
or, on a loaded machine, shorter than the commands it has to hold.
"""

from __future__ import annotations

import json
import re
import time

from ledgerlm.validation.rounds import ValidationRounds

UNIT = 10**18
RECORDS = [{"question": f"Which harbour does ferry {n} serve?", "answer": f"Ferry {n} serves the {h} harbour."}
           for n, h in enumerate(["north", "south", "old"])]
ISO_IN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+ min( \d+ s)?\)")


class RoundClock:
    """What `ValidationRounds.now` reads in this test, in the CLI process and in the served node's thread."""

    def __init__(self):
        self.now = int(time.time())

    def move_past(self, deadline: int) -> None:
        self.now = deadline + 1


def test_a_round_from_policy_to_reputation(cli_for, tmp_path, monkeypatch):
    clock = RoundClock()
    monkeypatch.setattr(ValidationRounds, "now", lambda self: clock.now)
    cli = cli_for({"round_commit_seconds": 600, "round_reveal_seconds": 600, "validators_per_contribution": 2})
    schema = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
              "required": ["question", "answer"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    cli("datanet", "create", "ferries", "--as", "alice", "--schema", tmp_path / "schema.json")
    for validator in ("bob", "carol"):
        cli("chain", "faucet", validator, "--tokens", "100")
        cli("stake", "100", "--as", validator)

    policy = cli.json("validate", "policy", "ferries")
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    cli.fails("validate", "policy", "ferries", "--file", tmp_path / "policy.json", match="needs --as OWNER_KEY")
    assert cli.json("validate", "policy", "ferries", "--file", tmp_path / "policy.json", "--as", "alice") == policy

    (tmp_path / "ferries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    cli("datanet", "contribute", "ferries", tmp_path / "ferries.jsonl", "--as", "alice")
    cli.fails("validate", "open", "ferries", "--as", "bob", match="owner")
    opened = cli.json("validate", "open", "ferries", "--as", "alice")
    rid = opened["id"]
    assert sorted(int(c) for c in opened["assignments"]) == [1, 2, 3]

    queue = cli.json("validate", "queue", "--as", "bob")
    assert {q["contribution_id"] for q in queue} == {1, 2, 3} and {q["round_id"] for q in queue} == {rid}
    assert "Which harbour" in cli("validate", "queue", "--as", "carol").stdout

    cli.fails("validate", "commit", rid, "--votes", "one=ninety", "--as", "bob", match="votes must look like")
    cli.fails("validate", "commit", rid, "--votes", "1=90,99=85", "--as", "bob", match="99 are not assigned")
    committed = cli("validate", "commit", rid, "--votes", "1=90,2=85,3=10", "--as", "bob").stdout
    assert ISO_IN.search(committed), committed  # "reveal after <ISO 8601> (in 9 min 58 s)"
    # The CLI dies once the node has taken a commit, before it renames the kept votes into place: carol's first
    # commit, and bob's second (his first one's votes stay kept beside it). Each is still revealed.
    import os

    real_replace = os.replace

    def killed_once_sent(src, dst):
        if str(src).endswith(".sending.json"):
            raise SystemExit(137)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_once_sent)
    cli("validate", "commit", rid, "--votes", "1=80,2=95,3=5", "--as", "carol", ok=False)
    cli("validate", "commit", rid, "--votes", "1=91,2=84,3=11", "--as", "bob", ok=False)
    monkeypatch.setattr(os, "replace", real_replace)
    kept = sorted(p.name for p in (cli.home.root / "validator").iterdir())
    assert len(kept) == 3 and sum(name.endswith(".sending.json") for name in kept) == 2
    error = cli.fails("validate", "reveal", rid, "--as", "bob", match="opens after")
    assert ISO_IN.search(error), error

    clock.move_past(opened["commit_deadline"])
    cli("validate", "reveal", rid, "--as", "bob")
    cli("validate", "reveal", rid, "--as", "carol")
    revealed = cli.json("validate", "round", "show", rid)
    assert len(revealed["revealed"]) == 2
    cli.fails("validate", "tally", rid, "--as", "alice", match="can be tallied after")

    clock.move_past(opened["reveal_deadline"])
    tallied = cli.json("validate", "tally", rid, "--as", "alice")
    decisions = {int(c): o["decision"] for c, o in tallied["tally"]["contributions"].items()}
    assert decisions == {1: "accept", 2: "accept", 3: "reject"}
    shown = cli("validate", "round", "show", rid).stdout
    assert "closed" in shown or "tallied" in shown
    assert "accept at a score of 60+" in shown and "{" not in shown  # the rules in words, not a dict
    cli.fails("validate", "round", "show", rid + 1, match=f"no validator round {rid + 1}")

    bob = cli.json("validate", "reputation", "bob")
    assert bob["validator_bps"] > 5000  # agreeing with consensus earns reputation
    cli.fails("validate", "reputation", "nobody", match="no key named 'nobody'")
