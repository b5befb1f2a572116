"""Paid access to a private Datanet: the node refuses a training job that did not pay the owner's price, takes
it from the developer's escrow when it did, records the licence in the model's lineage, and pays it to the
Datanet's share holders at the epoch close."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from ledgerlm.client import NodeClient
from ledgerlm.datanets import DatanetSpec
from ledgerlm.economy.close import published_files
from ledgerlm.economy.earnings import earnings
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.errors import LedgerError
from ledgerlm.money import split_by_weight
from ledgerlm.store.schema import training_jobs

from ..datanets.conftest import QA_SCHEMA, write_jsonl
from .helpers import slow_chain

pytest.importorskip("torch")

UNIT = 10**18
PRICE = 3 * UNIT + 1
ROWS = [{"question": f"What is {i}?", "answer": f"It is {i}."} for i in range(4)]


@pytest.fixture
def private(client, alice, bob, carol, tmp_path):
    """alice's private Datanet `vault` with bob's data in version 1, carol a member, training priced."""
    from ledgerlm.factory import tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", [str(r) for r in ROWS])))
    client.create_datanet(DatanetSpec(name="vault", schema=QA_SCHEMA, visibility="private", owner_share_bps=2000),
                          alice)
    client.add_member("vault", bob.address, alice)
    client.add_member("vault", carol.address, alice)
    client.contribute("vault", [write_jsonl(tmp_path / "b.jsonl", ROWS)], bob)
    client.review_many("vault", [c.id for c in _as(client, alice).contributions("vault")], alice, accept=True)
    client.publish("vault", alice)
    client.set_access_price("vault", PRICE, alice, version=1)
    node = client.http.app.state.node
    node.factory.observe_training = None  # the attribution index plays no part in paying for access
    return node


def _as(client, reader):
    return NodeClient(client.http, reader=reader)


def _train(client, who, pay=None, model_id="vault-tiny"):
    return client.factory.train(who, {"model_id": model_id, "datanet": "vault", "version": 1, "base": "tiny",
                                      "config": {"epochs": 1, "max_steps": 1, "batch_size": 2, "max_len": 32,
                                                 "eval_split": 0.25, "rank": 2}}, pay=pay)


def _deposited(client, contracts, who) -> None:
    """`who` holds 10 LGR in escrow and gives the node a standing cap of all of it."""
    client.chain.faucet(who.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(who, "LedgerToken", "approve", [contracts.escrow.address, 10 * UNIT])
    client.chain.send(who, "PaymentEscrow", "deposit", [10 * UNIT])
    client.ensure_spending_cap(who, 10 * UNIT)


def _jobs(node) -> int:
    with node.db.connect() as conn:
        return len(conn.execute(select(training_jobs.c.id)).all())


def test_a_job_that_did_not_pay_is_refused_and_a_paid_one_credits_the_holders(client, private, alice, bob, carol):
    node = private
    c = node.contracts
    assert _as(client, carol).access_prices("vault")["versions"] == {"1": str(PRICE)}
    with pytest.raises(LedgerError, match=r"\(3000000000000000001 base units\)") as refused:
        _train(client, carol)
    assert refused.value.status == 402 and _jobs(node) == 0
    with pytest.raises(LedgerError, match="holds nothing of .* deposit first") as empty:
        _train(client, carol, pay=PRICE)  # signed, but nothing deposited: the node relays no cap for it
    assert empty.value.status == 402 and _jobs(node) == 0

    client.set_owner_share("vault", 2000, alice)
    client.shares.issue(alice, "datanet", "vault", supply=100 * UNIT)
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    with pytest.raises(LedgerError, match="signs for only"):
        _train(client, carol, pay=PRICE - 1)
    assert _jobs(node) == 0
    job = _train(client, carol, pay=5 * UNIT)
    assert c.escrow.balance_of(carol.address) == 10 * UNIT - PRICE  # the price, not the most carol allowed
    assert job["licence"]["amount"] == str(PRICE) and job["licence"]["epoch"] == 1
    done = node.factory.wait(job["id"], timeout=300)
    assert done.state == "done", done.error
    model = client.factory.model("vault-tiny", reader=carol)  # unpublished, it is as private as its Datanet
    lineage = json.loads((Path(model["path"]) / "lineage.json").read_text())
    assert lineage["licence"]["tx"] == job["licence"]["tx"] and model["card"]["licence"]["amount"] == str(PRICE)
    assert model["lineage_ok"]
    assert client.http.get("/web/models/vault-tiny").status_code == 401
    # Published, the model's page is open to anyone; the private Datanet's contributions and contributors are not on it.
    client.factory.publish(carol, "vault-tiny")
    page = client.http.get("/web/models/vault-tiny")
    assert page.status_code == 200 and "Not listed" in page.text
    assert bob.address not in page.text and "/web/contributions/" not in page.text
    assert node.datanets.access_price("vault", 1, alice.address) == 0  # the owner trains on her data for free

    summary = node.economy.close()
    assert int(summary["total"]) == PRICE and c.distributor.epoch(node.economy.chain_epoch(1)).total == PRICE
    paid = {a: int(earnings(node.db, c.distributor, a)["epochs"][0]["amount"]) for a in (alice.address, bob.address)}
    assert paid == split_by_weight(PRICE, {alice.address: 20 * UNIT, bob.address: 80 * UNIT})
    files = published_files(node.db, 1, c)
    assert verify_epoch(*files.values(), c.distributor.epoch(node.economy.chain_epoch(1))) == []
    shares = next(p for p in files["payouts"]["pools"] if p["kind"] == "shares")
    assert shares["sources"] == {"access": str(PRICE)}


def test_export_of_a_priced_version_needs_a_licence_paid_once(client, private, alice, bob, carol, tmp_path):
    """Exporting a priced private version is refused until the reader pays; the licence is theirs to export
    again without paying again; training is a licence of its own; the payment is the Datanet's revenue."""
    node = private
    c = node.contracts
    as_carol = _as(client, carol)
    with pytest.raises(LedgerError, match=r"\(3000000000000000001 base units\) to export") as refused:
        as_carol.export("vault", 1, "jsonl", tmp_path / "v1.jsonl")
    assert refused.value.status == 402 and not (tmp_path / "v1.jsonl").exists()
    assert _as(client, alice).export("vault", 1, "jsonl", tmp_path / "own.jsonl")["bytes"] > 0  # owner: free
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    with pytest.raises(LedgerError, match="signs for only"):
        client.buy_export_licence("vault", 1, carol, PRICE - 1)
    licence = client.buy_export_licence("vault", 1, carol, 5 * UNIT)
    assert licence["purpose"] == "export" and licence["amount"] == str(PRICE)
    assert client.buy_export_licence("vault", 1, carol, 5 * UNIT) == licence  # held: nothing debited again
    for _ in range(2):
        assert as_carol.export("vault", 1, "jsonl", tmp_path / "v1.jsonl")["bytes"] > 0
    assert c.escrow.balance_of(carol.address) == 10 * UNIT - PRICE
    assert len((tmp_path / "v1.jsonl").read_text().splitlines()) == len(ROWS)
    with pytest.raises(LedgerError, match="to train on"):
        _train(client, carol)  # the export licence is not a training licence

    summary = node.economy.close()
    assert int(summary["total"]) == PRICE  # the Datanet's revenue: its owner's pool, no shares issued
    files = published_files(node.db, 1, c)
    assert [p["purpose"] for p in files["payouts"]["access_payments"]] == ["export"]
    assert verify_epoch(*files.values(), c.distributor.epoch(node.economy.chain_epoch(1))) == []


def test_a_training_licence_covers_later_jobs_on_the_same_version(client, private, carol):
    node = private
    c = node.contracts
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    first = _train(client, carol, pay=5 * UNIT, model_id="vault-a")
    again = _train(client, carol, model_id="vault-b")  # no --pay: the licence already held covers it
    assert again["licence"] == first["licence"] and c.escrow.balance_of(carol.address) == 10 * UNIT - PRICE
    for job in (first, again):
        assert node.factory.wait(job["id"], timeout=300).state == "done"


def test_one_standing_cap_bounds_calls_and_paid_access_together(client, private, carol):
    """A consumer cannot spend a cap twice: calls not settled yet come first when access is paid from it, and
    access already paid leaves less of it for calls."""
    from .helpers import write_receipt

    node = private
    c = node.contracts
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    write_receipt(node, carol.address, 2 * UNIT, carol.address)  # a call this epoch, charged at the close
    with pytest.raises(LedgerError, match="owed for calls not settled yet") as refused:
        client.buy_export_licence("vault", 1, carol, PRICE + UNIT)  # the cap covers the price, not the call too
    assert refused.value.status == 402 and c.escrow.balance_of(carol.address) == 10 * UNIT
    assert client.buy_export_licence("vault", 1, carol, PRICE + 2 * UNIT)["amount"] == str(PRICE)

    key, _ = client.serving.create_key(carol, PRICE + 3 * UNIT)  # a new standing cap, replacing the first
    budget = client.serving.budget(key)
    # the paid access is on chain already, in what the cap spent this period
    assert budget["spent"] == str(PRICE) and int(budget["remaining"]) == UNIT  # cap - access - calls
    summary = node.economy.close()  # the call and the access are both paid, within the one cap
    assert int(summary["total"]) == PRICE + 2 * UNIT


def test_an_agents_policy_holds_for_paid_access_too(client, private, alice, carol):
    """carol is an agent alice owns: paying for access is refused while paused and beyond the budget, and what it
    pays counts against the budget its calls share."""
    from ledgerlm.agents.policy import AgentPolicy, policy_message

    c = private.contracts
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    client.agents.set_policy(alice, carol.address, policy_message(AgentPolicy(budget=PRICE - 1, paused=True)),
                             bind=carol)
    with pytest.raises(LedgerError, match="paused by its owner"):
        client.buy_export_licence("vault", 1, carol, 5 * UNIT)
    client.agents.set_paused(alice, carol.address, False)
    with pytest.raises(LedgerError, match="budget") as refused:
        client.buy_export_licence("vault", 1, carol, 5 * UNIT)
    assert refused.value.field == "budget" and c.escrow.balance_of(carol.address) == 10 * UNIT
    # the Datanets and actions the policy allows bind paid access as they bind calls
    for refusing, rule in ((AgentPolicy(budget=PRICE + 1, allow_datanets=["other"]), "allow_datanets"),
                           (AgentPolicy(budget=PRICE + 1, actions=["search", "call_model"]), "actions")):
        client.agents.set_policy(alice, carol.address, policy_message(refusing))
        with pytest.raises(LedgerError) as refused:
            client.buy_export_licence("vault", 1, carol, 5 * UNIT)
        assert refused.value.field == rule and c.escrow.balance_of(carol.address) == 10 * UNIT
    client.agents.set_policy(alice, carol.address, policy_message(AgentPolicy(budget=PRICE + 1,
                                                                              allow_datanets=["vault"])))
    assert client.buy_export_licence("vault", 1, carol, 5 * UNIT)["amount"] == str(PRICE)
    assert client.agents.standing(carol.address)["spent"] == str(PRICE)


# Several nodes share one database only on PostgreSQL.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_another_nodes_close_waits_for_a_payment_in_flight_then_pays_it(client, private, carol):
    """Two nodes on one database: a close that another node starts while a payment's chunk is on its way to the
    chain waits for it, then pays it out; it never plans without a payment that then lands (its root could
    never be posted: the chain would hold more than it planned)."""
    import threading

    from ledgerlm.economy import EpochCloser
    from ledgerlm.economy.access import ACCESS_CHUNK_BASE

    node = private
    c = node.contracts
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    other = EpochCloser(node.db, c, node.account, node.home.epochs)  # another process: a lock of its own
    real_settle, seen = c.escrow.settle, {}

    def settle(account, epoch, chunk, debits):
        if chunk >= ACCESS_CHUNK_BASE and "close" not in seen:  # the payment's chunk, about to be sent
            seen["close"] = threading.Thread(target=lambda: seen.setdefault("summary", other.close()))
            seen["close"].start()
            seen["close"].join(timeout=2.0)
            seen["waited"] = seen["close"].is_alive()
        return real_settle(account, epoch, chunk, debits)

    c.escrow.settle = settle
    try:
        licence = client.buy_export_licence("vault", 1, carol, 5 * UNIT)
    finally:
        c.escrow.settle = real_settle
    seen["close"].join(timeout=120)
    assert seen["waited"], "the other node's close ran while the payment was in flight"
    assert licence["amount"] == str(PRICE) and int(seen["summary"]["total"]) == PRICE
    files = published_files(node.db, 1, c)
    assert verify_epoch(*files.values(), c.distributor.epoch(node.economy.chain_epoch(1))) == []


def test_a_payment_the_chain_mines_late_is_taken_once_and_closed_with_its_epoch(client, private, carol):
    """A slow chain: the escrow payment is sent but not mined within the node's wait. It stays pending rather than
    failed: asking again charges nothing more, the close waits for it instead of planning without it (its root
    could then never be posted), and once it is mined the licence is held and the close pays it out."""
    node = private
    c = node.contracts
    _deposited(client, c, carol)
    with slow_chain(node):  # leaving it, the payment lands after all
        with pytest.raises(LedgerError, match="not mined yet") as slow:
            client.buy_export_licence("vault", 1, carol, 5 * UNIT)
        assert slow.value.status == 504 and slow.value.field == "payment"
        with pytest.raises(LedgerError, match="paying now") as again:
            client.buy_export_licence("vault", 1, carol, 5 * UNIT)
        assert again.value.status == 409
        with pytest.raises(LedgerError, match="not mined yet") as waits:
            node.economy.close()
        assert waits.value.status == 409

    assert client.buy_export_licence("vault", 1, carol, 5 * UNIT)["amount"] == str(PRICE)  # held: no second debit
    assert c.escrow.balance_of(carol.address) == 10 * UNIT - PRICE
    summary = node.economy.close()
    assert int(summary["total"]) == PRICE and summary["state"] == "published"
    files = published_files(node.db, 1, c)
    assert verify_epoch(*files.values(), c.distributor.epoch(node.economy.chain_epoch(1))) == []


def test_a_payment_not_mined_yet_takes_its_room_under_the_cap_from_the_next_payment(client, private, carol):
    """Until it lands, a pending payment is in neither the cap's `spent` nor out of the escrow on chain; a second
    payment the cap has no room for beside it is refused (before, it was admitted and the cap over-committed)."""
    node = private
    c = node.contracts
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    client.ensure_spending_cap(carol, PRICE + PRICE // 2)  # room for one payment, not two
    with slow_chain(node):
        with pytest.raises(LedgerError, match="not mined yet") as slow:
            client.buy_export_licence("vault", 1, carol, PRICE)
        assert slow.value.status == 504
        with pytest.raises(LedgerError, match=f"{PRICE} paid in transactions not mined yet") as refused:
            _train(client, carol, pay=PRICE)
        assert refused.value.status == 402 and refused.value.field == "payment"
        assert _jobs(node) == 0

    assert client.buy_export_licence("vault", 1, carol, PRICE)["amount"] == str(PRICE)  # landed, taken once
    assert c.escrow.spending_cap(carol.address, node.account.address).spent == PRICE


def test_a_payment_refused_before_it_was_sent_fails_at_once_even_while_other_transactions_wait(
        client, private, carol, monkeypatch):
    """Only "sent but not mined" leaves a payment pending: one the chain refused before sending (a revert found
    while estimating gas) fails with 402 and frees its room under the cap, whatever else the node has in flight."""
    from ledgerlm.chain import ChainError
    from ledgerlm.store.schema import access_payments

    node = private
    c = node.contracts
    _deposited(client, c, carol)

    def refused(*_args, **_kwargs):
        raise ChainError("PaymentEscrow.settle reverted: CapExceeded(...)", reason="CapExceeded")

    monkeypatch.setattr(node.chain, "in_flight", lambda _address: True)
    monkeypatch.setattr(c.escrow, "settle", refused)
    with pytest.raises(LedgerError, match="refused the payment") as failed:
        client.buy_export_licence("vault", 1, carol, 5 * UNIT)
    assert failed.value.status == 402
    with node.db.connect() as conn:
        assert conn.execute(select(access_payments.c.state)).scalars().all() == ["failed"]
    monkeypatch.undo()
    assert client.buy_export_licence("vault", 1, carol, 5 * UNIT)["amount"] == str(PRICE)  # nothing left in the way


def test_a_price_s_version_is_checked_for_the_owner_only_and_named_when_out_of_range(client, private, alice, carol):
    """Which versions a private Datanet has is for those who may read it: anyone else's signed price is refused as
    not the owner's, whatever version it names."""
    with pytest.raises(LedgerError) as stranger:
        client.set_access_price("vault", 5, carol, version=99)
    assert stranger.value.status == 403 and stranger.value.field == "owner"
    with pytest.raises(LedgerError) as unknown:
        client.set_access_price("vault", 5, alice, version=99)
    assert unknown.value.status == 404
    with pytest.raises(LedgerError) as past:
        client.set_access_price("vault", 5, alice, version=2**63)
    assert past.value.status == 400 and past.value.field == "version"


def test_who_paid_for_access_to_a_private_datanet_is_shown_only_to_its_readers(client, private, alice, carol):
    """An epoch's records are public; a member's paid access to a private Datanet is the members' business: to
    anyone else it shows by Datanet and amount only, and the payout file shown so still verifies."""
    node = private
    c = node.contracts
    client.chain.faucet(carol.address, eth_wei=UNIT, tokens=10 * UNIT)
    client.chain.send(carol, "LedgerToken", "approve", [c.escrow.address, 10 * UNIT])
    client.chain.send(carol, "PaymentEscrow", "deposit", [10 * UNIT])
    client.buy_export_licence("vault", 1, carol, 5 * UNIT)
    node.economy.close()
    stranger = NodeClient(client.http.__class__(app=client.http.app, base_url=str(client.http.base_url)))
    for route in ("/economy/epochs", "/economy/epochs/1", "/economy/epochs/1/payouts"):
        shown = stranger.http.get(route)
        assert shown.status_code == 200 and carol.address not in shown.text and '"export"' not in shown.text, route
    payouts = stranger.http.get("/economy/epochs/1/payouts").json()
    assert payouts["access_payments"] == [{"datanet": "vault", "amount": str(PRICE), "withheld": True}]
    receipts = stranger.http.get("/economy/epochs/1/receipts").json()
    assert verify_epoch(payouts, receipts, c.distributor.epoch(node.economy.chain_epoch(1))) == []
    member = _as(client, alice)._request("GET", "/economy/epochs/1")
    assert [p["purpose"] for p in member["access_payments"]] == ["export"]
    page = stranger.http.get("/web/economy/epochs/1").text
    assert carol.address not in page
