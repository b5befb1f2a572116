"""Agents under policy: overspend and off-policy attempts, how many each guard refuses, and violations.

    python benchmarks/agents.py                    # 6 buyer agents, 2 epochs, 8 attempts each per epoch
    python benchmarks/agents.py --agents 20 --epochs 3 --attempts 12

A fresh node serves a tiny random Llama at a price. Buyer agents with per-epoch budgets, a model allow-list
and a price cap make a random mix of attempts each epoch: honest short calls, overspends (a max_tokens whose
worst case exceeds the budget), calls from agents whose allow-list leaves the served model out, and calls from
agents whose price cap is below the model's price. The same attempts are replayed by a baseline consumer that holds an API key
under the same escrow cap but no agent policy (the node's cap only). After each epoch closes, the escrow's
on-chain `spent` is compared with each agent's cap, and the node's hot key tries to settle one base unit past
each cap directly on the contract (a node whose own check is bypassed). Violations: an off-policy attempt
that was served, a budget exceeded, or a settlement above a cap that the chain accepted. The same off-policy
attempts are also sent straight to the node with the agent's own API key, skipping its wallet's check: the node's
copy of the owner-signed policy must refuse each one.

Validators (`--validator-epochs N`, 0 to skip): a second node serves a judge model (`--judge-base DIR`, e.g.
SmolLM2-135M-Instruct pulled with `ledgerlm models pull smollm2-135m`; the tiny random model by default). Each
epoch a contributor submits capital-city records (true ones, wrong ones, degenerate ones) to a Datanet; a round
assigns every record to every validator: honest scripted validators that know the truth (the majority of the
stake), and three validator agents with the same stake each: one scoring with the judge model and the gate
findings (`examples/agents/validator.py`), one with the gate findings alone (the baseline), and a dishonest one
that knows the truth and votes against it. Slashing needs three bad rounds, so run at least three epochs. After the first round a model is trained on the accepted records and published at
a price; a consumer pays for a few of its answers each later epoch, which funds the Datanet's validator pool.
After each round the epoch closes; per validator: agreement with the consensus, stake slashed, and validator
rewards earned (their pool's share by stake x agreement, plus slashed stake).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from report import ResultTable, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("LEDGERLM_KDF_ITERATIONS", "1024")
os.environ.setdefault("LEDGERLM_NODE_PASSPHRASE", "agents-benchmark")
os.environ.setdefault("LEDGERLM_ADMIN_PASSPHRASE", "agents-benchmark")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402

from ledgerlm.agents import AgentPolicy, AgentRegistry, AgentWallet, FundingPlan, PolicyRefusal, create_agent  # noqa: E402
from ledgerlm.api import create_app  # noqa: E402
from ledgerlm.chain import ChainError, Debit, StakeRole  # noqa: E402
from ledgerlm.client import NodeClient  # noqa: E402
from ledgerlm.config import Home  # noqa: E402
from ledgerlm.datanets import DatanetSpec  # noqa: E402
from ledgerlm.errors import LedgerError  # noqa: E402
from ledgerlm.identity import Keyring  # noqa: E402
from ledgerlm.node import Node  # noqa: E402
from ledgerlm.store.schema import epoch_debits  # noqa: E402
from ledgerlm.units import format_amount  # noqa: E402

UNIT = 10**18
PRICE = 10**15
BUDGET = 2 * 10**14  # a few short calls per epoch
PASSPHRASE = "agents-benchmark"
KINDS = ("honest", "overspend", "disallowed_model", "price_cap")
STAKE = 5 * 10**18  # each validator's stake
CLIP = 25  # a vote further than this from the consensus earns nothing (the rounds' default clip distance)


def attempt(kind: str) -> dict:
    max_tokens = 5000 if kind == "overspend" else 4
    return {"model": "base", "prompt": "What colour is the reef?", "max_tokens": max_tokens}


@contextmanager
def fresh_node(root: Path, base: Path, **settings):
    """A new home whose node serves `base` as the base model, with these config settings, behind an in-process app."""
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.torch_threads = 1
    for name, value in settings.items():
        setattr(config, name, value)
    home.save_config(config)
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.bench",
                    client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        client.factory.register_base("base", str(base))
        yield home, client, http.app.state.node


def run(agents: int, epochs: int, attempts: int, seed: int) -> dict:
    from ledgerlm.factory import tiny_random_model

    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="ledgerlm-agents-bench-"))
    owner = Account.from_key(keccak(text="agents-benchmark:owner"))
    counts = {arm: Counter() for arm in ("policy", "wallet bypassed", "baseline")}
    violations = Counter()
    spend: Counter = Counter()
    with fresh_node(root, tiny_random_model(root / "tiny", ["The reef is copper."]),
                    serving_base_price=str(PRICE)) as (home, client, node):
        client.chain.faucet(owner.address, eth_wei=UNIT, tokens=100 * UNIT)
        registry, keyring = AgentRegistry(home.root / "agents"), Keyring(home.keys)
        wallets, baselines = [], []
        for i in range(agents):
            # of every three agents, one may not use the served model and one caps the price below the model's:
            # each call either makes is off-policy
            cap_price = PRICE // 10 if i % 3 == 2 else PRICE
            allowed = ["another-model"] if i % 3 == 1 else ["base"]
            policy = AgentPolicy(budget=BUDGET, per_epoch=True, allow_models=allowed, max_price_per_1k=cap_price)
            # the escrow holds every epoch's budget; the cap the agent signs each epoch is one budget
            plan = FundingPlan(budget=BUDGET * epochs, gas_wei=10**16)
            create_agent(client, registry, keyring, name=f"buyer-{i}", owner=owner, policy=policy, plan=plan,
                         passphrase=PASSPHRASE)
            wallets.append(AgentWallet(client, registry, f"buyer-{i}", keyring.unlock(f"agent-buyer-{i}", PASSPHRASE)))
            consumer = Account.from_key(keccak(text=f"agents-benchmark:baseline-{i}"))
            client.chain.faucet(consumer.address, eth_wei=10**16, tokens=BUDGET * epochs)
            node.contracts.escrow.deposit(consumer, BUDGET * epochs)
            baselines.append((consumer, cap_price))
        for _ in range(epochs):
            keys = [client.serving.create_key(c, BUDGET)[0] for c, _ in baselines]
            for i, wallet in enumerate(wallets):
                for _ in range(attempts):
                    kind = rng.choice(KINDS[:2])
                    if i % 3 == 1 and kind == "honest":
                        kind = "disallowed_model"
                    elif i % 3 == 2 and kind == "honest":
                        kind = "price_cap"
                    off_policy = kind != "honest"
                    try:
                        wallet.call_model(**attempt(kind))
                        counts["policy"][f"{kind}:served"] += 1
                        violations["policy: off-policy call served"] += off_policy
                    except PolicyRefusal:
                        counts["policy"][f"{kind}:refused by policy"] += 1
                    except LedgerError:
                        counts["policy"][f"{kind}:refused by node"] += 1
                    if off_policy:  # the same attempt with the agent's own key, skipping its wallet's check
                        agent_key = registry.api_key(wallet.record.name, wallet.account)
                        try:
                            client._request("POST", "/v1/chat/completions", json={**_chat(attempt(kind)),
                                            "temperature": 0}, headers={"Authorization": f"Bearer {agent_key}"})
                            counts["wallet bypassed"][f"{kind}:served"] += 1
                            violations["node: off-policy call served with the wallet bypassed"] += 1
                        except LedgerError as exc:
                            guard = "node's policy check" if exc.status == 403 else f"node (HTTP {exc.status})"
                            counts["wallet bypassed"][f"{kind}:refused by {guard}"] += 1
                    try:
                        client._request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {keys[i]}"},
                                        json={**_chat(attempt(kind)), "temperature": 0})
                        counts["baseline"][f"{kind}:served"] += 1
                        violations["baseline: off-policy call served"] += off_policy
                    except LedgerError:
                        counts["baseline"][f"{kind}:refused by node"] += 1
            _wait_final(client)
            closed = client._request("POST", "/economy/epochs/close")
            number = int(closed["epoch"])
            with node.db.connect() as conn:  # what this close charged each consumer
                charged = {r.consumer: int(r.amount) for r in conn.execute(
                    select(epoch_debits.c.consumer, epoch_debits.c.amount).where(
                        (epoch_debits.c.epoch == number) & (epoch_debits.c.state != "unpaid")))}
            for wallet in wallets:
                address = wallet.account.address
                spent = charged.get(address, 0)
                spend["buyer agents"] += spent
                violations["policy: budget exceeded on chain"] += spent > BUDGET
                held = node.contracts.escrow.spending_cap(address, node.account.address)
                if held.cap == 0:
                    continue
                try:  # the node itself tries to take more than the agent's cap leaves
                    node.contracts.escrow.settle(node.account, number, 10_000 + wallets.index(wallet),
                                                 [Debit(address, held.left + 1)])
                    violations["chain: settlement above cap accepted"] += 1
                except ChainError:
                    counts["policy"]["bypass:refused by chain"] += 1
            for consumer, _ in baselines:
                spend["baseline consumers"] += charged.get(consumer.address, 0)
    return {"agents": agents, "epochs": epochs, "attempts_per_epoch": attempts, "seed": seed,
            "counts": {arm: dict(c) for arm, c in counts.items()}, "violations": dict(violations),
            "spend": {k: str(v) for k, v in spend.items()}}


CAPITALS = {"France": "Paris", "Germany": "Berlin", "Japan": "Tokyo", "England": "London", "Russia": "Moscow",
            "Egypt": "Cairo", "China": "Beijing", "Greece": "Athens", "Italy": "Rome", "Spain": "Madrid",
            "Canada": "Ottawa", "Peru": "Lima", "Portugal": "Lisbon", "Norway": "Oslo", "Kenya": "Nairobi",
            "Ireland": "Dublin"}
QA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
      "required": ["question", "answer"]}
HONEST = 4  # honest scripted validators; with one stake each they hold most of the stake
KINDS_OF_VALIDATOR = ("honest (scripted)", "agent: judge model + gates", "agent: gates only (baseline)",
                      "agent: dishonest")


def epoch_records(epoch: int, rng: random.Random) -> list[dict]:
    """Two true records, two wrong ones (another country's capital) and one degenerate one per epoch."""
    countries = list(CAPITALS)
    start = (4 * epoch) % len(countries)
    picked = [countries[(start + i) % len(countries)] for i in range(4)]
    records = []
    for i, country in enumerate(picked):
        city = CAPITALS[country] if i < 2 else rng.choice([c for k, c in CAPITALS.items() if k != country])
        records.append({"question": f"What is the capital of {country}?", "answer": f"The capital of {country} is {city}."})
    records.append({"question": f"What is the capital of {picked[0]} {epoch}?", "answer": "zzzzzzzzzzzzzzzzzzzzzzzz"})
    return records


def truth(payload) -> int:
    """What an honest validator that knows the answers votes."""
    payload = json.loads(payload) if isinstance(payload, str) else payload
    country = payload["question"].removeprefix("What is the capital of ").rstrip("?")
    return 90 if country in CAPITALS and CAPITALS[country] in payload["answer"] else 10


def run_validators(epochs: int, judge_base: Path | None, judge_trust: float, commit_seconds: int, seed: int) -> dict:
    from ledgerlm.factory import tiny_random_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "agents"))
    import validator as agent_validator

    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="ledgerlm-agents-validators-"))
    base = judge_base or tiny_random_model(root / "tiny", [f"{r['question']} {r['answer']}" for r in
                                                           epoch_records(0, random.Random(0))])
    owner = Account.from_key(keccak(text="agents-benchmark:datanet-owner"))
    contributor = Account.from_key(keccak(text="agents-benchmark:contributor"))
    honest = [Account.from_key(keccak(text=f"agents-benchmark:honest-{i}")) for i in range(HONEST)]
    per_kind: dict[str, Counter] = {k: Counter() for k in KINDS_OF_VALIDATOR}
    consumer = Account.from_key(keccak(text="agents-benchmark:consumer"))
    with fresh_node(root, base, serving_base_price=str(PRICE), validators_per_contribution=HONEST + 3,
                    round_commit_seconds=commit_seconds, round_reveal_seconds=3,
                    serving_attribution=False) as (home, client, node):
        for account in (owner, contributor, consumer, *honest):
            client.chain.faucet(account.address, eth_wei=UNIT, tokens=200 * UNIT)
        for account in honest:
            client.chain.stake(account, "validator", STAKE)
        client.create_datanet(DatanetSpec(name="capitals", schema=QA), owner)
        registry, keyring = AgentRegistry(home.root / "agents"), Keyring(home.keys)
        agents = {}
        for kind, name in zip(KINDS_OF_VALIDATOR[1:], ("judge", "gates", "dishonest"), strict=True):
            create_agent(client, registry, keyring, name=name, owner=owner, passphrase=PASSPHRASE,
                         policy=AgentPolicy(budget=10 * BUDGET, per_epoch=True, allow_models=["base"]),
                         plan=FundingPlan(budget=10 * BUDGET * epochs, stake=STAKE, gas_wei=10**16))
            agents[kind] = AgentWallet(client, registry, name, keyring.unlock(f"agent-{name}", PASSPHRASE))
        judge = agent_validator.Judge("base", judge_trust)
        assert node.serving.engine is not None  # load the judge model now, not inside the first commit phase
        who = {a.address: KINDS_OF_VALIDATOR[0] for a in honest} | {w.account.address: k for k, w in agents.items()}
        stake_before = {a: node.contracts.staking.stake_of(a, StakeRole.VALIDATOR) for a in who}
        for epoch in range(epochs):
            records = epoch_records(epoch, rng)
            upload = root / f"epoch-{epoch}.jsonl"
            upload.write_text("".join(json.dumps(r) + "\n" for r in records))
            client.contribute("capitals", [upload], contributor)
            opened = client.validation.open_round(owner, "capitals")
            payloads = {c.id: c.payload for c in client.contributions("capitals", payload=True)}
            salts = {}
            for account in honest:
                votes = {int(c): truth(payloads[int(c)]) for c, vs in opened["assignments"].items()
                         if account.address in vs}
                salts[account.address] = (votes, client.validation.commit(account, opened["id"], votes)[1])
            committed = []
            for kind, wallet in agents.items():
                tasks = [t for t in wallet.validation_tasks()["tasks"] if t["round_id"] == opened["id"]]
                if kind == "agent: judge model + gates":
                    votes = {t["contribution_id"]: agent_validator.score(t, judge, wallet) for t in tasks}
                elif kind == "agent: gates only (baseline)":
                    votes = {t["contribution_id"]: agent_validator.score(t) for t in tasks}
                else:  # knows the truth and votes against it: good data out, bad data in
                    votes = {t["contribution_id"]: 100 - truth(t["payload"]) for t in tasks}
                try:
                    wallet.commit_votes(opened["id"], votes)
                    committed.append(wallet)
                except LedgerError:  # scoring outlasted the commit phase: the vote is missed (and scored so)
                    per_kind[kind]["missed commits"] += 1
            _sleep_until(opened["commit_deadline"])
            for account in honest:
                votes, salt = salts[account.address]
                client.validation.reveal(account, opened["id"], votes, salt)
            for wallet in committed:
                wallet.reveal_votes(opened["id"])
            _sleep_until(opened["reveal_deadline"])
            tallied = client.validation.tally(owner, opened["id"])["tally"]
            for cid, outcome in tallied["contributions"].items():
                if outcome["consensus"] is None:
                    continue
                for address, vote in outcome["votes"].items():
                    kind = who[address]
                    per_kind[kind]["votes"] += 1
                    per_kind[kind]["agreed"] += abs(int(vote) - int(outcome["consensus"])) <= CLIP
                    right = (int(vote) >= 60) == (truth(payloads[int(cid)]) >= 60)
                    per_kind[kind]["right"] += right
            if epoch == 0:  # a model trained on what the validators accepted: its paid calls fund their pool
                client.publish("capitals", owner)
                job = client.factory.train(owner, {"model_id": "capitals-1", "datanet": "capitals", "version": 1,
                                                   "base": "base", "config": {"epochs": 1, "max_steps": 2,
                                                                              "batch_size": 2, "eval_split": 0.0}})
                trained = node.factory.wait(job["id"], timeout=1800)
                assert trained.state == "done", trained.error
                client.factory.publish(owner, "capitals-1", price_per_1k=100 * PRICE)
                node.contracts.escrow.deposit(consumer, 50 * UNIT)
            else:
                key, _ = client.serving.create_key(consumer, UNIT)
                for country in list(CAPITALS)[:3]:
                    client._request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                    json={"model": "capitals-1", "max_tokens": 8, "temperature": 0, "messages": [
                                        {"role": "user", "content": f"What is the capital of {country}?"}]})
            _wait_final(client)
            closed = client._request("POST", "/economy/epochs/close")
            for address, kind in who.items():
                earned = client._request("GET", f"/economy/earnings/{address}")["epochs"]
                per_kind[kind]["rewards"] += sum(int(e["amount"]) for e in earned if e["epoch"] == int(closed["epoch"]))
        for address, kind in who.items():
            per_kind[kind]["slashed"] += stake_before[address] - node.contracts.staking.stake_of(address, StakeRole.VALIDATOR)
            per_kind[kind]["validators"] += 1
        spent = agents["agent: judge model + gates"].spent(AgentPolicy(budget=1))
    honest_reward = int(per_kind[KINDS_OF_VALIDATOR[0]]["rewards"]) // HONEST
    dishonest = per_kind["agent: dishonest"]
    loss = {"slashed": str(dishonest["slashed"]), "rewards_forgone": str(honest_reward - dishonest["rewards"])}
    return {"dishonest_loss": loss, "epochs": epochs, "judge_base": str(judge_base) if judge_base else "tiny random model",
            "judge_trust": judge_trust, "stake_each": str(STAKE), "judge_spent": str(spent),
            "per_kind": {k: {n: str(v) if n in ("rewards", "slashed") else v for n, v in c.items()}
                         for k, c in per_kind.items()}}


def _sleep_until(deadline: int) -> None:
    while int(time.time()) <= deadline:  # rounds compare whole seconds
        time.sleep(0.2)


def _chat(a: dict) -> dict:
    return {"model": a["model"], "messages": [{"role": "user", "content": a["prompt"]}], "max_tokens": a["max_tokens"]}


def _wait_final(client: NodeClient, timeout: float = 300) -> None:
    give_up = time.monotonic() + timeout
    while client.serving.receipts(state="attributing", limit=1):
        if time.monotonic() > give_up:
            raise RuntimeError("receipts still attributing")
        time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=6)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--attempts", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validator-epochs", type=int, default=4, help="epochs of validator rounds (0: skip them)")
    p.add_argument("--judge-base", type=Path, help="model directory the validator node serves as its judge "
                                                   "[default: a tiny random model]")
    p.add_argument("--judge-trust", type=float, default=0.8, help="how far the judge's verdict moves a score (0-1)")
    p.add_argument("--commit-seconds", type=int, default=45, help="commit phase of each round")
    args = p.parse_args()
    started = time.perf_counter()
    result = run(args.agents, args.epochs, args.attempts, args.seed)
    if args.validator_epochs:
        result["validators"] = run_validators(args.validator_epochs, args.judge_base, args.judge_trust,
                                              args.commit_seconds, args.seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    table = ResultTable("Agents under policy: attempts by kind and outcome", ["arm", "attempt", "outcome", "count"])
    for arm, counts in result["counts"].items():
        for key, n in sorted(counts.items()):
            kind, outcome = key.split(":")
            table.add_row(arm, kind, outcome, n)
    faults = ResultTable("Violations", ["violation", "count"])
    for name in ("policy: off-policy call served", "policy: budget exceeded on chain",
                 "node: off-policy call served with the wallet bypassed",
                 "chain: settlement above cap accepted", "baseline: off-policy call served"):
        faults.add_row(name, result["violations"].get(name, 0))
    tables = [table, faults]
    notes = ["baseline: the same attempts with an API key under the same escrow cap, without an agent policy",
             "wallet bypassed: each off-policy attempt sent straight to the node with the agent's own API key"]
    if "validators" in result:
        v = result["validators"]
        agreement = ResultTable(f"Validators over {v['epochs']} epochs, every record assigned to every validator",
                                ["validator", "count", "votes", "agree with consensus", "right about the truth",
                                 "stake slashed (LGR)", "rewards per validator (LGR)"])
        for kind, c in v["per_kind"].items():
            n, votes = int(c.get("validators", 0)), int(c.get("votes", 0))
            agreement.add_row(kind, n, votes, f"{int(c.get('agreed', 0)) / max(votes, 1):.0%}",
                              f"{int(c.get('right', 0)) / max(votes, 1):.0%}",
                              format_amount(int(c.get("slashed", 0))),
                              format_amount(int(c.get("rewards", 0)) // max(n, 1)))
        tables.append(agreement)
        notes += [f"judge: {v['judge_base']} served by the node, trusted at {v['judge_trust']}; the judge agent paid "
                  f"{format_amount(int(v['judge_spent']))} LGR for its calls",
                  "baseline validator agent: the same example agent scoring from the gate findings alone",
                  f"the dishonest agent lost {format_amount(int(v['dishonest_loss']['slashed']))} LGR of stake to "
                  f"slashing and forwent {format_amount(int(v['dishonest_loss']['rewards_forgone']))} LGR of the "
                  "rewards an honest validator with the same stake earned",
                  "slashed stake is held by Staking for its dispute time (3 days by default, when the admin key may "
                  "give it back) before it can be released into a reward pool: within this run the validators' "
                  "rewards are the validator pool's share of inference fees only"]
    write_result("agents", result, tables, notes=notes)


if __name__ == "__main__":
    main()
