"""Revenue shares: issued for a Datanet (by data valuation, plus the owner's share) and for a model; each
epoch's asset revenue reaches the holders at the closing block, so a transfer moves the next payout, and the
holders' payouts sum to the asset's revenue to the base unit."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from ledgerlm.chain.merkle import verify_proof
from ledgerlm.datanets import DatanetSpec
from ledgerlm.economy import open_epoch
from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings
from ledgerlm.economy.payouts import PAYOUT_TYPES
from ledgerlm.economy.verify import chain_holdings, node_holdings, verify_epoch
from ledgerlm.errors import LedgerError
from ledgerlm.money import split_by_weight
from ledgerlm.store.schema import gate_reports, models

from ..datanets.conftest import QA_SCHEMA, write_jsonl
from .helpers import fund_consumer, key, write_receipt

UNIT = 10**18
SUPPLY = 1000 * UNIT


@pytest.fixture
def world(client, alice, bob, carol, tmp_path):
    """Datanet `qa` owned by alice: bob's two records and carol's one accepted in version 1, valued 3:1:2."""
    client.create_datanet(DatanetSpec(name="qa", schema=QA_SCHEMA, owner_share_bps=2500), alice)
    for who, rows in ((bob, [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]),
                      (carol, [{"question": "q3", "answer": "a3"}])):
        client.contribute("qa", [write_jsonl(tmp_path / f"{who.address}.jsonl", rows)], who)
    pending = client.contributions("qa", state="pending")
    client.review_many("qa", [c.id for c in pending], alice, accept=True)
    node = client.http.app.state.node
    with node.db.begin() as conn:
        for c, value in zip(sorted(pending, key=lambda c: c.id), (0.3, 0.1, 0.2)):
            conn.execute(delete(gate_reports).where(gate_reports.c.contribution_id == c.id))
            conn.execute(insert(gate_reports).values(contribution_id=c.id, decision="pass", findings=[],
                                                     value={"value": value}, created_at=0))
    client.publish("qa", alice)
    return node


def test_datanet_shares_follow_valuation_plus_owner_share_and_the_drop_verifies(client, world, alice, bob, carol):
    with pytest.raises(LedgerError, match="only the owner"):
        client.set_owner_share("qa", 1000, bob)
    with pytest.raises(LedgerError, match="may be lowered, not raised to 5000") as raised:
        client.set_owner_share("qa", 5000, alice)  # others contributed under 2500
    assert raised.value.status == 409 and raised.value.field == "ownerBps"
    assert client.set_owner_share("qa", 1000, alice) == {"datanet": "qa", "owner_share_bps": 1000}
    assert client.datanet("qa").owner_share_bps == 1000
    root = client.shares.preview("datanet", "qa", supply=SUPPLY)["allocation_root"]
    mismatch = client._sign(alice, "IssueShares", {"kind": "datanet", "asset": "qa", "version": 0,
                                                   "supply": SUPPLY, "ownerBps": 5000, "allocationRoot": root})
    with pytest.raises(LedgerError, match="ownerBps must be 1000, the owner share the datanet's policy names"):
        client._request("POST", "/shares", json={"action": mismatch, "share_issue_signature": "0x"})
    with pytest.raises(LedgerError, match="only the owner"):  # bob signs the allocation the node shows him
        client.shares.issue(bob, "datanet", "qa", supply=SUPPLY)
    issued = client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    with pytest.raises(LedgerError, match="already issued its shares") as fixed:
        client.set_owner_share("qa", 0, alice)
    assert fixed.value.status == 409 and client.datanet("qa").owner_share_bps == 1000

    leaves = {x["account"]: int(x["amount"]) for x in issued["allocation"]}
    assert sum(leaves.values()) == SUPPLY
    assert leaves[alice.address] == SUPPLY // 10
    assert leaves[bob.address] == 2 * leaves[carol.address]  # bob's 0.3 + 0.1 against carol's 0.2
    for leaf in issued["allocation"]:
        assert verify_proof(issued["allocation_root"], PAYOUT_TYPES, [leaf["account"], int(leaf["amount"])],
                            leaf["proof"])
    token = world.contracts.share_token(issued["token"])
    assert token.total_supply() == SUPPLY and token.balance_of(token.address) == SUPPLY
    assert token.symbol() == "D-QA" and token.decimals() == 18
    with pytest.raises(LedgerError, match="already has shares"):
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)

    client.chain.faucet(bob.address, eth_wei=UNIT)
    client.shares.claim(bob, "qa")
    assert token.balance_of(bob.address) == leaves[bob.address]
    holders = {h["account"]: int(h["balance"]) for h in client.shares.holders("qa")["holders"]}
    assert holders == leaves  # claimed or not, each leaf's shares count for its account


def _publish_model(node, developer: str, model_id: str = "m1") -> None:
    """A fine-tuned model row, registered on chain as `model publish` does."""
    from eth_utils import keccak

    c = node.contracts
    root = node.datanets.version("qa", 1).root
    tx = c.registry.register_model(node.account, keccak(text=model_id), developer, "tiny", "0x" + "11" * 32,
                                   "0x" + "22" * 32, [root], "0x" + "33" * 32, "0x" + "44" * 32).tx_hash
    with node.db.begin() as conn:
        conn.execute(insert(models).values(
            id=model_id, developer=developer, base_model="tiny", datanet="qa", version=1, version_root=root,
            card={}, metrics={}, path="/nowhere", job_id=None, fee_policy=None, chain_tx=tx, created_at=0))


def _claimable(node, account: str, epoch: int) -> int:
    found = [e for e in earnings(node.db, node.contracts.distributor, account)["epochs"] if e["epoch"] == epoch]
    return int(found[0]["amount"]) if found else 0


def test_a_transfer_mid_epoch_moves_the_next_payout_of_a_model(client, world, alice, bob):
    dev, buyer, consumer = key("dev"), key("buyer"), key("consumer")
    _publish_model(world, dev.address)
    issued = client.shares.issue(dev, "model", "m1", supply=SUPPLY)
    assert issued["allocation"][0]["account"] == dev.address and issued["symbol"] == "M-M1"
    fund_consumer(world, consumer, 200 * UNIT, 100 * UNIT)
    client.chain.faucet(dev.address, eth_wei=UNIT)

    write_receipt(world, consumer.address, 10 * UNIT, dev.address, datanet="qa")
    client.shares.transfer(dev, "m1", buyer.address, SUPPLY // 4)  # before epoch 1 closes
    first = world.economy.close()
    write_receipt(world, consumer.address, 6 * UNIT + 1, dev.address, datanet="qa")
    client.shares.transfer(dev, "m1", buyer.address, SUPPLY // 4)  # during epoch 2: half each now
    second = world.economy.close()

    developer_share = (10 * UNIT * 4000 // 10_000, (6 * UNIT + 1) * 4000 // 10_000)
    assert _claimable(world, buyer.address, 1) == developer_share[0] // 4
    assert _claimable(world, dev.address, 1) == developer_share[0] - developer_share[0] // 4
    assert _claimable(world, buyer.address, 2) + _claimable(world, dev.address, 2) == developer_share[1]
    assert abs(_claimable(world, buyer.address, 2) - _claimable(world, dev.address, 2)) <= 1
    shown = client.shares.show("m1")["earnings"]
    assert [e["revenue"] for e in shown["epochs"]] == [str(v) for v in developer_share]
    assert shown["epochs"][0]["per_share"] == str(developer_share[0] * UNIT // SUPPLY)
    for number, summary in ((1, first), (2, second)):
        assert int(summary["total"]) == int(summary["charged"])
        files = published_files(world.db, number, world.contracts)
        holders = chain_holdings(world.contracts.chain, files["payouts"], {"model:m1": client.shares.show("m1")})
        assert verify_epoch(*files.values(), world.contracts.distributor.epoch(world.economy.chain_epoch(number)), holders) == []
        entry = next(p for p in files["payouts"]["payouts"] if p["account"] == buyer.address)
        assert entry["sources"]["roles"] == {"shares": str(_claimable(world, buyer.address, number))}
        assert entry["sources"]["models"] == ["m1"]
    # a payout file that moves one base unit between holders checks out everywhere but against the chain
    pool = next(p for p in files["payouts"]["pools"] if p["kind"] == "shares")
    pool["split"] = {a: str(int(v) + (1 if a == buyer.address else -1)) for a, v in pool["split"].items()}
    for entry in files["payouts"]["payouts"]:
        entry["amount"] = pool["split"].get(entry["account"], entry["amount"])
    problems = verify_epoch(*files.values(), None, holders)
    assert any(p.startswith("shares pool of model:m1: the chain's holders at block") and buyer.address in p
               for p in problems)
    # the buyer claims with the published proof; the distributor pays exactly that
    amount = _claimable(world, buyer.address, 1)
    proof = earnings(world.db, world.contracts.distributor, buyer.address)["epochs"][0]["proof"]
    world.contracts.distributor.claim(world.account, world.economy.chain_epoch(1), buyer.address, amount, proof)
    assert world.contracts.token.balance_of(buyer.address) == amount


def test_shares_sent_to_the_token_itself_are_burned_and_the_close_goes_on(client, world, home):
    """Anyone can send shares to the token contract, where nothing moves them out again: one base unit there
    once stopped every later close. Such shares earn nothing; the others split the revenue to the base unit, and
    with every share burned the revenue goes back to the issuer."""
    dev, buyer, consumer = key("dev"), key("buyer"), key("consumer")
    _publish_model(world, dev.address)
    token = client.shares.issue(dev, "model", "m1", supply=SUPPLY)["token"]
    fund_consumer(world, consumer, 200 * UNIT, 100 * UNIT)
    for who in (dev, buyer):
        client.chain.faucet(who.address, eth_wei=UNIT)
    client.shares.transfer(dev, "m1", buyer.address, SUPPLY // 4)
    client.shares.transfer(dev, "m1", token, SUPPLY // 2 + 1)
    operator = {"Authorization": "Bearer " + home.operator_token_path.read_text().strip()}

    def close_and_check(fee: int, owed_weights: dict[str, int]) -> dict:
        write_receipt(world, consumer.address, fee, dev.address, datanet="qa")
        response = client.http.post("/economy/epochs/close", headers=operator)
        assert response.status_code == 200, response.text
        summary = response.json()
        assert summary["state"] == "published" and int(summary["total"]) == int(summary["charged"])
        files = published_files(world.db, summary["epoch"], world.contracts)
        pool = next(p for p in files["payouts"]["pools"] if p["kind"] == "shares")
        split = {a: int(v) for a, v in pool["split"].items()}
        assert split == split_by_weight(fee * 4000 // 10_000, owed_weights)
        assert sum(split.values()) == int(pool["amount"])
        funding = world.contracts.distributor.epoch(int(summary["chain_epoch"]))
        # `epoch verify` weighs the holders as the close did, read from the chain itself or through the node
        for holders in (chain_holdings(world.contracts.chain, files["payouts"], {"model:m1": client.shares.show("m1")}),
                        node_holdings(client, [pool])):
            assert verify_epoch(*files.values(), funding, holders) == []
        return split

    # the developer keeps a quarter less one unit against the buyer's quarter; the burned half earns nothing
    split = close_and_check(10 * UNIT + 3, {dev.address: SUPPLY // 4 - 1, buyer.address: SUPPLY // 4})
    assert set(split) == {dev.address, buyer.address} and token not in split
    shown = client.shares.holders("m1")
    assert shown["burned"] == str(SUPPLY // 2 + 1)
    assert {h["account"]: int(h["balance"]) for h in shown["holders"]} == {dev.address: SUPPLY // 4 - 1,
                                                                          buyer.address: SUPPLY // 4}
    # every share burned: nobody holds any, so the model's revenue goes back to its developer, the issuer
    client.shares.transfer(dev, "m1", token, SUPPLY // 4 - 1)
    client.shares.transfer(buyer, "m1", token, SUPPLY // 4)
    assert close_and_check(6 * UNIT, {dev.address: 1}) == {dev.address: 6 * UNIT * 4000 // 10_000}
    assert client.shares.holders("m1")["holders"] == [] and client.shares.holders("m1")["burned"] == str(SUPPLY)


@settings(max_examples=3, phases=[Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 10**6)), min_size=1,
                      max_size=6),
       fee=st.integers(1, 10**21))
def test_holder_payouts_sum_to_the_datanet_revenue_to_the_base_unit(client, world, alice, bob, carol, moves, fee):
    """Random transfers among four accounts during an epoch; whatever the balances at the closing block, the
    Datanet's revenue (its data pool) is paid out exactly to its holders."""
    node = world
    if not node.shares.all():
        client.set_owner_share("qa", 2500, alice)
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY + 7)
        for who in (alice, bob, carol, key("dave")):
            client.chain.faucet(who.address, eth_wei=UNIT)
            client.shares.claim(who, "qa")
    people = [alice, bob, carol, key("dave")]
    token = node.contracts.share_token(node.shares.asset("qa").token)
    for src, dst, amount in moves:
        have = token.balance_of(people[src].address)
        if have and src != dst:
            token.transfer(people[src], people[dst].address, min(amount * 10**15, have))
    consumer = key("consumer")
    with node.db.begin() as conn:
        open_epoch(conn)
    spent = node.contracts.escrow.spending_cap(consumer.address, node.account.address).spent  # earlier examples
    fund_consumer(node, consumer, fee, spent + fee)
    write_receipt(node, consumer.address, fee, key("dev").address, datanet="qa")  # no evidence: all pool
    summary = node.economy.close()

    files = published_files(node.db, summary["epoch"], node.contracts)
    pool = next(p for p in files["payouts"]["pools"] if p["kind"] == "shares")
    revenue = sum(int(v) for v in pool["sources"].values())
    assert sum(int(v) for v in pool["split"].values()) == revenue == int(pool["amount"])
    balances = {p.address: token.balance_at(p.address, pool["block"]) for p in people}
    assert sum(balances.values()) == SUPPLY + 7  # every allocation was claimed: balances are the holdings
    expected = split_by_weight(revenue, {a: v for a, v in balances.items() if v})
    assert {a: int(v) for a, v in pool["split"].items()} == expected
    assert int(summary["total"]) == fee
    assert verify_epoch(*files.values(), node.contracts.distributor.epoch(int(summary["chain_epoch"]))) == []


def test_an_issue_cut_off_before_the_chain_is_finished_by_issuing_again(client, world, alice, monkeypatch):
    from ledgerlm.chain import ChainError

    factory = world.contracts.share_factory

    def outage(*args, **kwargs):
        raise ChainError("the chain went away", status=503)

    monkeypatch.setattr(factory, "issue", outage)
    with pytest.raises(LedgerError, match="went away"):
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    with pytest.raises(LedgerError, match="not on chain yet"):
        client.shares.holders("qa")
    monkeypatch.undo()
    with pytest.raises(LedgerError, match="begun with supply") as other_terms:  # finished on the terms first signed
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY // 2)
    assert other_terms.value.status == 409 and other_terms.value.field == "supply"
    issued = client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    assert world.contracts.share_token(issued["token"]).total_supply() == SUPPLY
    assert [a.ref for a in world.shares.all()] == ["datanet:qa"]


def test_shares_value_the_latest_version_and_a_supply_that_leaves_a_holder_out_is_refused(
        client, world, alice, bob, tmp_path):
    client.contribute("qa", [write_jsonl(tmp_path / "more.jsonl", [{"question": "q4", "answer": "a4"}])], bob)
    client.review_many("qa", [c.id for c in client.contributions("qa", state="pending")], alice, accept=True)
    client.publish("qa", alice)  # version 2
    with pytest.raises(LedgerError, match="latest version of qa, 2, not 1") as stale:
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY, version=1)  # would leave bob's new data out
    assert stale.value.field == "version"
    with pytest.raises(LedgerError, match="too small to give each") as tiny:
        client.shares.issue(alice, "datanet", "qa", supply=1)  # once went whole to the largest contributor
    assert tiny.value.field == "supply"
    assert world.shares.all() == []  # nothing recorded for either


def test_a_token_another_issuer_made_for_the_asset_is_refused_before_anything_is_recorded(client, world, alice,
                                                                                         monkeypatch):
    # what a squatting issuer left on chain
    monkeypatch.setattr(world.contracts.share_factory, "share_of", lambda kind, asset_id: "0x" + "11" * 20)
    with pytest.raises(LedgerError, match="did not issue") as refused:
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    assert refused.value.status == 409 and world.shares.all() == []


def test_a_private_datanets_shares_are_read_only_by_its_owner_and_members(client, alice, bob, carol, tmp_path):
    from ledgerlm.client import NodeClient

    issued = _issued_private_vault(client, alice, bob, tmp_path)
    owner = NodeClient(client.http, reader=alice)

    # Anonymous and outside readers learn nothing: not the asset, nor its allocation (the contributors).
    assert [a["asset"] for a in client.http.get("/shares").json()] == []
    for path in ("/shares/datanet:vault", "/shares/datanet:vault/holders"):
        refused = client.http.get(path)
        assert refused.status_code == 401 and bob.address not in refused.text
    with pytest.raises(LedgerError, match="neither its owner nor a member"):
        NodeClient(client.http, reader=carol).shares.show("datanet:vault")
    # The owner and a member read it with a signed read request.
    member = NodeClient(client.http, reader=bob)
    assert {x["account"] for x in member.shares.show("datanet:vault")["allocation"]} == {alice.address, bob.address}
    assert [a["asset"] for a in member.shares.list()] == ["vault"]
    assert owner.shares.holders("datanet:vault")["supply"] == issued["supply"]

    # Nor does the epoch's public payout file: the shares pool of the private Datanet by its amount only.
    node = client.http.app.state.node
    fund_consumer(node, key("consumer"), 100 * UNIT, 100 * UNIT)
    write_receipt(node, key("consumer").address, 10 * UNIT, key("developer").address, datanet="vault")
    number = node.economy.close()["epoch"]
    shown = client.http.get(f"/economy/epochs/{number}/payouts").json()
    vault = [p for p in shown["pools"] if p.get("datanet") == "vault"]
    assert vault and all(p["withheld"] and p["split"] == {} for p in vault) and bob.address not in str(shown["pools"])
    whole = owner._request("GET", f"/economy/epochs/{number}/payouts")
    assert bob.address in str(whole["pools"])
    funding = node.contracts.distributor.epoch(node.economy.chain_epoch(number))
    receipts = published_files(node.db, number, node.contracts)["receipts"]
    assert verify_epoch(shown, receipts, funding) == [] and verify_epoch(whole, receipts, funding) == []


def test_an_infinite_valuation_score_is_no_weight(client, world, bob, carol):
    from ledgerlm.economy.pools import valuation_weights

    node = world
    if node.db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's JSON type refuses Infinity, so no such score can be stored there")
    with node.db.begin() as conn:
        first = conn.execute(gate_reports.select().order_by(gate_reports.c.contribution_id)).mappings().first()
        conn.execute(gate_reports.update().where(gate_reports.c.contribution_id == first["contribution_id"])
                     .values(value={"value": float("inf")}))
    with node.db.connect() as conn:
        weights = valuation_weights(conn, "qa", 1)
    assert all(0 < w < 10**12 for w in weights.values()) and carol.address in weights


def test_an_owner_share_of_the_whole_supply_gives_the_owner_all_of_it(client, alice, bob, tmp_path):
    client.create_datanet(DatanetSpec(name="mine", schema=QA_SCHEMA, owner_share_bps=10_000), alice)
    client.contribute("mine", [write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "a"}])], bob)
    client.review_many("mine", [c.id for c in client.contributions("mine", state="pending")], alice, accept=True)
    client.publish("mine", alice)
    issued = client.shares.issue(alice, "datanet", "mine", supply=SUPPLY)
    assert {x["account"]: int(x["amount"]) for x in issued["allocation"]} == {alice.address: SUPPLY}


def test_a_private_datanet_s_share_token_does_not_publish_its_name(client, alice, bob, tmp_path):
    """A private Datanet is on chain only as the hash of its name: its share token, which anyone can read off a
    public chain, is named after that hash, not the name."""
    _issued_private_vault(client, alice, bob, tmp_path)
    node = client.http.app.state.node
    del client.http.headers["Authorization"]
    assert client.http.get("/shares/datanet:vault").status_code == 401  # the API withholds it ...

    # and a plain chain reader (what anyone has on a public chain) does not read it off the token either
    chain = node.contracts.chain
    w3 = chain.w3
    factory = node.contracts.share_factory
    logs = factory.contract.events["SharesIssued"]().get_logs(from_block=0)
    token = logs[-1]["args"]["token"]
    erc20 = w3.eth.contract(address=token, abi=[
        {"name": "name", "type": "function", "inputs": [], "outputs": [{"type": "string"}], "stateMutability": "view"},
        {"name": "symbol", "type": "function", "inputs": [], "outputs": [{"type": "string"}], "stateMutability": "view"}])
    name, symbol = erc20.functions.name().call(), erc20.functions.symbol().call()
    tx = w3.eth.get_transaction(logs[-1]["transactionHash"])
    assert "vault" not in name.lower() and "VAULT" not in symbol and b"vault" not in bytes(tx["input"]).lower()
    assert name.startswith("ledgerlm datanet 0x") and symbol.startswith("D-")


def test_a_long_asset_name_still_gets_a_share_token(client, alice, bob, tmp_path):
    """The token's permit domain takes a name of at most 31 bytes: a longer one is cut, not refused on chain."""
    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.economy.shares import TOKEN_NAME_BYTES

    from ..datanets.conftest import QA_SCHEMA, write_jsonl

    name = "harbour-facts-of-the-north-coast"
    client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA), alice)
    client.contribute(name, [write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "a"}])], bob)
    client.review_many(name, [c.id for c in client.contributions(name)], alice, accept=True)
    client.publish(name, alice)
    issued = client.shares.issue(alice, "datanet", name, supply=10**24)
    token = client.http.app.state.node.contracts.share_token(issued["token"])
    shown = token.contract.functions.name().call()
    assert len(shown.encode()) <= TOKEN_NAME_BYTES and shown.startswith("ledgerlm datanet harbour")


def _issued_private_vault(client, alice, bob, tmp_path) -> dict:
    """alice's private Datanet `vault` (10% owner share) of one record of bob's, a member, with its shares issued."""
    from ledgerlm.client import NodeClient

    client.create_datanet(DatanetSpec(name="vault", schema=QA_SCHEMA, visibility="private", owner_share_bps=1000),
                          alice)
    client.add_member("vault", bob.address, alice)
    client.contribute("vault", [write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "answer": "a"}])], bob)
    owner = NodeClient(client.http, reader=alice)
    client.review_many("vault", [c.id for c in owner.contributions("vault")], alice, accept=True)
    client.publish("vault", alice)
    client.set_owner_share("vault", 1000, alice)
    return client.shares.issue(alice, "datanet", "vault", supply=SUPPLY)


def test_an_owner_who_also_contributed_gets_both_parts_however_their_address_is_spelt(client, world, alice, bob):
    from ledgerlm.economy.shares import allocation

    with world.db.connect() as conn:
        split = allocation(conn, "datanet", "qa", 1, bob.address.lower(), SUPPLY, 2500)
    assert sum(split.values()) == SUPPLY and split[bob.address] > SUPPLY // 4
