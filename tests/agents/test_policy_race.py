"""Two requests registering an agent's first policy at the same moment: one binds it, the other becomes a change of
that policy by the same owner (or a refusal for another owner), never a server error."""

from __future__ import annotations

import os
import threading

import pytest
from eth_account import Account

from ledgerlm.agents import AgentPolicies, AgentPolicy, policy_message
from ledgerlm.errors import AuthError
from ledgerlm.identity import SigningDomain
from ledgerlm.identity.actions import sign_action
from ledgerlm.store import Database
from ledgerlm.store.schema import agent_policies, signed_actions
from tests.postgres import TEMPLATE

DOMAIN = SigningDomain(1337)
AGENT = Account.from_key(b"\x21" * 32)
OWNERS = [Account.from_key(b"\x22" * 32), Account.from_key(b"\x23" * 32)]


def _first_policy(owner, budget: int):
    signed = sign_action(owner, "SetAgentPolicy", {"agent": AGENT.address, **policy_message(AgentPolicy(budget=budget))},
                         domain=DOMAIN)
    binding = sign_action(AGENT, "BindAgent", {"owner": owner.address}, domain=DOMAIN)
    return signed, binding


def _race(policies: AgentPolicies, requests: list) -> list:
    """Run every registration in its own thread at once; returns each one's standing or error."""
    results: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def register(i: int) -> None:
        start.wait()
        try:
            results[i] = policies.register(AGENT.address, *requests[i])
        except Exception as exc:  # the outcome under test: which error, if any, each request got
            results[i] = exc

    threads = [threading.Thread(target=register, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _both_read_before_either_writes(monkeypatch, parties: int) -> None:
    """Hold each request after its first look for the agent's row until all have looked: the interleaving a
    database without a write lock up front (PostgreSQL's READ COMMITTED) allows."""
    looked = threading.Barrier(parties, timeout=20)
    first_looks = iter(range(parties))
    row = AgentPolicies._row

    def first_look_together(conn, agent, **options):
        found = row(conn, agent, **options)
        if next(first_looks, None) is not None:  # the first look of each request; later reads pass
            looked.wait()
        return found

    monkeypatch.setattr(AgentPolicies, "_row", staticmethod(first_look_together))


def _check_same_owner(policies: AgentPolicies, results: list) -> None:
    assert not [r for r in results if isinstance(r, Exception)], results
    standing = policies.standing(AGENT.address)
    assert standing.owner == OWNERS[0].address and standing.policy.budget in (10, 20)
    with policies.db.connect() as conn:  # one binding kept, both owner signatures recorded
        actions = [r.action for r in conn.execute(signed_actions.select()).all()]
        assert conn.execute(agent_policies.select()).all().__len__() == 1
    assert sorted(actions) == ["BindAgent", "SetAgentPolicy", "SetAgentPolicy"]


def _check_two_owners(policies: AgentPolicies, results: list) -> None:
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], AuthError) and "bound to owner" in errors[0].message, results
    winner = next(r for r in results if not isinstance(r, Exception))
    assert policies.standing(AGENT.address).owner == winner.owner


def test_first_policies_at_once_on_sqlite(tmp_path):
    db = Database.at(tmp_path / "race.db")
    db.upgrade()
    policies = AgentPolicies(db, domain=lambda: DOMAIN)
    _check_same_owner(policies, _race(policies, [_first_policy(OWNERS[0], 10), _first_policy(OWNERS[0], 20)]))
    db.close()


@pytest.fixture
def pg_policies(postgres_server):
    name = f"ledgerlm_policy_race_{os.getpid()}"
    db = Database(postgres_server.create_database(name, template=TEMPLATE))
    yield AgentPolicies(db, domain=lambda: DOMAIN)
    db.close()
    postgres_server.drop_database(name)


def test_same_owner_first_policies_at_once_on_postgres(pg_policies, monkeypatch):
    _both_read_before_either_writes(monkeypatch, 2)
    _check_same_owner(pg_policies, _race(pg_policies, [_first_policy(OWNERS[0], 10), _first_policy(OWNERS[0], 20)]))


def test_two_owners_binding_at_once_on_postgres(pg_policies, monkeypatch):
    _both_read_before_either_writes(monkeypatch, 2)
    _check_two_owners(pg_policies, _race(pg_policies, [_first_policy(OWNERS[0], 10), _first_policy(OWNERS[1], 20)]))
