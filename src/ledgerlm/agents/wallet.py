"""An agent's hands: every tool call goes through its policy first, then to the node as any client would, then
into the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from ledgerlm.agents.audit import AuditEntry, AuditLog
from ledgerlm.agents.errors import AgentError, PolicyRefusal
from ledgerlm.agents.policy import RULES, AgentPolicy, worst_case_cost
from ledgerlm.agents.registry import AgentRegistry, new_api_key
from ledgerlm.errors import LedgerError, NotFoundError
from ledgerlm.sdk import NodeClient
from ledgerlm.units import format_amount


class AgentWallet:
    """Acts for one agent with the agent's own key; the owner's key is never needed after funding."""

    def __init__(self, node: NodeClient, registry: AgentRegistry, name: str, account: LocalAccount):
        self.node = node
        self.registry = registry
        self.record = registry.get(name)
        if account.address != self.record.address:
            raise AgentError(f"key {account.address} is not agent {name!r}'s key ({self.record.address})",
                             field="key")
        if self.record.state != "ready":
            raise AgentError(f"agent {name!r} was not fully created: run the same `ledgerlm agent create` again to "
                             "finish it", field="name", status=409)
        self.account = account
        self._api_key: str | None = None
        self.audit = AuditLog(registry.audit_path(name))
        self.spend_limit: int | None = None  # a run's own ceiling on what it spends, set by the runtime
        self.run_spent = 0  # fees of this run's calls, summed from their receipts (not a per-epoch total's change)
        self._commits: dict[int, tuple[dict[int, int], bytes]] = {}  # round -> (scores, salt) until revealed

    @classmethod
    def open(cls, home: Path, name: str, node_url: str, passphrase: str) -> AgentWallet:
        """The wallet of agent `name` from a home's agents and keyring, acting on the node at `node_url`."""
        from ledgerlm.identity import Keyring
        from ledgerlm.sdk import connect

        registry = AgentRegistry(Path(home) / "agents")
        account = Keyring(Path(home) / "keys").unlock(registry.get(name).key_name, passphrase)
        return cls(connect(node_url), registry, name, account)

    # ------------------------------------------------------------------ tools

    def search(self) -> dict:
        """Served models with their price and eval metrics, and the Datanets this agent may read."""
        return self._act("search", {}, lambda policy, entry: self._catalog(policy))

    def call_model(self, model: str, prompt: str, *, max_tokens: int = 32) -> dict:
        """A paid chat completion, within the policy's model list, price cap and budget."""
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            policy.check_model(model, 0)  # the allow-list first: a model the agent may not use is never looked up
            price = self._price(model)
            policy.check_model(model, price)
            spent, worst = self.spent(policy), worst_case_cost(prompt, max_tokens, price)
            policy.check_spend(spent, worst)
            if self.spend_limit is not None and self.run_spent + worst > self.spend_limit:
                raise PolicyRefusal(f"this call may cost up to {format_amount(worst)} LGR, past the run's spend "
                                    f"limit", field="max_spend")
            answer = self.node._request("POST", "/v1/chat/completions", headers=self._bearer(), json={
                "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": int(max_tokens),
                "temperature": 0})
            receipt = self.node.serving.receipt(answer["id"])["receipt"]
            entry.receipt_id, entry.cost = answer["id"], int(receipt["fee"])
            self.run_spent += entry.cost
            return {"model": model, "answer": answer["choices"][0]["message"]["content"],
                    "receipt_id": answer["id"], "fee": receipt["fee"]}

        return self._act("call_model", {"model": model, "prompt": prompt, "max_tokens": max_tokens}, run)

    def read_datanet(self, datanet: str, version: int) -> dict:
        """A published version's manifest: its Merkle root and the contributions it holds."""
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            policy.check_datanet(datanet)
            return self.node.manifest(datanet, version)

        return self._act("read_datanet", {"datanet": datanet, "version": version}, run)

    def contribute(self, datanet: str, paths: list[Path]) -> dict:
        """Upload files to a Datanet, signed with the agent's key."""
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            policy.check_datanet(datanet)
            return self.node.contribute(datanet, [Path(p) for p in paths], self.account).model_dump()

        return self._act("contribute", {"datanet": datanet, "paths": [str(p) for p in paths]}, run)

    def balance(self) -> dict:
        """Tokens and gas on chain, and the escrow budget the node sees for the agent's key."""
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            budget = self.node._request("GET", "/apikeys/me", headers=self._bearer())
            budget.pop("key", None)
            return {"chain": self.node.chain.account(self.account.address), "escrow": budget,
                    "spent": str(self.spent(policy)), "budget": str(policy.budget)}

        return self._act("balance", {}, run)

    def earnings(self) -> dict:
        """What the agent earned per epoch and source, and what it has not claimed."""
        return self._act("earnings", {}, lambda policy, entry: self.node._request(
            "GET", f"/economy/earnings/{self.account.address}"))

    def claim(self) -> dict:
        """Claim every claimable epoch with its Merkle proof; the agent pays the gas."""
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            owed = self.node._request("GET", f"/economy/earnings/{self.account.address}")["epochs"]
            claimed = []
            for e in (e for e in owed if e["claimable"] and not e["claimed"]):
                tx = self.node.chain.send(self.account, "EpochDistributor", "claim",
                                          [int(e["chain_epoch"]), self.account.address, int(e["amount"]),
                                           e["proof"]])
                entry.tx_hashes.append(tx["tx_hash"])
                claimed.append({"epoch": e["epoch"], "amount": e["amount"], "tx_hash": tx["tx_hash"]})
            return {"claimed": claimed}

        return self._act("claim", {}, run)

    def validation_tasks(self) -> dict:
        """Contributions the agent is assigned to score, with their data and gate findings."""
        return self._act("validate", {"step": "queue"}, lambda policy, entry: {
            # signed as the agent itself: a private Datanet's data is shown to its validator only
            "tasks": self.node.validation.queue(self.account.address, reader=self.account)})

    def commit_votes(self, round_id: int, scores: dict[int, int]) -> dict:
        """Commit a salted hash of the scores (0-100); the scores and salt stay here until the reveal."""
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            done, salt = self.node.validation.commit(self.account, round_id, scores)
            self._commits[round_id] = (dict(scores), salt)
            return {"round": round_id, "committed": len(scores)}

        return self._act("validate", {"step": "commit", "round": round_id,
                                      "scores": {str(k): v for k, v in scores.items()}}, run)

    def reveal_votes(self, round_id: int) -> dict:
        def run(policy: AgentPolicy, entry: AuditEntry) -> dict:
            if round_id not in self._commits:
                raise AgentError(f"this agent committed nothing in round {round_id}", field="round")
            scores, salt = self._commits.pop(round_id)
            self.node.validation.reveal(self.account, round_id, scores, salt)
            return {"round": round_id, "revealed": len(scores)}

        return self._act("validate", {"step": "reveal", "round": round_id}, run)

    # ------------------------------------------------------------------ plumbing

    def spent(self, policy: AgentPolicy) -> int:
        """Fees the node charged the agent: in the open epoch for a per-epoch budget, else ever."""
        mine = [r for r in self.node.serving.every_receipt(account=self.account.address)
                if r["consumer"] == self.account.address]
        if policy.per_epoch:
            epoch = self.node._request("GET", "/apikeys/terms")["epoch"]
            mine = [r for r in mine if r["epoch"] == epoch]
        return sum(int(r["fee"]) for r in mine)

    def policy(self) -> AgentPolicy:
        """The policy in force: the node's copy (what it enforces, pause included), read for every action so a
        pause takes effect on the very next one; the local record only for an agent the node has no policy for."""
        try:
            # read as the agent: a private Datanet the policy allows is named only to the agent, its owner and readers
            standing = self.node.agents.standing(self.account.address, reader=self.account)
            return AgentPolicy.model_validate(standing["policy"])
        except NotFoundError:
            return self.registry.get(self.record.name).policy

    def _act(self, tool: str, args: dict, run: Callable[[AgentPolicy, AuditEntry], dict]) -> dict:
        self.record = self.registry.get(self.record.name)
        entry = AuditEntry(agent=self.record.name, tool=tool, args=args, ok=False)
        try:
            policy = self.policy()
            policy.check_action(tool)
            entry.result = run(policy, entry)
            entry.ok = True
            return entry.result
        except LedgerError as exc:
            if exc.status == 403 and exc.field in RULES and not isinstance(exc, PolicyRefusal):
                exc = PolicyRefusal(exc.message, field=exc.field)  # the node's own check refused it
            entry.error, entry.field = exc.message, exc.field
            raise exc from None
        finally:
            self.audit.append(entry)

    def _bearer(self) -> dict:
        return {"Authorization": f"Bearer {self._key()}"}

    def _key(self) -> str:
        """The agent's API key for the open epoch: each epoch the agent signs its standing cap again itself, so
        that it leaves one per-epoch budget (or what is left of a total one) on top of what the escrow already
        settled in the cap's period."""
        name = self.record.name
        if self.record.api_key:  # a record from before keys were encrypted: encrypt it, drop the clear copy
            self.registry.seal_api_key(name, self.record.api_key, self.account)
            self.record.api_key = None
            self.registry.save(self.record)
        epoch = self.node._request("GET", "/apikeys/terms")["epoch"]
        if epoch != self.record.key_epoch:
            policy = self.policy()
            cap = policy.budget if policy.per_epoch else policy.budget - self.spent(policy)
            if cap <= 0:
                raise AgentError("the agent's whole budget is spent; its owner can raise it", field="budget")
            cap += int(self.node.spending_cap(self.account.address)["spent"])
            key, _ = self.node.serving.create_key(self.account, cap, key=new_api_key())
            self.registry.seal_api_key(name, key, self.account)
            self.record.key_epoch, self._api_key = epoch, key
            self.registry.save(self.record)
        if self._api_key is None:
            self._api_key = self.registry.api_key(name, self.account)
        return self._api_key

    def _price(self, model: str) -> int:
        served = self.node._request("GET", "/v1/models")["data"]
        for m in served:
            if m["id"] == model:
                return int(m["x_ledgerlm"]["price_per_1k"])
        raise AgentError(f"model {model!r} is not served; served: {', '.join(m['id'] for m in served)}",
                         field="model")

    def _catalog(self, policy: AgentPolicy) -> dict[str, Any]:
        # attribution diagnostics ride along in a model's metrics; a buyer compares the eval figures
        metrics = {m["id"]: {k: v for k, v in (m.get("metrics") or {}).items() if k != "attribution"}
                   for m in self.node.factory.models()}
        models = [{"id": m["id"], "price_per_1k": m["x_ledgerlm"]["price_per_1k"],
                   "datanet_roots": m["x_ledgerlm"]["datanet_roots"], "metrics": metrics.get(m["id"], {})}
                  for m in self.node._request("GET", "/v1/models")["data"]]
        datanets = [d.name for d in self.node.datanets()
                    if not policy.allow_datanets or d.name in policy.allow_datanets]
        return {"models": models, "datanets": datanets}
