"""The node on its chain: Datanets and versions anchored in the Registry, user-signed staking
relayed, the embedded chain surviving restarts and kills, one owner of the chain at a time."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest
from eth_utils import keccak
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.chain import ChainError
from ledgerlm.chain.anvil import free_port
from ledgerlm.client import NodeClient
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node

from ..datanets.conftest import QA_SCHEMA, write_jsonl

UNIT = 10**18


def _publish_one(client, alice, bob, tmp_path, name="qa"):
    client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA), alice)
    client.contribute(name, [write_jsonl(tmp_path / f"{name}.jsonl", [{"question": "q?", "answer": "a"}])], bob)
    for c in client.contributions(name):
        client.review(c.id, alice, accept=True)
    return client.publish(name, alice)


def test_datanet_and_version_are_anchored_in_the_registry(home, client, alice, bob, tmp_path):
    version = _publish_one(client, alice, bob, tmp_path)
    shown = client.datanet("qa")
    assert shown.chain_tx and version.chain_tx  # `datanet show` reports the transactions
    node = client.http.app.state.node  # the serving node owns the chain
    record = node.contracts.registry.get_version(keccak(text="qa"), 1)
    assert record.root == version.root and record.count == 1
    assert node.contracts.registry.get_datanet(keccak(text="qa")).owner == alice.address


def test_a_private_datanet_is_anchored_without_its_name(client, http, alice):
    """Anyone may read the chain (and the node's explorer shows every event): a private Datanet's name stays
    off it, while its id, keccak(name), still lets whoever knows the name check the anchor."""
    client.create_datanet(DatanetSpec(name="hidden-plans", schema=QA_SCHEMA, visibility="private"), alice)
    client.create_datanet(DatanetSpec(name="open-plans", schema=QA_SCHEMA), alice)
    registry = http.app.state.node.contracts.registry
    hidden = registry.get_datanet(keccak(text="hidden-plans"))
    assert hidden.owner == alice.address and hidden.name == ""
    assert registry.get_datanet(keccak(text="open-plans")).name == "open-plans"
    tx = NodeClient(client.http, reader=alice).datanet("hidden-plans").chain_tx
    shown = http.get(f"/web/ledger/tx/{tx}")
    assert shown.status_code == 200 and "DatanetRegistered" in shown.text and "hidden-plans" not in shown.text


NOTHING = {"datanets": 0, "versions": 0, "slashes": 0, "shares": 0, "epoch_close": 0, "payments": 0, "fee_policies": 0,
           "attribution": 0, "withdrawn_samples": 0}


def test_a_name_or_version_another_registrar_took_on_chain_is_not_adopted(home, client, alice, bob, tmp_path):
    """A second node on these contracts (or a stolen key) registered the name, or published the version number,
    first: the node refuses to anchor its own as if that record were its, rather than report an owner and root the
    chain does not hold."""
    from eth_account import Account

    from ledgerlm.identity.node_keys import unlock_keystore

    node = client.http.app.state.node
    registry = node.contracts.registry
    admin = unlock_keystore(home.admin_key_path, os.environ["LEDGERLM_ADMIN_PASSPHRASE"], "admin")
    other = Account.from_key(b"\x42" * 32)
    node.chain.send_eth(admin, other.address, UNIT)
    registry.grant_role(admin, "REGISTRAR_ROLE", other.address)
    registry.register_datanet(other, keccak(text="taken"), other.address, "taken", b"\x11" * 32, "other")
    with pytest.raises(LedgerError, match="registered on chain with another owner") as refused:
        client.create_datanet(DatanetSpec(name="taken", schema=QA_SCHEMA), alice)
    assert refused.value.status == 409 and refused.value.field == "name"
    assert registry.get_datanet(keccak(text="taken")).owner == other.address

    _publish_one(client, alice, bob, tmp_path)  # qa version 1, anchored by this node
    registry.publish_version(other, keccak(text="qa"), 2, b"\xee" * 32, 999, b"\x22" * 32)
    client.contribute("qa", [write_jsonl(tmp_path / "more.jsonl", [{"question": "r?", "answer": "b"}])], bob)
    for c in client.contributions("qa", state="pending"):
        client.review(c.id, alice, accept=True)
    with pytest.raises(LedgerError, match="on chain with another root") as refused:
        client.publish("qa", alice)
    assert refused.value.status == 409 and refused.value.field == "root"
    assert client.datanet("qa").versions[-1].chain_tx is None  # not reported as anchored


def test_start_anchors_what_a_crash_left_behind_once(home, alice, bob, tmp_path):
    node = Node.open(home)
    node.datanets.anchor = None  # as if the process died right after the database commit
    with TestClient(create_app(lambda: node)) as http:
        _publish_one(NodeClient(http), alice, bob, tmp_path)
    node = Node.open(home)
    try:
        assert node.datanets.get("qa").chain_tx is None and node.pending_work()["versions"] == 1
    finally:
        node.close()
    node = Node.start(home)  # what `ledgerlm serve` opens
    try:
        assert node.started == {**NOTHING, "datanets": 1, "versions": 1}
        assert node.datanets.get("qa").versions[0].chain_tx
        assert node.contracts.registry.latest_version(keccak(text="qa")) == 1
        assert node.reconcile() == NOTHING
    finally:
        node.close()
    node = Node.start(home)
    try:  # nothing left: the next start reads the database only and never opens the chain
        assert node.started == NOTHING and "chain" not in node.__dict__
    finally:
        node.close()


def test_stake_is_signed_by_the_staker_and_relayed(client, bob):
    chain = client.chain
    chain.faucet(bob.address, eth_wei=UNIT, tokens=100 * UNIT)
    chain.stake(bob, "validator", 60 * UNIT)
    chain.request_unstake(bob, "validator", 10 * UNIT)
    account = chain.account(bob.address)
    assert account["tokens"] == 40 * UNIT
    assert account["stake"]["validator"] == 50 * UNIT
    assert account["unstaking"]["validator"]["amount"] == 10 * UNIT
    with pytest.raises(LedgerError, match="CooldownNotElapsed") as cooling:
        chain.withdraw_stake(bob, "validator")
    # the contract's error in words, naming the field: a time in ISO 8601 with the time left, amounts in LGR
    assert cooling.value.field == "role" and "may be withdrawn from 20" in cooling.value.message
    assert " (in " in cooling.value.message
    with pytest.raises(LedgerError, match="ERC20InsufficientAllowance") as short:
        chain.send(bob, "Staking", "stake", [0, 1000 * UNIT])
    assert short.value.field == "amount" and "less than the 1,000 LGR asked for" in short.value.message
    with pytest.raises(LedgerError, match="ERC20InsufficientBalance") as poor:
        chain.transfer(bob, bob.address, 10**6 * UNIT)
    assert poor.value.field == "amount" and "holds 40 LGR, less than the 1,000,000 LGR asked for" in poor.value.message
    assert chain.account(bob.address)["stake"]["validator"] == 50 * UNIT


def test_state_survives_restart(home, alice, bob, tmp_path):
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http)
        version = _publish_one(client, alice, bob, tmp_path)
        client.chain.faucet(bob.address, eth_wei=UNIT, tokens=7 * UNIT)
        before = client.chain.info()["head"]
    with TestClient(create_app(lambda: Node.open(home))) as http:
        again = NodeClient(http)
        assert again.chain.info()["head"] == before
        assert again.chain.account(bob.address)["tokens"] == 7 * UNIT
        assert again.datanet("qa").versions[0].root == version.root


def test_one_process_owns_the_embedded_chain(home):
    first = Node.open(home)
    first.chain  # noqa: B018 - opening takes the lock
    second = Node.open(home)
    try:
        with pytest.raises(ChainError, match="in use by process"):
            second.chain  # noqa: B018
    finally:
        second.close()
        first.close()


KILLER = textwrap.dedent(
    """
    import sys, itertools
    from eth_account import Account
    from ledgerlm.config import Home
    from ledgerlm.node import Node
    node = Node.open(Home(sys.argv[1]))
    accounts = [Account.from_key(bytes([i + 1]) * 32).address for i in range(3)]
    print("ready", flush=True)
    for n in itertools.count():
        node.contracts.token.transfer(node.faucet_account, accounts[n % 3], 10**18)
        node.chain.send_eth(node.account, accounts[n % 3], 1)
        print(n, flush=True)
    """
)


def test_kill_between_writes_loses_nothing_acknowledged(home, tmp_path):
    from eth_account import Account

    script = tmp_path / "writer.py"
    script.write_text(KILLER)
    acknowledged = 0
    for delay in (0.3, 0.8):
        proc = subprocess.Popen([sys.executable, str(script), str(home.root)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        lines = proc.stdout.read().split()
        proc.wait()
        acknowledged += len(lines)
        node = Node.open(home)
        try:
            accounts = [Account.from_key(bytes([i + 1]) * 32).address for i in range(3)]
            received = sum(node.contracts.token.balance_of(a) for a in accounts)
            treasury = node.contracts.token.balance_of(node.faucet_account.address)
            # Nothing is created or lost, every acknowledged transfer is there, and at most the one
            # in flight may also have landed.
            assert treasury + received == node.contracts.token.total_supply()
            assert acknowledged * 10**18 <= received <= (acknowledged + 1) * 10**18
            acknowledged = received // 10**18
        finally:
            node.close()


def test_cli_goes_through_the_running_server(home, tmp_path, monkeypatch):
    """While `ledgerlm serve` owns the home, local CLI calls use its API instead of the chain."""
    port = free_port()
    env = {**os.environ, "LEDGERLM_HOME": str(home.root)}
    server = subprocess.Popen([sys.executable, "-m", "ledgerlm", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Start-up imports the ML stack and opens the chain: on a busy two-core machine that takes a while.
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "ledgerlm serve exited before it answered"
            assert time.monotonic() < deadline, "ledgerlm serve did not answer within 120 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/node/info").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        result = subprocess.run([sys.executable, "-m", "ledgerlm", "--json", "chain", "status"],
                                env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert '"kind": "embedded"' in result.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    assert not list(home.running_dir.glob("*.json"))


def test_a_round_another_slasher_numbered_the_same_is_not_taken_for_this_nodes(home, client, carol):
    """Two nodes on one Staking contract both number their validation rounds 1, 2, 3, ...: each records and slashes
    under an outcome id of its own, which carries its address, and the contract refuses anyone else either under
    it. Before, another node (or its stolen key) could record this node's next id with its published evidence and
    slash 1 wei under it: this node took that slash for its own, and its 10 LGR verdict could never be taken."""
    from eth_account import Account

    from ledgerlm.chain import StakeRole
    from ledgerlm.identity.node_keys import unlock_keystore
    from ledgerlm.node import outcome_id

    node = client.http.app.state.node
    staking = node.contracts.staking
    admin = unlock_keystore(home.admin_key_path, os.environ["LEDGERLM_ADMIN_PASSPHRASE"], "admin")
    other = Account.from_key(b"\x43" * 32)  # another node's key on the same contracts
    node.chain.send_eth(admin, other.address, UNIT)
    staking.grant_role(admin, "SLASHER_ROLE", other.address)
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=100 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [staking.address, 100 * UNIT])
    client.chain.send(carol, "Staking", "stake", [0, 100 * UNIT])
    theirs = outcome_id(other.address, 1)  # the other node's own round 1
    staking.record_outcome(other, theirs, b"\xbb" * 32)
    staking.slash(other, theirs, carol.address, StakeRole.VALIDATOR, 1)

    allowed = staking.slashable(carol.address, StakeRole.VALIDATOR)  # the bond's window, less the other's slash
    tx, taken = node._slash(1, "0x" + "aa" * 32, carol.address, StakeRole.VALIDATOR, 10 * UNIT)
    assert tx and taken == min(10 * UNIT, allowed) > 1  # this node's round 1 is its own, not the other's 1 wei
    assert staking.outcome(outcome_id(node.account.address, 1)) == "0x" + "aa" * 32

    mine = outcome_id(node.account.address, 2)
    for attempt in (lambda: staking.record_outcome(other, mine, bytes.fromhex("dd" * 32)),
                    lambda: staking.slash(other, outcome_id(node.account.address, 1), carol.address,
                                          StakeRole.VALIDATOR, 1)):
        with pytest.raises(ChainError) as refused:
            attempt()
        assert refused.value.error_name == "ForeignOutcome"
    node._slash(2, "0x" + "dd" * 32, carol.address, StakeRole.VALIDATOR, UNIT)  # the bond's window is spent
    assert staking.outcome(mine) == "0x" + "dd" * 32  # but its outcome is this node's to record


def _unbound_staking(home, node):
    """This node's contracts with Staking swapped for one deployed as it was compiled before outcome ids carried
    their node: what a deployment made then holds."""
    import json
    from pathlib import Path

    from ledgerlm.chain.abi import Artifact
    from ledgerlm.chain.contracts import StakingClient
    from ledgerlm.identity.node_keys import unlock_keystore

    artifact = Artifact.from_json(json.loads((Path(__file__).parent / "fixtures" / "staking_unbound_outcomes.json")
                                             .read_text()))
    admin = unlock_keystore(home.admin_key_path, os.environ["LEDGERLM_ADMIN_PASSPHRASE"], "admin")
    current = node.contracts.staking
    settings = [current._call(name) for name in ("cooldownSeconds", "slashCapBps", "slashDisputeSeconds",
                                                 "rewardReleaseLimit")]
    address = node.chain.deploy(artifact, node.contracts.token.address, node.contracts.distributor.address,
                                admin.address, *settings, sender=admin)
    staking = StakingClient(node.chain, address, node.contracts.token)
    staking.grant_role(admin, "SLASHER_ROLE", node.account.address)
    node.contracts.staking = staking
    return staking


@pytest.mark.parametrize("scheme", ["bare", "keccak"])
def test_a_slash_begun_under_an_earlier_outcome_id_finishes_under_it(home, client, carol, scheme):
    """A slash whose outcome an earlier version of the node recorded under the bare round id, or under keccak(node,
    round id), finishes under that id: recording it again under today's would slash the same stake twice."""
    from ledgerlm.chain import StakeRole
    from ledgerlm.node import _keccak_outcome_id

    node = client.http.app.state.node
    staking = _unbound_staking(home, node)
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=100 * UNIT)
    staking.stake(carol, StakeRole.VALIDATOR, 100 * UNIT)
    evidence = "0x" + "ab" * 32
    earlier = 7 if scheme == "bare" else _keccak_outcome_id(node.account.address, 7)
    staking.record_outcome(node.account, earlier, bytes.fromhex("ab" * 32))  # what the earlier version recorded
    tx, taken = node._slash(7, evidence, carol.address, StakeRole.VALIDATOR, UNIT)
    assert tx and taken == UNIT and staking.is_slashed(earlier, carol.address, StakeRole.VALIDATOR)
    assert node._slash(7, evidence, carol.address, StakeRole.VALIDATOR, UNIT)[1] == UNIT  # found, not taken again
    assert staking.stake_of(carol.address, StakeRole.VALIDATOR) == 99 * UNIT
