"""The whole loop in one process on a tiny model: data in, gates and a validator round, a version, a
fine-tune, a priced model, paid calls through the `openai` client, an epoch close, everyone's claims,
and the check that tokens in equal tokens out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

UNIT = 10**18
FACTS = [{"question": f"What colour is the {thing}?", "answer": f"The {thing} is {colour}."}
         for thing, colour in [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"),
                               ("kelp", "brown"), ("crab", "amber"), ("storm", "black"), ("sand", "gold")]]
JUNK = {"question": "asdf qwer zxcv?", "answer": "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"}
SCHEMA = {"type": "object", "required": ["question", "answer"],
          "properties": {"question": {"type": "string", "minLength": 1}, "answer": {"type": "string", "minLength": 1}}}
QUESTIONS = ["What colour is the reef?", "What colour is the moon?", "What colour is the sand?"]
PRICE_PER_1K = 10**16  # 0.01 LGR per 1,000 tokens
CAP = 5 * UNIT
ROLES = ("owner", "contributor", "validator-1", "validator-2", "developer", "consumer")


@dataclass
class DemoResult:
    """Who earned what and why, and the balance check of the whole loop."""

    epoch: int
    receipts: int
    charged: int
    slashed: int  # slashed bonds and stakes released to validators in this epoch
    claimed: dict[str, int]
    roles: dict[str, dict[str, int]]
    names: dict[str, str]
    gated: dict = field(default_factory=dict)
    verified: bool = False

    @property
    def balanced(self) -> bool:
        """Tokens in (consumers charged, stake slashed) equal tokens out (claims), to the base unit."""
        return self.charged + self.slashed == sum(self.claimed.values())


def _account(name: str):
    return Account.from_key(keccak(text=f"ledgerlm-demo:{name}"))


def run_quick_demo(home: Path, say: Callable[[str], None] = print) -> DemoResult:
    """Run the loop on a fresh home at `home`; `say` narrates each step."""
    import openai
    from fastapi.testclient import TestClient

    from ledgerlm.api import create_app
    from ledgerlm.client import NodeClient
    from ledgerlm.config import Home
    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.economy import verify_epoch
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.node import Node

    home = Home(home)
    say("1. a node home: database, encrypted keys, embedded chain with the contracts")
    Node.init(home).close()
    config = home.load_config()
    config.round_commit_seconds, config.round_reveal_seconds = 1, 1  # the quick demo does not wait on phases
    config.validators_per_contribution = 2
    config.torch_threads = 1
    home.save_config(config)
    who = {name: _account(name) for name in ROLES}
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        node = http.app.state.node
        say("2. everyone gets gas and LGR from the development faucet; validators stake, the contributor bonds")
        for account in who.values():
            client.chain.faucet(account.address, eth_wei=UNIT, tokens=100 * UNIT)
        for name, stake in (("validator-1", 60), ("validator-2", 40)):
            client.chain.stake(who[name], "validator", stake * UNIT)
        client.chain.stake(who["contributor"], "contributor_bond", 10 * UNIT)

        say("3. a Datanet; contributions with junk and a near duplicate; the gates and a validator round")
        client.create_datanet(DatanetSpec(name="colours", schema=SCHEMA), who["owner"])
        upload = home.root / "demo-upload.jsonl"
        near_duplicate = {"question": FACTS[0]["question"].upper(), "answer": FACTS[0]["answer"].upper()}
        upload.write_text("\n".join(json.dumps(r) for r in [*FACTS, JUNK, near_duplicate]) + "\n")
        client.contribute("colours", [upload], who["contributor"])
        opened = client.validation.open_round(who["owner"], "colours")
        salts, votes = {}, {}
        for name in ("validator-1", "validator-2"):
            v = who[name]
            votes[name] = {int(c): 90 for c, vs in opened["assignments"].items() if v.address in vs}
            _, salts[name] = client.validation.commit(v, opened["id"], votes[name])
        _sleep_until(opened["commit_deadline"])
        for name in ("validator-1", "validator-2"):
            client.validation.reveal(who[name], opened["id"], votes[name], salts[name])
        _sleep_until(opened["reveal_deadline"])
        client.validation.tally(who["owner"], opened["id"])
        version = client.publish("colours", who["owner"])
        say(f"   gates: {opened['gated']['pass']} passed, {opened['gated']['reject']} rejected; "
            f"version {version.number} has {version.contribution_count} accepted contributions")

        say("4. a tiny model fine-tuned on the version with LoRA, published at a price")
        tiny = tiny_random_model(home.root / "tiny-base", [f"{r['question']} {r['answer']}" for r in FACTS])
        client.factory.register_base("tiny", str(tiny))
        job = client.factory.train(who["developer"], {
            "model_id": "colours-tiny", "datanet": "colours", "version": version.number, "base": "tiny",
            "config": {"epochs": 2, "lr": 1e-2, "batch_size": 2, "max_len": 64, "eval_split": 0.0, "rank": 4,
                       "max_steps": 8}})
        done = node.factory.wait(job["id"], timeout=600)
        if done.state != "done":
            raise RuntimeError(f"training failed: {done.error}")
        client.factory.publish(who["developer"], "colours-tiny", price_per_1k=PRICE_PER_1K)

        say("5. a consumer deposits into escrow, signs a spending cap with an API key, calls through `openai`")
        consumer = who["consumer"]
        escrow = node.contracts.escrow.address
        client.chain.send(consumer, "LedgerToken", "approve", [escrow, 20 * UNIT])
        client.chain.send(consumer, "PaymentEscrow", "deposit", [20 * UNIT])
        key, _ = client.serving.create_key(consumer, CAP)
        ai = openai.OpenAI(base_url="http://localhost/v1", api_key=key, http_client=http, max_retries=0)
        ids = []
        for question in QUESTIONS:
            answer = ai.chat.completions.create(model="colours-tiny", messages=[{"role": "user", "content": question}],
                                                max_tokens=12, temperature=0)
            ids.append(answer.id)
        for rid in ids:
            _wait_final(client, rid)

        say("6. the epoch closes: consumers settled in escrow, validators and data paid, root posted")
        closed = client._request("POST", "/economy/epochs/close")
        number = closed["epoch"]
        payouts = client._request("GET", f"/economy/epochs/{number}/payouts")
        receipts = client._request("GET", f"/economy/epochs/{number}/receipts")
        chain_epoch = int(payouts["chain_epoch"])
        funding = node.contracts.distributor.epoch(chain_epoch)
        verified = verify_epoch(payouts, receipts, funding) == []

        say("7. everyone claims with their Merkle proof")
        names = {a.address: n for n, a in who.items()} | {node.account.address: "node"}
        claimed, roles = {}, {}
        for leaf in payouts["payouts"]:
            account, amount = leaf["account"], int(leaf["amount"])
            if account == node.account.address:
                node.contracts.distributor.claim(node.account, chain_epoch, account, amount, leaf["proof"])
            else:
                signer = who[names[account]]
                client.chain.send(signer, "EpochDistributor", "claim", [chain_epoch, account, amount, leaf["proof"]])
            claimed[account] = amount
            roles[account] = {k: int(v) for k, v in leaf["sources"]["roles"].items()}
        return DemoResult(number, int(closed["receipts"]), int(closed["charged"]), int(closed["rewards"]), claimed,
                          roles, names, opened["gated"], verified)


def _sleep_until(deadline: int) -> None:
    while int(time.time()) <= deadline:  # rounds compare whole seconds
        time.sleep(0.2)


def _wait_final(client, receipt_id: str, timeout: float = 300) -> None:
    """Attribution runs after the answer; the receipt joins the settlement once it is final."""
    give_up = time.monotonic() + timeout
    while client.serving.receipt(receipt_id)["receipt"]["state"] != "final":
        if time.monotonic() > give_up:
            raise RuntimeError(f"receipt {receipt_id} is still attributing after {timeout:.0f}s")
        time.sleep(0.2)
