"""`ledgerlm shares preview|issue|list|show|holders|claim|transfer` and `datanet price`: a Datanet's shares from issue to a
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

    preview = cli.json("shares", "preview", "--datanet", "facts", "--supply", "1000")
    assert {x["account"] for x in preview["allocation"]} == {cli.address("alice"), cli.address("bob")}
    issued = cli.json("shares", "issue", "--datanet", "facts", "--as", "alice", "--supply", "1000")
    assert issued["allocation_root"] == preview["allocation_root"]  # what alice signed is what she was shown
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

    # a private Datanet priced per version: carol exports once, pays once; the close pays its share holders
    # and `epoch verify` checks their split against the token's holders at the closing block
    cli("datanet", "create", "vault", "--as", "alice", "--schema", tmp_path / "s.json", "--visibility", "private",
        "--owner-share", "5000")
    cli("datanet", "add-member", "vault", "carol", "--as", "alice")
    cli("datanet", "contribute", "vault", tmp_path / "d.jsonl", "--as", "alice")
    cli("datanet", "accept", "--all-pending", "vault", "--as", "alice")
    cli("datanet", "publish", "vault", "--as", "alice")
    cli("datanet", "price", "vault", "5", "--as", "alice")
    cli.json("shares", "issue", "--datanet", "vault", "--as", "alice", "--supply", "10")
    cli.fails("datanet", "export", "vault", "--version", "1", "--as", "carol", "--out", tmp_path / "v.jsonl",
              match="costs 5 LGR \\(5000000000000000000 base units\\) to export")
    cli("chain", "faucet", "carol", "--eth", "1", "--tokens", "20")
    cli("deposit", "20", "--as", "carol")
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")  # a folder for a file format is refused before any licence is bought
    cli.fails("datanet", "export", "vault", "--version", "1", "--as", "carol", "--out", project, "--pay", "6",
              match="is a folder")
    assert int(cli.json("balance", "carol")["escrow"]) == 20 * UNIT
    licences = [cli.json("datanet", "export", "vault", "--version", "1", "--as", "carol", "--out",
                         tmp_path / "v.jsonl", "--pay", "6")["licence"] for _ in range(2)]
    assert licences[0] == licences[1] and licences[0]["amount"] == str(5 * UNIT)  # paid once
    assert len((tmp_path / "v.jsonl").read_text().splitlines()) == 3
    closed = cli.json("epoch", "close")
    verified = cli.json("epoch", "verify", str(closed["epoch"]))
    assert verified["ok"] and verified["holders_unchecked"] == ["datanet:vault"], verified  # private: members only
    verified = cli.json("epoch", "verify", str(closed["epoch"]), "--as", "carol")
    assert verified["ok"] and verified["holders_unchecked"] == [], verified
