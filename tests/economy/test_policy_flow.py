"""Through the real flow (a Datanet, a tiny model trained and published on it, calls through the OpenAI
route whose receipts the serving engine attributes, epoch closes and claims): a fee policy change prices calls
only from the next epoch, and a withdrawn contribution earns nothing after its withdrawal, within its epoch and
in every later one."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.config import Home
from ledgerlm.economy import FeeShares
from ledgerlm.economy.earnings import earnings
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node

from ..datanets.conftest import publish_qa

THINGS = [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"), ("kelp", "brown"),
          ("crab", "amber"), ("storm", "black"), ("sand", "gold")]
FACTS = [{"question": f"What colour is the {t}?", "answer": f"The {t} is {c}."} for t, c in THINGS]
PRICE = 10**15
PUBLISHED = FeeShares(500, 4000, 4500, 1000)
CHANGED = FeeShares(2500, 2000, 4500, 1000)


@dataclass
class World:
    client: NodeClient
    node: Node
    key: str
    developer: object
    contributors: dict  # address -> account
    consumer: object

    def close(self) -> dict:
        """Close the epoch; the consumer makes a new key (re-signing its standing cap) for the next one."""
        closed = self.node.economy.close()
        self.key, _ = self.client.serving.create_key(self.consumer, 10**18)
        return closed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    root = tmp_path_factory.mktemp("policy-flow")
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.torch_threads = 1
    home.save_config(config)
    consumer = Account.from_key(b"\x15" * 32)
    developer, owner, first, second = (Account.from_key(bytes([i]) * 32) for i in (16, 17, 18, 19))
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:  # the faucet answers only on loopback
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        tiny = tiny_random_model(root / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
        client.factory.register_base("tiny", str(tiny))
        publish_qa(client, root, owner, [(first, FACTS[:4]), (second, FACTS[4:])])
        node = http.app.state.node
        job = client.factory.train(developer, {
            "model_id": "facts", "datanet": "colours", "version": 1, "base": "tiny",
            # lr 1e-2 over 12 steps left the tiny model's answers ("The.") hanging on float rounding, so on some
            # CPUs no answer held a training span to pay by; 48 steps at 3e-3 memorise answers on every seed tried
            "config": {"epochs": 12, "lr": 3e-3, "batch_size": 2, "max_len": 64, "eval_split": 0.0, "rank": 4,
                       "seed": 1, "max_steps": 48},
        })
        done = node.factory.wait(job["id"], timeout=300)
        assert done.state == "done", done.error
        client.factory.publish(developer, "facts", PUBLISHED.to_dict(), price_per_1k=PRICE)
        client.chain.faucet(consumer.address, eth_wei=10**18, tokens=100 * 10**18)
        node.contracts.escrow.deposit(consumer, 10 * 10**18)
        key, _ = client.serving.create_key(consumer, 10**18)
        yield World(client, node, key, developer, {first.address: first, second.address: second}, consumer)


def call(world: World, question: str) -> dict:
    """One chat completion; returns its receipt once attribution has finalised it."""
    answer = world.client._request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"},
                                   json={"model": "facts", "messages": [{"role": "user", "content": question}],
                                         "max_tokens": 8, "temperature": 0})
    receipt_id = answer["x_ledgerlm_receipt"]["id"]
    deadline = time.monotonic() + 120
    while (receipt := world.node.serving.receipts.get(receipt_id)).state != "final":
        assert time.monotonic() < deadline, "attribution did not finish"
        time.sleep(0.1)
    return receipt.model_dump()


def paid(receipt: dict, role: str) -> dict[str | None, int]:
    return {p["account"]: int(p["amount"]) for p in receipt["payouts"] if p["role"] == role}


def test_a_fee_policy_change_prices_calls_only_from_the_next_epoch(world):
    client, node = world.client, world.node
    before = call(world, FACTS[0]["question"])
    change = client.factory.change_fee_policy(world.developer, "facts", CHANGED.to_dict())
    during = call(world, FACTS[1]["question"])  # same epoch, after the change
    assert change["from_epoch"] == during["epoch"] + 1
    announced = {"fee_policy": CHANGED.to_dict(), "from_epoch": change["from_epoch"]}
    _listed_everywhere(world, PUBLISHED, announced)
    registry, model_key = node.contracts.registry, _model_key("facts")
    assert registry.fee_policy_at(model_key, during["epoch"]).developer_bps == PUBLISHED.developer_bps
    assert registry.fee_policy_at(model_key, change["from_epoch"]).developer_bps == CHANGED.developer_bps
    assert registry.scheduled_fee_policy(model_key)[1] == change["from_epoch"]

    closed = world.close()
    after = call(world, FACTS[2]["question"])

    assert before["epoch"] == during["epoch"] == closed["epoch"] < after["epoch"] == change["from_epoch"]
    assert before["fee_policy"] == during["fee_policy"] == PUBLISHED.to_dict()
    assert after["fee_policy"] == CHANGED.to_dict()
    for receipt, shares in ((before, PUBLISHED), (during, PUBLISHED), (after, CHANGED)):
        fee = int(receipt["fee"])
        assert paid(receipt, "developer") == {world.developer.address: fee * shares.developer_bps // 10_000}
    payout = {p["account"]: p for p in client._request("GET", f"/economy/epochs/{closed['epoch']}/payouts")["payouts"]}
    assert int(payout[world.developer.address]["sources"]["roles"]["developer"]) == sum(
        int(r["fee"]) * PUBLISHED.developer_bps // 10_000 for r in (before, during))
    _listed_everywhere(world, CHANGED, None)
    assert registry.fee_policy_at(model_key, after["epoch"]).developer_bps == CHANGED.developer_bps

    with pytest.raises(Exception, match="developer"):  # only the developer may change it
        client.factory.change_fee_policy(next(iter(world.contributors.values())), "facts", PUBLISHED.to_dict())


def _listed_everywhere(world: World, in_force: FeeShares, announced: dict | None) -> None:
    """The OpenAI model list, the factory's model list and show, and the dashboard's model page all show the
    split pricing calls now, and the announced one apart with its epoch."""
    client = world.client
    openai = next(m for m in client._request("GET", "/v1/models")["data"] if m["id"] == "facts")["x_ledgerlm"]
    one = client._request("GET", "/v1/models/facts")["x_ledgerlm"]
    factory = next(m for m in client._request("GET", "/models") if m["id"] == "facts")
    shown = client._request("GET", "/models/facts")
    for listed in (openai, one, factory, shown):
        assert listed["fee_policy"] == in_force.to_dict() and listed["fee_policy_announced"] == announced
    page = client.http.get("/web/models/facts").text
    split = " · ".join(f"{role} {bps / 100:.2f} %" for role, bps in zip(
        ("node", "developer", "contributors", "validators"), in_force.to_dict().values()))
    assert f"{split} in this epoch" in page
    assert ("Announced:" in page) == (announced is not None)
    assert announced is None or f"from epoch {announced['from_epoch']}" in page


def test_a_withdrawn_contribution_earns_nothing_after_its_withdrawal_in_its_epoch_and_later_ones(world):
    client = world.client
    world.close()  # start from an epoch of our own
    earned = next(((r, q) for q in (f["question"] for f in FACTS) if paid(r := call(world, q), "contributor")),
                  None)
    assert earned is not None, "no call was attributed to a contributor"
    before, question = earned
    contributor = max(paid(before, "contributor"), key=paid(before, "contributor").get)
    attributed = {c["contribution_id"] for c in before["attribution"]["contributions"]
                  if c["contributor"] == contributor}
    time.sleep(1.1)  # states and receipts are stamped in whole seconds
    for cid in attributed:
        client.withdraw(cid, world.contributors[contributor])
    time.sleep(1.1)
    after = call(world, question)  # the same answer, attributed to the same (now withdrawn) data
    assert paid(after, "contributor").get(contributor), "the receipt itself still names the contributor"

    closed = world.close()
    payout = client._request("GET", f"/economy/epochs/{closed['epoch']}/payouts")
    sources = next(p["sources"] for p in payout["payouts"] if p["account"] == contributor)
    assert int(sources["roles"]["contributor"]) == paid(before, "contributor")[contributor]  # earned before
    assert before["id"] in sources["receipts"] and after["id"] not in sources["receipts"]  # nothing after
    redirected = [p for p in payout["pools"] if p["kind"] == "redirected" and p["receipt"] == after["id"]]
    assert [int(p["amount"]) for p in redirected if p["account"] == contributor] == [
        paid(after, "contributor")[contributor]]  # its share went to the Datanet's data pool
    everything = len(attributed) == len([c for c in client.contributions("colours") if c.contributor == contributor])
    if everything:
        assert "data_pool" not in sources["roles"]  # and none of the pool comes back to it

    # a later epoch pays the withdrawn data nothing either, for the same answer attributed to it again
    later = call(world, question)
    assert later["epoch"] > closed["epoch"] and paid(later, "contributor").get(contributor)
    next_closed = world.close()
    payout = client._request("GET", f"/economy/epochs/{next_closed['epoch']}/payouts")
    mine = next((p for p in payout["payouts"] if p["account"] == contributor), None)
    assert mine is None or later["id"] not in mine["sources"]["receipts"]
    if everything:
        assert mine is None  # no leaf at all: neither an attributed share nor any of the data pool
    redirected = [p for p in payout["pools"] if p["kind"] == "redirected" and p["receipt"] == later["id"]]
    assert sum(int(p["amount"]) for p in redirected if p["account"] == contributor) == \
        paid(later, "contributor")[contributor]
    # what it earned before the withdrawal stays its own, claimable by proof
    c = world.node.contracts
    earned = next(e for e in earnings(world.node.db, c.distributor, contributor)["epochs"]
                  if e["epoch"] == closed["epoch"])
    held = c.token.balance_of(contributor)
    c.distributor.claim(world.node.account, int(earned["chain_epoch"]), contributor, int(earned["amount"]), earned["proof"])
    assert c.token.balance_of(contributor) == held + int(earned["amount"])


def _model_key(model_id: str) -> bytes:
    from eth_utils import keccak

    return keccak(text=model_id)



def test_a_fee_policy_change_the_chain_missed_is_announced_again_and_a_refused_one_is_taken_back(world,
                                                                                                monkeypatch):
    from ledgerlm.chain import ChainError, FeePolicy

    client, node = world.client, world.node
    registry, key = node.contracts.registry, _model_key("facts")
    change = client.factory.change_fee_policy(world.developer, "facts", PUBLISHED.to_dict())
    # what a node that stopped between committing the change and announcing it leaves: the registry prices that
    # epoch otherwise than the database
    registry.schedule_fee_policy(node.account, key, FeePolicy(**CHANGED.to_dict()), change["from_epoch"])
    assert node.reconcile()["fee_policies"] == 1  # as `ledgerlm serve` runs it at start
    assert registry.fee_policy_at(key, change["from_epoch"]) == FeePolicy(**PUBLISHED.to_dict())
    assert node.reconcile()["fee_policies"] == 0

    def refused(*args, **kwargs):
        raise ChainError("Registry.scheduleFeePolicy reverted", status=400)

    monkeypatch.setattr(registry, "schedule_fee_policy", refused)
    with pytest.raises(LedgerError, match="reverted"):
        client.factory.change_fee_policy(world.developer, "facts", CHANGED.to_dict())
    monkeypatch.undo()
    # the change of this epoch before it stands again, in the database as on chain
    listed = next(m for m in client.factory.models() if m["id"] == "facts")
    assert listed["fee_policy_announced"] == {"fee_policy": PUBLISHED.to_dict(), "from_epoch": change["from_epoch"]}
