"""Agents under policy: overspend and off-policy attempts, how many each guard refuses, and violations.

    python benchmarks/agents.py                    # 6 buyer agents, 2 epochs, 8 attempts each per epoch
    python benchmarks/agents.py --agents 20 --epochs 3 --attempts 12

A fresh node serves a tiny random Llama at a price. Buyer agents with per-epoch budgets, a model allow-list
and a price cap make a random mix of attempts each epoch: honest short calls, overspends (a max_tokens whose
worst case exceeds the budget), calls to a model the policy does not allow, and calls from agents whose price
cap is below the model's price. The same attempts are replayed by a baseline consumer that holds an API key
under the same escrow cap but no agent policy (the node's cap only). After each epoch closes, the escrow's
on-chain `spent` is compared with each agent's cap, and the node's hot key tries to settle one base unit past
each cap directly on the contract (a node whose own check is bypassed). Violations: an off-policy attempt
that was served, a budget exceeded, or a settlement above a cap that the chain accepted. Goal: 0.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
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
from ledgerlm.chain import ChainError, Debit  # noqa: E402
from ledgerlm.client import NodeClient  # noqa: E402
from ledgerlm.config import Home  # noqa: E402
from ledgerlm.errors import LedgerError  # noqa: E402
from ledgerlm.identity import Keyring  # noqa: E402
from ledgerlm.node import Node  # noqa: E402
from ledgerlm.store.schema import spending_caps  # noqa: E402

UNIT = 10**18
PRICE = 10**15
BUDGET = 2 * 10**14  # a few short calls per epoch
PASSPHRASE = "agents-benchmark"
KINDS = ("honest", "overspend", "disallowed_model", "price_cap")


def attempt(kind: str) -> dict:
    max_tokens = 5000 if kind == "overspend" else 4
    model = "not-allowed" if kind == "disallowed_model" else "tiny"
    return {"model": model, "prompt": "What colour is the reef?", "max_tokens": max_tokens}


def run(agents: int, epochs: int, attempts: int, seed: int) -> dict:
    from ledgerlm.factory import tiny_random_model

    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="ledgerlm-agents-bench-"))
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.serving_base_price, config.torch_threads = str(PRICE), 1
    home.save_config(config)
    owner = Account.from_key(keccak(text="agents-benchmark:owner"))
    counts = {arm: Counter() for arm in ("policy", "baseline")}
    violations = Counter()
    spend: Counter = Counter()
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.bench",
                    client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        node = http.app.state.node
        client.factory.register_base("tiny", str(tiny_random_model(root / "tiny", ["The reef is copper."])))
        client.chain.faucet(owner.address, eth_wei=UNIT, tokens=100 * UNIT)
        registry, keyring = AgentRegistry(home.root / "agents"), Keyring(home.keys)
        wallets, baselines = [], []
        for i in range(agents):
            # every third agent caps the price below the model's: each of its calls is off-policy
            cap_price = PRICE // 10 if i % 3 == 2 else PRICE
            policy = AgentPolicy(budget=BUDGET, per_epoch=True, allow_models=["tiny"], max_price_per_1k=cap_price)
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
                    kind = rng.choice(KINDS[:3])
                    if i % 3 == 2 and kind == "honest":
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
            with node.db.connect() as conn:
                caps = {r["consumer"]: r for r in conn.execute(
                    select(spending_caps).where(spending_caps.c.epoch == number)).mappings()}
            for wallet in wallets:
                address = wallet.account.address
                spent = node.contracts.escrow.spent(address, number)
                spend["buyer agents"] += spent
                violations["policy: budget exceeded on chain"] += spent > BUDGET
                cap = caps.get(address)
                if cap is None:
                    continue
                debit = Debit(address, int(cap["cap"]) + 1, int(cap["cap"]), int(cap["deadline"]),
                              bytes.fromhex(cap["signature"].removeprefix("0x")))
                try:
                    node.contracts.escrow.settle(node.account, number, 10_000 + wallets.index(wallet), [debit])
                    violations["chain: settlement above cap accepted"] += 1
                except ChainError:
                    counts["policy"]["bypass:refused by chain"] += 1
            for consumer, _ in baselines:
                spend["baseline consumers"] += node.contracts.escrow.spent(consumer.address, number)
    return {"agents": agents, "epochs": epochs, "attempts_per_epoch": attempts, "seed": seed,
            "counts": {arm: dict(c) for arm, c in counts.items()}, "violations": dict(violations),
            "spend": {k: str(v) for k, v in spend.items()}}


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
    args = p.parse_args()
    started = time.perf_counter()
    result = run(args.agents, args.epochs, args.attempts, args.seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    table = ResultTable("Agents under policy: attempts by kind and outcome", ["arm", "attempt", "outcome", "count"])
    for arm, counts in result["counts"].items():
        for key, n in sorted(counts.items()):
            kind, outcome = key.split(":")
            table.add_row(arm, kind, outcome, n)
    faults = ResultTable("Violations", ["violation", "count"])
    for name in ("policy: off-policy call served", "policy: budget exceeded on chain",
                 "chain: settlement above cap accepted", "baseline: off-policy call served"):
        faults.add_row(name, result["violations"].get(name, 0))
    write_result("agents", result, [table, faults],
                 notes=["baseline: the same attempts with an API key under the same escrow cap, without an agent policy"])


if __name__ == "__main__":
    main()
