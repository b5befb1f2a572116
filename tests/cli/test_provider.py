"""`ledgerlm provider offer|list|submit|run|jobs` with --json: a provider offers, a requester submits a job and
pays from escrow, the provider runs it on its machine and the node's spot-check verifies it."""

import json

import pytest

pytest.importorskip("torch")

TEXTS = [f"The ferry to island {i} leaves at {i + 6} o'clock." for i in range(4)]


@pytest.mark.slow  # the default suite covers the routes through the client (tests/providers)
@pytest.mark.parametrize("cli_mode", ["served"])  # one mode: the in-process one opens a node per command
def test_offer_submit_run(cli, tmp_path):
    from ledgerlm.factory import tiny_random_model

    cli("models", "register", "tiny", tiny_random_model(tmp_path / "tiny", TEXTS))
    for key, tokens in (("bob", "100"), ("alice", "10")):
        cli("chain", "faucet", key, "--eth", "1", "--tokens", tokens)
    cli.fails("provider", "offer", "--kind", "train", "--price", "2", "--base-model", "tiny", "--hardware", "cpu",
              "--as", "bob", match="no stake under the provider role")
    cli("stake", "50", "--role", "provider", "--as", "bob")
    offer = cli.json("provider", "offer", "--kind", "train", "--price", "2", "--base-model", "tiny",
                     "--hardware", "cpu: 2 cores", "--as", "bob")
    assert [o["id"] for o in cli.json("provider", "list", "--kind", "train")] == [offer["id"]]
    cli("deposit", "5", "--as", "alice")
    (tmp_path / "job.json").write_text(json.dumps({"texts": TEXTS, "steps": 2, "rank": 2, "max_len": 32}))
    cli.fails("provider", "submit", tmp_path / "job.json", "--kind", "train", "--pay", "3", "--as", "alice",
              match="--base-model")  # matched on price alone, an offer on another model could take it
    job = cli.json("provider", "submit", tmp_path / "job.json", "--kind", "train", "--pay", "3", "--base-model",
                   "tiny", "--as", "alice")
    assert job["offer_id"] == offer["id"] and job["amount"] == str(2 * 10**18) and job["payment_state"] == "paid"
    done = cli.json("provider", "run", str(job["id"]), "--as", "bob")
    assert done["state"] == "verified" and done["spot_check"]["passed"] is True
    assert [j["state"] for j in cli.json("provider", "jobs", "--provider", cli.address("bob"))] == ["verified"]
    cli.fails("provider", "run", str(job["id"]), "--as", "bob", match="already reported")
