"""The node's side of agent policies: the policy each owner signed, and the checks the node runs before an
agent's key spends, contributes or votes, whatever the agent's own wallet did or skipped."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

from eth_utils import to_checksum_address
from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ledgerlm.agents.errors import AgentError, PolicyRefusal
from ledgerlm.agents.policy import AgentPolicy, policy_from_message
from ledgerlm.buckets import KeyedLimit, hourly
from ledgerlm.economy import current_epoch, held_by, spent_by
from ledgerlm.errors import AuthError, NotFoundError
from ledgerlm.identity import SignedAction, SigningDomain, verify_action
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import agent_policies


class AgentStanding(BaseModel):
    """An agent as the node sees it: who owns it, the policy in force, and what it spent under it."""

    agent: str
    owner: str
    policy: AgentPolicy
    epoch: int
    spent: int  # in the open epoch for a per-epoch budget, else ever
    updated_at: int

    def to_dict(self) -> dict:
        data = self.model_dump()
        data["policy"]["budget"], data["spent"] = str(self.policy.budget), str(self.spent)
        return data


class AgentPolicies:
    """Registers owner-signed policies and refuses an agent's action its policy forbids, naming the rule."""

    def __init__(self, db: Database, *, domain: Callable[[], SigningDomain], agents_per_hour: int = 120,
                 agents_per_owner_per_hour: int = 30):
        self.db = db
        self.domain = domain  # read at each call: deploying the contracts changes it
        # new agents stored per hour, per owner and in all (NodeConfig.agents_per_hour): fresh keys cost nothing
        self._new_agents = KeyedLimit(hourly(agents_per_owner_per_hour), hourly(agents_per_hour))

    # ---------------------------------------------------------------- owner's signed changes

    def register(self, agent: str, signed: SignedAction, binding: SignedAction | None = None) -> AgentStanding:
        """Set an agent's policy (owner's SetAgentPolicy). The first time, the agent's own BindAgent naming
        that owner must come with it; after that only the bound owner may change the policy."""
        owner = verify_action(signed, expected="SetAgentPolicy", domain=self.domain())
        agent = self._same_agent(agent, signed)
        policy = policy_from_message(signed.message)
        now = int(time.time())
        with self.db.begin() as conn:
            row = self._row(conn, agent, lock=True)
            if row is None:
                if binding is None:
                    raise AuthError(f"agent {agent} has no owner yet: send the agent's signed BindAgent naming "
                                    f"{owner} with its first policy", field="binding")
                bound = verify_action(binding, expected="BindAgent", domain=self.domain())
                if bound != agent or to_checksum_address(binding.message["owner"]) != owner:
                    raise AuthError(f"the BindAgent signature must be agent {agent}'s, naming owner {owner}",
                                    field="binding")
                self._take_new_agent(owner)
                try:
                    row = self._bind(conn, agent, owner, policy, signed, binding, now)
                except BaseException:
                    self._new_agents.give_back(owner.lower())
                    raise
            if row is not None:
                self._require_owner(row, owner)
                action_id = record_action(conn, signed, owner, chain_id=self.domain().chain_id, now=now)
                # a change of policy never lifts (nor sets) a pause: only PauseAgent does, so a change signed
                # before a kill switch and delivered after it cannot undo it
                conn.execute(update(agent_policies).where(agent_policies.c.agent == agent).values(
                    policy=_stored(policy), action_id=action_id, updated_at=now))
        return self.standing(agent)

    def _take_new_agent(self, owner: str) -> None:
        """Count one new agent of `owner`, or refuse it (429) while the owner's or the node's hour is spent."""
        def refusal(spent: str, most: int, wait: int) -> AgentError:
            if spent == "each":
                return AgentError(f"{owner} has registered {most} agents within the hour, the most this node stores "
                                  f"for one owner; try again in {wait} s", field="owner", status=429)
            return AgentError(f"this node has registered its {most} new agents of the hour; try again in {wait} s",
                              field="agent", status=429)

        self._new_agents.take_or_refuse(owner.lower(), refusal)

    def _bind(self, conn, agent: str, owner: str, policy: AgentPolicy, signed: SignedAction,
              binding: SignedAction, now: int):
        """Store an agent's first policy; returns None, or the row of a first policy that another request
        stored meanwhile (a database that lets both read "no policy yet" refuses the second insert), which
        the caller then treats as a change to that policy."""
        chain_id = self.domain().chain_id
        try:
            with conn.begin_nested():
                bind_id = record_action(conn, binding, agent, chain_id=chain_id, now=now)
                action_id = record_action(conn, signed, owner, chain_id=chain_id, now=now)
                conn.execute(insert(agent_policies).values(
                    agent=agent, owner=owner, policy=_stored(policy), paused=policy.paused, bind_action_id=bind_id,
                    action_id=action_id, created_at=now, updated_at=now))
        except IntegrityError:
            row = self._row(conn, agent)
            if row is None:
                raise
            return row
        return None

    def set_paused(self, agent: str, signed: SignedAction) -> AgentStanding:
        """The owner's kill switch (PauseAgent): the agent's next action is refused, or allowed again."""
        owner = verify_action(signed, expected="PauseAgent", domain=self.domain())
        agent = self._same_agent(agent, signed)
        now = int(time.time())
        with self.db.begin() as conn:
            row = self._row(conn, agent, lock=True)
            if row is None:
                raise NotFoundError(f"agent {agent} has no policy on this node", field="agent")
            self._require_owner(row, owner)
            action_id = record_action(conn, signed, owner, chain_id=self.domain().chain_id, now=now)
            conn.execute(update(agent_policies).where(agent_policies.c.agent == agent).values(
                paused=bool(signed.message["paused"]), action_id=action_id, updated_at=now))
        return self.standing(agent)

    # ---------------------------------------------------------------- reads

    def standing(self, agent: str) -> AgentStanding:
        agent = _address(agent)
        with self.db.connect() as conn:
            row = self._row(conn, agent)
            if row is None:
                raise NotFoundError(f"agent {agent} has no policy on this node", field="agent")
            policy = _policy(row)
            return AgentStanding(agent=agent, owner=row["owner"], policy=policy, epoch=current_epoch(conn),
                                 spent=self._spent(conn, agent, policy), updated_at=row["updated_at"])

    def list(self, owner: str | None = None, *, offset: int = 0, limit: int = 1000) -> list[AgentStanding]:
        """Agents by address (one owner's, or all): at most `limit` from `offset` on."""
        with self.db.connect() as conn:
            query = select(agent_policies.c.agent).order_by(agent_policies.c.agent)
            if owner:
                query = query.where(agent_policies.c.owner == _address(owner))
            agents = list(conn.execute(query.offset(offset).limit(limit)).scalars())
        return [self.standing(a) for a in agents]

    # ---------------------------------------------------------------- the checks the rooms call

    def check(self, actor: str, action: str, datanet: str | None = None) -> None:
        """Before an agent contributes or votes: paused, allowed actions, allowed Datanets. Others pass."""
        with self.db.connect() as conn:
            row = self._row(conn, _address(actor))
        if row is None:
            return
        with _refusing(row):
            policy = _policy(row)
            policy.check_action(action)
            if datanet is not None:
                policy.check_datanet(datanet)

    def check_spend(self, consumer: str, model: str, price_per_1k: int, cost: int, reserved: int) -> None:
        """Before an agent's call is admitted: its model and price rules, and its budget against what it spent
        and what its calls in flight hold (`reserved`), so concurrent calls cannot overspend either."""
        found = self._spending(consumer)
        if found is None:
            return
        row, policy, spent = found
        with _refusing(row):
            policy.check_action("call_model")
            policy.check_model(model, price_per_1k)
            policy.check_spend(spent + reserved, cost)

    def check_payment(self, payer: str, amount: int, tool: str, datanet: str | None = None) -> None:
        """Before an agent's key pays from escrow for access to a Datanet (`read_datanet`) or a compute job
        (`buy_compute`): the kill switch, the actions and Datanets its policy allows, and the budget against what
        it already spent on calls, access and jobs (money leaving its escrow either way) and what its calls still
        running hold, so a payment cannot take budget a call was admitted under."""
        found = self._spending(payer, held=True)
        if found is None:
            return
        row, policy, spent = found
        with _refusing(row):
            policy.check_action(tool)
            if datanet is not None:
                policy.check_datanet(datanet)
            policy.check_spend(spent, amount)

    def _spending(self, agent: str, *, held: bool = False):
        """(row, policy, spent in the budget's scope) for an agent with a policy; None for any other key. `held`
        adds what its calls in flight hold (a call's own check is handed that figure by the budget instead)."""
        with self.db.connect() as conn:
            row = self._row(conn, _address(agent))
            if row is None:
                return None
            policy = _policy(row)
            spent = self._spent(conn, row["agent"], policy)
            return row, policy, spent + (held_by(conn, row["agent"], int(time.time())) if held else 0)

    # ---------------------------------------------------------------- plumbing

    @staticmethod
    def _row(conn, agent: str, *, lock: bool = False):
        """The agent's policy row; `lock` holds it until the transaction ends (an owner's change is decided on it)."""
        query = select(agent_policies).where(agent_policies.c.agent == agent)
        return conn.execute(query.with_for_update() if lock else query).mappings().first()

    @staticmethod
    def _spent(conn, agent: str, policy: AgentPolicy) -> int:
        """What the agent's calls and paid access cost, in the budget's scope (this epoch or ever): one row of
        the running totals the receipt and payment transactions keep."""
        return spent_by(conn, agent, current_epoch(conn) if policy.per_epoch else None)

    @staticmethod
    def _require_owner(row, owner: str) -> None:
        if row["owner"] != owner:
            raise AuthError(f"agent {row['agent']} is bound to owner {row['owner']}; only that owner may change "
                            f"it, not {owner}", field="owner")

    @staticmethod
    def _same_agent(agent: str, signed: SignedAction) -> str:
        agent = _address(agent)
        if to_checksum_address(signed.message["agent"]) != agent:
            raise AuthError(f"the signature is for agent {signed.message['agent']}, not {agent}", field="agent")
        return agent

@contextmanager
def _refusing(row):
    """Say in a refusal that the node applied the owner's policy, keeping the rule's field."""
    try:
        yield
    except PolicyRefusal as exc:
        raise PolicyRefusal(f"agent {row['agent']}'s policy (signed by owner {row['owner']}) refuses this: "
                            f"{exc.message}", field=exc.field) from None


def _address(value: str) -> str:
    try:
        return to_checksum_address(value)
    except ValueError:
        raise AgentError(f"{value!r} is not an address", field="agent") from None


def _stored(policy: AgentPolicy) -> dict:
    data = policy.model_dump(exclude={"paused"})
    data["budget"] = str(policy.budget)
    if policy.max_price_per_1k is not None:
        data["max_price_per_1k"] = str(policy.max_price_per_1k)
    return data


def _policy(row) -> AgentPolicy:
    # checked when it was signed and stored: a policy stored before a limit was added still reads
    data = dict(row["policy"])
    return AgentPolicy.model_construct(**{**data, "budget": int(data["budget"]), "paused": bool(row["paused"]),
                                          "max_price_per_1k": None if data.get("max_price_per_1k") is None
                                          else int(data["max_price_per_1k"])})
