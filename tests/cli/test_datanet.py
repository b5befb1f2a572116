"""`ledgerlm datanet create|list|show|contribute|contributions|contribution|accept|reject|withdraw|publish|
manifest|export`: a Datanet from creation to an exported version, and the errors users meet on the way."""

import json

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "a": {"type": "string"}}, "required": ["q", "a"]}


def test_story_with_json_output(cli, tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    cli("datanet", "create", "facts", "--as", "alice", "--schema", tmp_path / "s.json")
    cli.fails("datanet", "create", "Bad_Name", "--as", "alice", match="name")
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"q": str(i), "a": f"answer {i}"}) + "\n" for i in range(1, 7)))
    receipt = cli.json("datanet", "contribute", "facts", tmp_path / "d.jsonl", "--as", "bob")
    assert receipt["contribution_count"] == 6
    cli.fails("datanet", "contribute", "facts", tmp_path / "d.jsonl", "--as", "bob", match="already")

    batch = cli.json("datanet", "accept", "1-3,5", "--as", "alice")
    assert batch["state"] == "accepted" and batch["contribution_ids"] == [1, 2, 3, 5]
    cli.fails("datanet", "accept", "4-5", "--as", "alice", match="contribution 5 is no longer pending")
    cli.fails("datanet", "accept", "4", "--as", "bob", match="only the owner")
    cli("datanet", "reject", "4", "--as", "alice", "--reason", "wrong")
    rejected = cli.json("datanet", "contributions", "facts", "--state", "rejected")
    assert rejected[0]["reason"] == "wrong" and rejected[0]["events"][-1]["state"] == "rejected"
    cli.fails("datanet", "contributions", "facts", "--state", "lost", match="unknown state 'lost'")
    assert "answer 4" in cli("datanet", "contributions", "facts", "--state", "rejected", "--payload").stdout

    cli.fails("datanet", "withdraw", "6", "--as", "alice", match="only its contributor")
    cli("datanet", "withdraw", "6", "--as", "bob")
    assert cli.json("datanet", "contribution", "6")["state"] == "withdrawn"
    cli.fails("datanet", "accept", "--all-pending", "facts", "--as", "alice", match="no pending contributions")

    version = cli.json("datanet", "publish", "facts", "--as", "alice")
    assert version["contribution_count"] == 4
    shown = cli.json("datanet", "show", "facts")
    assert shown["versions"][0]["root"] == version["root"]
    text = cli("datanet", "show", "facts").stdout
    assert version["root"] in text and "Z (" in text  # the whole root, and dates as ISO 8601 with the time since
    assert [d["name"] for d in cli.json("datanet", "list")] == ["facts"]
    leaves = cli.json("datanet", "manifest", "facts", "--version", "1")
    assert leaves["root"] == version["root"] and len(leaves["contributions"]) == 4
    cli.fails("datanet", "manifest", "facts", "--version", "2", match="version 2")

    out = tmp_path / "v1.jsonl"
    cli("datanet", "export", "facts", "--version", "1", "--out", out)
    assert sorted(json.loads(line)["q"] for line in out.read_text().splitlines()) == ["1", "2", "3", "5"]
    cli.fails("datanet", "export", "facts", "--version", "1", "--format", "xml", match="unknown format 'xml'")


def test_all_pending_reviews_every_pending_contribution_at_once(cli, tmp_path):
    cli("datanet", "create", "notes", "--as", "alice")
    for i in range(3):
        (tmp_path / f"n{i}.md").write_text(f"# Note {i}\n\nA note about harbour {i}.\n")
    cli("datanet", "contribute", "notes", *(tmp_path / f"n{i}.md" for i in range(3)), "--as", "bob")
    rejected = cli.json("datanet", "reject", "--all-pending", "notes", "--as", "alice", "--reason", "off topic")
    assert rejected["contribution_ids"] == [1, 2, 3]
    assert {c["state"] for c in cli.json("datanet", "contributions", "notes")} == {"rejected"}
    cli.fails("datanet", "reject", "--as", "alice", match="give contribution ids")
    cli.fails("datanet", "reject", "x-2", "--as", "alice", match="'x-2' is not a contribution id")


def test_private_datanet(cli, tmp_path):
    """Reads of a private Datanet need --as a member's key; the owner adds members by key name."""
    cli("datanet", "create", "secret", "--as", "alice", "--visibility", "private")
    (tmp_path / "note.md").write_text("# a private note\n")
    cli("datanet", "contribute", "secret", tmp_path / "note.md", "--as", "alice")
    cli.fails("datanet", "contributions", "secret", match="private")
    assert cli.json("datanet", "list") == []
    assert cli.json("datanet", "list", "--as", "alice")[0]["name"] == "secret"
    cli.fails("datanet", "contribution", "1", "--as", "carol", match="neither its owner nor a member")
    cli("datanet", "add-member", "secret", "bob", "--as", "alice")
    assert len(cli.json("datanet", "members", "secret", "--as", "bob")) == 1
    assert cli.json("datanet", "contribution", "1", "--as", "bob")["payload"].startswith("# a private note")
    cli("datanet", "remove-member", "secret", "bob", "--as", "alice")
    cli.fails("datanet", "show", "secret", "--as", "bob", match="neither its owner nor a member")
