"""Several nodes writing one database at once lose no update: nonces, contribution states, upload ids, spending
holds, agent budgets, reputation and the open epoch.

Each "node" is a `Node.open` of the same home with its own engine and connections, run on its own thread; a
barrier starts them together, as several node processes sharing one PostgreSQL would. (On SQLite every write
transaction holds the whole database, so writers there take turns by construction.)
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from eth_account import Account
from sqlalchemy import delete, func, insert, select

from ledgerlm.chain import PendingAmount, SpendingAllowance
from ledgerlm.datanets import DatanetSpec, FileEntry, IncomingFile, manifest_hash
from ledgerlm.economy import open_epoch
from ledgerlm.errors import LedgerError
from ledgerlm.identity import sign_action
from ledgerlm.node import Node
from ledgerlm.serving.budget import Budget
from ledgerlm.serving.errors import PaymentRequiredError
from ledgerlm.serving.keys import ApiKey
from ledgerlm.store.schema import (
    agent_policies,
    contribution_events,
    contributions,
    epochs,
    reputation,
    reputation_history,
    signed_actions,
)
from ledgerlm.validation.reputation import NEUTRAL_BPS
from ledgerlm.validation.reputation import update as update_reputation
from tests.datanets.conftest import QA_SCHEMA

NODES = 4
pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def nodes(home):
    opened = [Node.open(home) for _ in range(NODES)]
    yield opened
    for node in opened:
        node.close()


def together(nodes, work):
    """Run work(node, i) on every node at once; returns each result or the LedgerError it raised."""
    barrier = threading.Barrier(len(nodes))

    def run(i):
        barrier.wait()
        try:
            return work(nodes[i], i)
        except LedgerError as exc:
            return exc

    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(run, range(len(nodes))))


def upload(node, account, name, records):
    """A signed upload of `records` and the call that stores it on `node`."""
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    entry = FileEntry(name="part.jsonl", sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    signed = sign_action(account, "Contribute", {"datanet": name, "manifestHash": manifest_hash([entry])},
                         domain=node.domain)
    return signed, lambda: node.datanets.contribute(name, signed, [IncomingFile("part.jsonl", io.BytesIO(body))])


@pytest.fixture
def qa(nodes, alice):
    node = nodes[0]
    spec = DatanetSpec(name="qa", schema=QA_SCHEMA, tags=["test"])
    node.datanets.create(spec, sign_action(alice, "CreateDatanet", {"name": "qa", "specHash": spec.spec_hash()},
                                           domain=node.domain))
    return "qa"


def test_uploads_on_every_node_get_disjoint_consecutive_ids_and_one_signature_counts_once(nodes, qa, alice):
    contributors = [Account.from_key(bytes([10 + i]) * 32) for i in range(NODES)]
    uploads = [upload(nodes[i], contributors[i], qa,
                      [{"question": f"q{i}-{j}?", "answer": f"a{j}"} for j in range(300)]) for i in range(NODES)]
    receipts = together(nodes, lambda node, i: uploads[i][1]())
    assert not [r for r in receipts if isinstance(r, Exception)]
    seen: set[int] = set()
    with nodes[0].db.connect() as conn:
        for receipt in receipts:
            ids = conn.execute(select(contributions.c.id).where(contributions.c.upload_id == receipt.upload_id)
                               .order_by(contributions.c.id)).scalars().all()
            assert ids == list(range(receipt.first_contribution_id, receipt.first_contribution_id + 300))
            assert not seen & set(ids)
            seen |= set(ids)

    # the same signed upload sent to every node at once: stored once, the others are replays
    records = [{"question": "shared?", "answer": "once"}]
    signed, _ = upload(nodes[0], alice, qa, records)
    body = b"".join(orjson.dumps(r) + b"\n" for r in records)
    results = together(nodes, lambda node, i: node.datanets.contribute(
        qa, signed, [IncomingFile("part.jsonl", io.BytesIO(body))]))
    stored = [r for r in results if not isinstance(r, Exception)]
    assert len(stored) == 1
    assert all("already used" in str(r) or "already in Datanet" in str(r) for r in results if r not in stored)
    with nodes[0].db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(signed_actions)
                            .where(signed_actions.c.nonce == str(signed.message["nonce"]))).scalar() == 1


def test_one_review_wins_when_every_node_reviews_the_same_contribution(nodes, qa, alice, bob):
    _, store = upload(nodes[0], bob, qa, [{"question": "q?", "answer": "a"}])
    cid = store().first_contribution_id
    reviews = [sign_action(alice, "ReviewContribution", {"contributionId": cid, "accept": i % 2 == 0,
                                                         "reason": f"node {i}"}, domain=nodes[0].domain)
               for i in range(NODES)]
    results = together(nodes, lambda node, i: node.datanets.review(cid, reviews[i]))
    won = [r for r in results if not isinstance(r, Exception)]
    assert len(won) == 1
    assert all("is accepted" in str(r) or "is rejected" in str(r) for r in results if r not in won)
    with nodes[0].db.connect() as conn:
        events = conn.execute(select(contribution_events.c.state, contribution_events.c.reason)
                              .where(contribution_events.c.contribution_id == cid)).all()
    assert [e.state for e in events] == [won[0].state]  # one transition, recorded once
    assert events[0].reason == won[0].reason


class FixedEscrow:
    """The escrow as these tests fix it: a standing cap of `cap` with nothing settled yet, and a balance; what is
    under test is how nodes sharing one database hold spending, not the chain."""

    def __init__(self, cap: int, balance: int):
        self.cap, self.balance = cap, balance

    def spending_cap(self, consumer: str, settler: str) -> SpendingAllowance:
        return SpendingAllowance(self.cap, 1, 0, int(time.time()) + 3600)

    def balance_of(self, consumer: str) -> int:
        return self.balance

    def pending_withdrawal(self, consumer: str) -> PendingAmount:
        return PendingAmount(0, 0)


def _consumer_key(node, consumer: str, cap: int) -> ApiKey:
    with node.db.begin() as conn:
        epoch = open_epoch(conn)
    return ApiKey(id=1, prefix="sk-lgr-test", consumer=consumer, settler=node.account.address, epoch=epoch,
                  cap=str(cap), nonce=1, deadline=int(time.time()) + 3600, signature="0x", created_at=int(time.time()))


def test_calls_admitted_on_every_node_never_hold_more_than_the_cap_or_the_escrow(nodes, carol):
    cost, attempts = 1_000, 6
    key = _consumer_key(nodes[0], carol.address, cap=10 * cost)
    budgets = [Budget(node.db, node.account.address, FixedEscrow(10 * cost, 13 * cost)) for node in nodes]

    def spend(node, i):
        admitted = 0
        for _ in range(attempts):
            try:
                budgets[i].reserve(key, cost, "a call")
                admitted += 1
            except PaymentRequiredError:
                pass
        return admitted

    assert sum(together(nodes, spend)) == 10  # 24 tries, room for exactly 10 under the cap
    assert budgets[0].remaining(key)["reserved"] == str(10 * cost)


def test_an_agents_budget_holds_across_nodes(nodes, carol):
    cost = 1_000
    key = _consumer_key(nodes[0], carol.address, cap=100 * cost)
    now = int(time.time())
    with nodes[0].db.begin() as conn:
        action = conn.execute(insert(signed_actions).values(
            action="BindAgent", signer=carol.address, nonce="1", deadline=now + 60, chain_id=1337, message={},
            signature="0x", created_at=now)).inserted_primary_key[0]
        conn.execute(insert(agent_policies).values(
            agent=carol.address, owner=carol.address, policy={"budget": str(7 * cost), "per_epoch": False,
                                                               "allow_models": [], "allow_datanets": [],
                                                               "max_price_per_1k": None, "actions": ["call_model"]},
            paused=False, bind_action_id=action, action_id=action, created_at=now, updated_at=now))
    budgets = [Budget(node.db, node.account.address, FixedEscrow(100 * cost, 100 * cost)) for node in nodes]

    def spend(node, i):
        admitted = 0
        for _ in range(4):
            try:
                budgets[i].reserve(key, cost, "a call", lambda held: node.agent_policies.check_spend(
                    carol.address, "m", 0, cost, held))
                admitted += 1
            except LedgerError:
                pass
        return admitted

    assert sum(together(nodes, spend)) == 7  # 16 tries, a budget for 7


def test_reputation_moves_once_per_outcome_whichever_node_records_it(nodes, bob):
    outcome, each = 10_000, 5
    together(nodes, lambda node, i: [node.validation._bump(bob.address, "validator", outcome, None)
                                     for _ in range(each)])
    expected = NEUTRAL_BPS
    for _ in range(NODES * each):
        expected = update_reputation(expected, outcome)
    with nodes[0].db.connect() as conn:
        assert conn.execute(select(reputation.c.bps).where(reputation.c.address == bob.address)).scalar() == expected
        assert conn.execute(select(func.count()).select_from(reputation_history)).scalar() == NODES * each


def test_nodes_opening_the_first_epoch_together_open_one(nodes):
    with nodes[0].db.begin() as conn:
        conn.execute(delete(epochs))

    def opened(node, i):
        with node.db.begin() as conn:
            return open_epoch(conn)

    assert together(nodes, opened) == [1] * NODES
    with nodes[0].db.connect() as conn:
        assert conn.execute(select(epochs.c.number, epochs.c.state)).all() == [(1, "open")]
