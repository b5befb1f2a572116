"""`ledgerlm shares issue|list|show|holders|claim|transfer` and `datanet price`: a Datanet's shares from issue to a
transfer, through the command line with --json."""

import json

import pytest

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string"}}, "required": ["q", "a"]}
UNIT = 10**18


@pytest.mark.slow  # the default suite covers the routes through the client and every command's error path
@pytest.mark.parametrize("cli_mode", ["served"])  # one mode: the in-process one opens a node per command
def test_issue_show_holders_claim_transfer(cli, tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    cli("datanet", "create", "facts", "--as", "alice", "--schema", tmp_path / "s.json", "--owner-share", "1000")
    assert cli.json("datanet", "owner-share", "facts", "2500", "--as", "alice")["owner_share_bps"] == 2500
    assert cli.json("datanet", "show", "facts")["owner_share_bps"] == 2500
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"q": str(i), "a": f"answer {i}"}) + "\n" for i in range(3)))
    cli("datanet", "contribute", "facts", tmp_path / "d.jsonl", "--as", "bob")
    cli("datanet", "accept", "--all-pending", "facts", "--as", "alice")
    cli.fails("shares", "issue", "--datanet", "facts", "--as", "alice", match="has no version")
    cli("datanet", "publish", "facts", "--as", "alice")
    cli.fails("shares", "issue", "--datanet", "facts", "--model", "m", "--as", "alice", match="exactly one")
    cli.fails("shares", "issue", "--datanet", "facts", "--as", "bob", match="only the owner")

    issued = cli.json("shares", "issue", "--datanet", "facts", "--as", "alice", "--supply", "1000")
    cli.fails("datanet", "owner-share", "facts", "0", "--as", "alice", match="already issued")
    assert issued["ref"] == "datanet:facts" and issued["supply"] == str(1000 * UNIT)
    assert [x["ref"] for x in cli.json("shares", "list")] == ["datanet:facts"]
    holders = {h["account"]: h for h in cli.json("shares", "holders", "facts")["holders"]}
    alice, bob = (cli.json("keys", "show", k)["address"] for k in ("alice", "bob"))
    assert int(holders[alice]["balance"]) == 250 * UNIT and holders[bob]["bps"] == 7500
    assert cli.json("shares", "show", "facts")["earnings"]["epochs"] == []

    cli("chain", "faucet", "bob", "--eth", "1", "--tokens", "0")
    sent = cli.json("shares", "transfer", "facts", "alice", "100", "--as", "bob")
    assert sent["claimed"]  # bob's allocation was claimed into his wallet first
    assert cli.json("shares", "claim", "facts", "--as", "bob")["claimed"] is False
    after = {h["account"]: int(h["balance"]) for h in cli.json("shares", "holders", "facts")["holders"]}
    assert after == {alice: 350 * UNIT, bob: 650 * UNIT}
    cli.fails("shares", "transfer", "facts", "alice", "10000", "--as", "bob", match="ERC20InsufficientBalance")

    cli.fails("datanet", "price", "facts", "5", "--as", "alice", match="is public")
