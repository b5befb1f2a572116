"""`ledgerlm chain status|faucet|deploy`, `balance`, `stake`, `unstake`, `withdraw`, `transfer`."""

from __future__ import annotations

import re

UNIT = 10**18
# The cooldown is 7 days of chain time; a block or two later it reads "in 6 d 23 h".
ISO_IN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (7 d|6 d 23 h)\)")


def test_status_prints_every_address_and_hash_whole(cli):
    info = cli.json("chain", "status")
    assert info["kind"] == "embedded" and set(info["contracts"]) >= {"Staking", "Registry"}
    text = cli("chain", "status").stdout
    lines = text.splitlines()
    assert any(info["head"]["hash"] in line for line in lines)
    for address in info["contracts"].values():
        assert any(address in line for line in lines)


def test_faucet_stake_unstake_withdraw_transfer(cli):
    alice, bob = cli.address("alice"), cli.address("bob")
    cli("chain", "faucet", "alice", "--tokens", "500")
    account = cli.json("balance", alice)
    assert account["tokens"] == 500 * UNIT and account["eth_wei"] >= UNIT

    cli("stake", "200", "--as", "alice")
    cli.fails("stake", "1000", "--as", "alice", match="holds 300 LGR, less than the 1000 LGR to stake")
    assert cli.json("balance", "alice")["stake"]["validator"] == 200 * UNIT

    cli("unstake", "50", "--as", "alice")
    cli.fails("unstake", "500", "--as", "alice", match="InsufficientStake")
    pending = cli.json("balance", "alice")["unstaking"]["validator"]
    assert pending["amount"] == 50 * UNIT
    assert ISO_IN.search(cli("balance", "alice").stdout)  # when it frees up, in words, not Unix seconds

    cli.fails("withdraw", "--as", "alice", match="reverted")  # the cooldown has not passed
    with cli.node() as node:
        node.chain.advance_time(8 * 86_400)
    cli("withdraw", "--as", "alice")
    after = cli.json("balance", "alice")
    assert after["tokens"] == 350 * UNIT and "validator" not in after["unstaking"]

    cli("transfer", bob.lower(), "25", "--as", "alice")  # a lower-case address is accepted
    assert cli.json("balance", "bob")["tokens"] == 25 * UNIT
    cli.fails("transfer", "bob", "1", "--as", "carol", match="ERC20InsufficientBalance")
    cli.fails("stake", "1", "--as", "carol", match="ledgerlm chain faucet 0x")  # no ETH for gas: what to do


def test_deploy_refuses_an_unreachable_chain(cli):
    cli.fails("chain", "deploy", "--chain-url", "http://127.0.0.1:9", "--key", "alice",
              match="cannot reach an EVM node at http://127.0.0.1:9")


def test_index_catches_up_and_status_shows_its_head_and_lag(cli):
    before = cli.json("chain", "status")["index"]
    assert before["indexed_block"] is None and before["lag"] > 0  # the deployment's blocks, not read yet

    indexed = cli.json("chain", "index", "--batch", "2")
    assert indexed["lag"] == 0 and indexed["events"] > 0 and indexed["reorgs"] == 0

    cli("chain", "faucet", "alice", "--tokens", "50")
    cli("stake", "20", "--as", "alice")
    assert cli.json("chain", "status")["index"]["lag"] > 0
    after = cli.json("chain", "index")
    assert after["lag"] == 0 and after["events"] > indexed["events"]
    assert after["indexed_block"] == cli.json("chain", "status")["head"]["number"]
    text = cli("chain", "status").stdout
    assert f"indexed block {after['indexed_block']} of" in text and "lag 0 blocks" in text


def test_a_held_slash_shows_on_the_balance_and_only_the_admin_key_revokes_it(cli):
    from ledgerlm.node import outcome_id

    cli("chain", "faucet", "alice", "--tokens", "500")
    cli("stake", "200", "--as", "alice")
    with cli.node() as node:
        staking, alice = node.contracts.staking, cli.address("alice")
        round_id = outcome_id(node.account.address, 7_000_001)
        staking.record_outcome(node.account, round_id, b"\x0e" * 32)
        staking.slash(node.account, round_id, alice, 0, 20 * UNIT)
    held = cli.json("balance", "alice")["held_slashes"]
    assert [(h["role"], h["round_id"], h["amount"]) for h in held] == [("validator", round_id, 20 * UNIT)]
    assert cli.json("balance", "alice")["stake"]["validator"] == 180 * UNIT
    assert "revocable by the admin until" in cli("balance", "alice").stdout
    cli.fails("chain", "revoke-slash", str(held[0]["slash_id"]), "--as", "alice", match="AccessControl")
    cli("chain", "revoke-slash", str(held[0]["slash_id"]))  # the home's admin keystore
    after = cli.json("balance", "alice")
    assert after["stake"]["validator"] == 200 * UNIT and after["held_slashes"] == []


def test_only_the_admin_key_sets_how_much_of_the_reward_pool_the_node_may_release_a_day(cli):
    shown = cli.json("chain", "release-limit")
    assert shown["limit_per_day"] == str(10_000 * UNIT) and shown["pool"] == "0"
    cli("keys", "new", "mallory")
    cli.fails("chain", "release-limit", "5", "--as", "mallory", match="AccessControl")
    cli("chain", "release-limit", "5")  # the home's admin keystore
    assert cli.json("chain", "release-limit")["limit_per_day"] == str(5 * UNIT)
    assert "5 LGR of the reward pool per day" in cli("chain", "release-limit").stdout


def test_a_node_bound_to_a_wildcard_or_ipv6_address_is_recorded_at_a_url_the_cli_reaches():
    """`serve --host ::` recorded http://:::8547, which no URL parser takes: every CLI call on the home then failed
    while the node ran, `--node` included."""
    from ledgerlm.cli.main import _local_url

    assert _local_url("::", 8547) == "http://[::1]:8547"
    assert _local_url("0.0.0.0", 8547) == "http://127.0.0.1:8547"
    assert _local_url("fe80::1", 8547) == "http://[fe80::1]:8547"
    assert _local_url("10.0.0.5", 8547) == "http://10.0.0.5:8547"
