"""Settlement benchmark: gas per contract operation, amortised gas per attributed inference, tx/s.

Run:  .venv/bin/python benchmarks/settlement.py [--quick] [--no-anvil]

1. Gas per operation, read from receipts, on the embedded chain and on anvil (gas is set by the
   EVM, so the two columns must agree; a mismatch is flagged).
2. Amortised gas per attributed inference. N metered inferences (1k / 10k / 100k) by C consumers
   touch M contributors; one epoch settles them: one `settleEpoch` with C signed debits, then one
   `claim` per payout leaf (the M contributors plus node, developer and validator pool). Claims
   are measured on a sample of leaves when the tree is large and extrapolated (first claim of the
   epoch + mean of the others x remaining leaves); the table says which rows are sampled.
   Baseline: one on-chain ERC-20 transfer per inference per payee, payees = node, developer,
   validator pool and the top-k attributed contributors (k = min(M, 5)). Transfers are measured on a
   sample (to recipients that already hold tokens, the cheaper case, so the baseline is a lower
   bound) and multiplied; 100k inferences are never sent one by one.
3. Transactions/s for the same workload (sequential claims, each waited for) on the embedded chain
   (durable, as `ledgerlm serve` runs it, and without fsync) and on anvil, plus view calls/s.

Prints tables and writes benchmarks/results/settlement.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ledgerlm.chain import (
    Chain,
    Contracts,
    Debit,
    FeePolicy,
    StakeRole,
    deploy_all,
    open_embedded,
    open_rpc,
)
from ledgerlm.chain.anvil import anvil_node
from ledgerlm.chain.merkle import StandardMerkleTree

console = Console(width=150)
TOKEN = 10**18
ETHER = 10**18
ANVIL = ROOT / "contracts" / "node_modules" / ".bin" / "anvil"
PAYOUT_TYPES = ["address", "uint256"]
FIXED_PAYEES = 3  # node, model developer, validator pool: in every epoch tree and every inference
TOP_K_ATTRIBUTED = 5
COOLDOWN, WITHDRAW_DELAY = 3600, 600
INFERENCES = [1_000, 10_000, 100_000]


@dataclass
class Profile:
    contributors: list[int]
    consumers: int
    settle_debits: list[int]
    claim_sample: int
    transfer_sample: int
    throughput_claims: int
    throughput_calls: int


FULL = Profile(contributors=[10, 100, 1000], consumers=10, settle_debits=[1, 10, 100],
               claim_sample=32, transfer_sample=20, throughput_claims=100, throughput_calls=200)
QUICK = Profile(contributors=[10, 100], consumers=10, settle_debits=[1, 10], claim_sample=8,
                transfer_sample=5, throughput_claims=30, throughput_calls=50)


def key(label: str, index: int = 0) -> LocalAccount:
    return Account.from_key(keccak(text=f"ledgerlm-bench:{label}:{index}"))


@dataclass
class Bench:
    """Deployed contracts on one backend, with accounts that can pay for gas."""

    name: str
    chain: Chain
    contracts: Contracts
    admin: LocalAccount
    node: LocalAccount
    _next: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))

    def wallet(self, tokens: int = 0) -> LocalAccount:
        """A fresh account with gas money (prefunded at genesis on the embedded chain)."""
        account = key("wallet", next(self._next))
        if self.chain.kind != "embedded":
            self.chain.w3.provider.make_request("anvil_setBalance",
                                                [account.address, hex(100 * ETHER)])
        if tokens:
            self.contracts.token.mint(self.node, account.address, tokens)
        return account

    def consumer(self, deposit: int) -> LocalAccount:
        account = self.wallet(deposit)
        self.contracts.escrow.deposit(account, deposit)
        return account

    def now(self) -> int:
        return self.chain.head().timestamp


WALLETS = 400  # enough for the full profile's consumers and one-off accounts


def open_bench(name: str, *, directory: Path | None = None, url: str = "",
               durable: bool = True) -> Bench:
    admin, node = key("admin"), key("node")
    if url:
        chain = open_rpc(url, expected_chain_id=31337)
        for account in (admin, node):
            chain.w3.provider.make_request("anvil_setBalance",
                                           [account.address, hex(10**6 * ETHER)])
    else:
        prefund = {a.address: 10**6 * ETHER for a in (admin, node)}
        prefund.update({key("wallet", i).address: 100 * ETHER for i in range(WALLETS)})
        chain = open_embedded(directory, prefund=prefund, durable=durable)
    deployment = deploy_all(chain, admin, treasury=key("treasury").address, node=node.address,
                            cooldown=COOLDOWN, withdraw_delay=WITHDRAW_DELAY, node_funds_epochs=True)
    return Bench(name, chain, Contracts(chain, deployment), admin, node)


# --------------------------------------------------------------------------- measurements

def measure_operations(b: Bench) -> dict[str, int]:
    """Gas of one representative call of each operation, from its receipt."""
    c, node = b.contracts, b.node
    gas: dict[str, int] = {}
    developer, staker, consumer = b.wallet(), b.wallet(50 * TOKEN), b.wallet(50 * TOKEN)
    holder, recipient = b.wallet(10 * TOKEN), b.wallet(TOKEN)

    datanet = keccak(text="bench:datanet")
    gas["register datanet"] = c.registry.register_datanet(
        node, datanet, developer.address, "medical-qa", keccak(text="meta"), "CC-BY-4.0").gas_used
    root = keccak(text="bench:root:1")
    gas["publish version (first)"] = c.registry.publish_version(
        node, datanet, 1, root, 1200, keccak(text="manifest:1")).gas_used
    gas["publish version (next)"] = c.registry.publish_version(
        node, datanet, 2, keccak(text="bench:root:2"), 1300, keccak(text="manifest:2")).gas_used
    model = keccak(text="bench:model")
    gas["register model (1 version root)"] = c.registry.register_model(
        node, model, developer.address, "SmolLM2-135M-Instruct", keccak(text="base"),
        keccak(text="adapter"), [root], keccak(text="config"), keccak(text="metrics")).gas_used
    gas["set fee policy (developer)"] = c.registry.set_fee_policy(
        developer, model, FeePolicy(500, 4000, 4500, 1000)).gas_used

    gas["mint"] = c.token.mint(node, b.wallet().address, TOKEN).gas_used
    gas["approve"] = c.token.approve(holder, c.staking.address, TOKEN).gas_used
    gas["transfer (new holder)"] = c.token.transfer(holder, b.wallet().address, TOKEN).gas_used
    gas["transfer (existing holder)"] = c.token.transfer(holder, recipient.address,
                                                         TOKEN).gas_used

    c.token.approve(staker, c.staking.address, 20 * TOKEN)
    gas["stake"] = c.staking.stake(staker, StakeRole.VALIDATOR, 20 * TOKEN).gas_used
    gas["stake with permit"] = c.staking.stake_with_permit(
        staker, StakeRole.AGENT, 5 * TOKEN, b.now() + 3600).gas_used
    gas["request unstake"] = c.staking.request_unstake(staker, StakeRole.VALIDATOR,
                                                       5 * TOKEN).gas_used
    gas["slash"] = c.staking.slash(node, staker.address, StakeRole.VALIDATOR, 2 * TOKEN,
                                   keccak(text="reason")).gas_used
    b.chain.advance_time(COOLDOWN)
    gas["withdraw stake"] = c.staking.withdraw(staker, StakeRole.VALIDATOR).gas_used

    c.token.approve(consumer, c.escrow.address, 20 * TOKEN)
    gas["deposit"] = c.escrow.deposit(consumer, 20 * TOKEN).gas_used
    gas["deposit with permit"] = c.escrow.deposit_with_permit(consumer, 10 * TOKEN,
                                                              b.now() + 3600).gas_used
    gas["request withdrawal"] = c.escrow.request_withdrawal(consumer, 5 * TOKEN).gas_used
    b.chain.advance_time(WITHDRAW_DELAY)
    gas["withdraw from escrow"] = c.escrow.withdraw(consumer).gas_used

    payees = [(key("payee-ops", i).address, TOKEN) for i in range(8)]
    tree = StandardMerkleTree.of([list(p) for p in payees], PAYOUT_TYPES)
    c.token.mint(node, node.address, 8 * TOKEN)
    c.token.approve(node, c.distributor.address, 8 * TOKEN)
    gas["post epoch root + fund (direct)"] = c.distributor.fund_epoch(
        node, 1_000_000, tree.root, 8 * TOKEN).gas_used
    claims = [c.distributor.claim(node, 1_000_000, a, v, tree.proof(i)).gas_used
              for i, (a, v) in enumerate(payees[:2])]
    gas["claim (first of epoch, 8 leaves)"] = claims[0]
    gas["claim (later, 8 leaves)"] = claims[1]
    return gas


def settle(b: Bench, epoch: int, consumers: list[LocalAccount], charge: int,
           payouts: list[tuple[str, int]]) -> tuple[int, StandardMerkleTree]:
    deadline = b.now() + 3600
    debits = [Debit(c.address, charge, charge, deadline,
                    b.contracts.escrow.sign_spending_cap(c, b.node.address, epoch, charge,
                                                         deadline))
              for c in consumers]
    tree = StandardMerkleTree.of([list(p) for p in payouts], PAYOUT_TYPES)
    result = b.contracts.escrow.settle_epoch(b.node, epoch, tree.root, debits)
    return result.gas_used, tree


def split(total: int, parts: int) -> list[int]:
    """Integer shares that sum to `total` exactly."""
    shares = [total // parts] * parts
    shares[-1] += total - sum(shares)
    return shares


def debit_capacity(settle_by_debits: dict[int, int], block_gas_limit: int) -> dict[str, float]:
    """Marginal gas per debit, and the most debits one settleEpoch fits under the block gas limit.

    Each epoch is funded once, so an epoch's consumers must all be debited in one transaction.
    """
    few, many = min(settle_by_debits), max(settle_by_debits)
    per_debit = (settle_by_debits[many] - settle_by_debits[few]) / (many - few)
    fixed = settle_by_debits[few] - per_debit * few
    return {"gas_per_debit": per_debit, "fixed_gas": fixed, "block_gas_limit": block_gas_limit,
            "max_debits_per_epoch": int((block_gas_limit - fixed) // per_debit)}


def measure_settlement_by_debits(b: Bench, counts: list[int]) -> dict[int, int]:
    """settleEpoch gas as the number of consumers charged in the epoch grows."""
    out = {}
    for epoch, count in enumerate(counts, start=2_000_000):
        consumers = [b.consumer(5 * TOKEN) for _ in range(count)]
        shares = split(count * TOKEN, 4)
        payouts = [(key("payee-debits", i).address, v) for i, v in enumerate(shares)]
        out[count], _ = settle(b, epoch, consumers, TOKEN, payouts)
    return out


@dataclass
class EpochCost:
    contributors: int
    leaves: int
    settle_gas: int
    first_claim_gas: int
    later_claim_gas_mean: float
    claims_measured: int
    claims_gas_total: int
    proof_length: int

    @property
    def sampled(self) -> bool:
        return self.claims_measured < self.leaves

    @property
    def epoch_gas(self) -> int:
        return self.settle_gas + self.claims_gas_total


def measure_epoch(b: Bench, epoch: int, contributors: int, consumers: list[LocalAccount],
                  sample: int) -> EpochCost:
    """One epoch paying `contributors` plus the fixed payees; claims measured on a sample."""
    charge = TOKEN
    leaves = contributors + FIXED_PAYEES
    accounts = [key(f"payee-{epoch}", i).address for i in range(leaves)]
    payouts = list(zip(accounts, split(charge * len(consumers), leaves)))
    settle_gas, tree = settle(b, epoch, consumers, charge, payouts)
    measured = min(sample, leaves)
    indices = sorted({round(i * (leaves - 1) / max(measured - 1, 1)) for i in range(measured)})
    gas = [b.contracts.distributor.claim(b.node, epoch, *payouts[i], tree.proof(i)).gas_used
           for i in indices]
    later = gas[1:] or gas
    mean_later = sum(later) / len(later)
    total = gas[0] + round(mean_later * (leaves - 1))
    if len(indices) == leaves:
        total = sum(gas)
    return EpochCost(contributors, leaves, settle_gas, gas[0], mean_later, len(indices), total,
                     len(tree.proof(indices[-1])))


def measure_transfers(b: Bench, samples: int) -> float:
    """Mean gas of an ERC-20 transfer to a recipient that already holds tokens."""
    payer = b.wallet(samples * TOKEN + TOKEN)
    recipients = [key("baseline", i).address for i in range(samples)]
    for r in recipients:
        b.contracts.token.mint(b.node, r, 1)
    gas = [b.contracts.token.transfer(payer, r, TOKEN // 1000).gas_used for r in recipients]
    return sum(gas) / len(gas)


def measure_throughput(b: Bench, claims: int, calls: int) -> dict[str, float]:
    """Sequential claims, each sent, mined and its receipt read, then plain view calls."""
    payouts = [(key(f"tps-{b.name}", i).address, TOKEN + i) for i in range(claims)]
    tree = StandardMerkleTree.of([list(p) for p in payouts], PAYOUT_TYPES)
    total = sum(v for _, v in payouts)
    b.contracts.token.mint(b.node, b.node.address, total)
    b.contracts.token.approve(b.node, b.contracts.distributor.address, total)
    b.contracts.distributor.fund_epoch(b.node, 3_000_000, tree.root, total)
    proofs = [tree.proof(i) for i in range(claims)]
    start = time.perf_counter()
    for (account, amount), proof in zip(payouts, proofs):
        b.contracts.distributor.claim(b.node, 3_000_000, account, amount, proof)
    claim_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(calls):
        b.contracts.token.balance_of(payouts[i % claims][0])
    call_seconds = time.perf_counter() - start
    return {"claims": claims, "claim_seconds": claim_seconds, "tx_per_s": claims / claim_seconds,
            "calls": calls, "call_seconds": call_seconds, "calls_per_s": calls / call_seconds}


def run_backend(b: Bench, profile: Profile, *, full: bool = True) -> dict:
    t0 = time.perf_counter()
    result: dict = {}
    if full:
        console.log(f"[{b.name}] gas per operation")
        result["gas"] = measure_operations(b)
        console.log(f"[{b.name}] settlement gas by debits {profile.settle_debits}")
        result["settle_by_debits"] = measure_settlement_by_debits(b, profile.settle_debits)
        result["debit_capacity"] = debit_capacity(
            result["settle_by_debits"], int(b.chain.w3.eth.get_block("latest")["gasLimit"]))
        console.log(f"[{b.name}] epochs for M = {profile.contributors}")
        consumers = [b.consumer(len(profile.contributors) * 2 * TOKEN)
                     for _ in range(profile.consumers)]
        result["epochs"] = [measure_epoch(b, 4_000_000 + m, m, consumers, profile.claim_sample)
                            for m in profile.contributors]
        result["transfer_gas"] = measure_transfers(b, profile.transfer_sample)
    console.log(f"[{b.name}] throughput: {profile.throughput_claims} claims")
    result["throughput"] = measure_throughput(b, profile.throughput_claims,
                                              profile.throughput_calls)
    result["seconds"] = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------- report

def amortised_rows(epochs: list[EpochCost], transfer_gas: float, consumers: int) -> list[dict]:
    rows = []
    for e in epochs:
        payees = FIXED_PAYEES + min(e.contributors, TOP_K_ATTRIBUTED)
        for n in INFERENCES:
            ours = e.epoch_gas / n
            rows.append({
                "inferences": n, "contributors": e.contributors, "consumers": consumers,
                "payout_leaves": e.leaves, "settle_gas": e.settle_gas,
                "claims_gas": e.claims_gas_total, "claims_sampled": e.sampled,
                "claims_measured": e.claims_measured,
                "gas_per_inference": ours,
                "baseline_payees_per_inference": payees,
                "baseline_gas_per_inference": transfer_gas * payees,
                "baseline_one_transfer_gas_per_inference": transfer_gas,
                "saving_factor": transfer_gas * payees / ours,
            })
    return rows


def print_report(results: dict, profile: Profile) -> None:
    names = [name for name, b in results["backends"].items() if b["gas"]]
    gas_table = Table(title="Gas per operation (from receipts)")
    gas_table.add_column("operation")
    for name in names:
        gas_table.add_column(f"gas, {name}", justify="right")
    ops = results["backends"][names[0]]["gas"]
    mismatches = []
    for op in ops:
        values = [results["backends"][n]["gas"].get(op) for n in names]
        if len(set(values)) > 1:
            mismatches.append(op)
        gas_table.add_row(op, *(f"{v:,}" if v is not None else "-" for v in values))
    for count in profile.settle_debits:
        values = [results["backends"][n]["settle_by_debits"][count] for n in names]
        gas_table.add_row(f"settle epoch ({count} debit{'s' if count > 1 else ''})",
                          *(f"{v:,}" for v in values))
    console.print(gas_table)
    console.print("settleEpoch gas moves by a few dozen between runs and backends: its calldata "
                  "carries fresh signatures, and zero bytes cost 4 gas where others cost 16.")
    for name in names:
        cap = results["backends"][name]["debit_capacity"]
        console.print(f"{name}: settleEpoch costs {cap['fixed_gas']:,.0f} + "
                      f"{cap['gas_per_debit']:,.0f} per debit, so one epoch can charge at most "
                      f"{cap['max_debits_per_epoch']:,} consumers under the "
                      f"{cap['block_gas_limit']:,} block gas limit (each epoch settles once).")
    if mismatches:
        console.print(f"[red]gas differs between backends for: {', '.join(mismatches)}")

    primary = names[0]
    epochs = Table(title=f"One epoch on {primary}: settleEpoch with {profile.consumers} debits, "
                         f"then one claim per payout leaf (M contributors + {FIXED_PAYEES})")
    for col in ("M contributors", "leaves", "proof length", "settle gas", "first claim",
                "later claim (mean)", "claims measured", "all claims gas", "epoch gas"):
        epochs.add_column(col, justify="right")
    for e in results["backends"][primary]["epochs"]:
        measured = f"{e['claims_measured']} of {e['leaves']}"
        epochs.add_row(f"{e['contributors']:,}", f"{e['leaves']:,}", str(e["proof_length"]),
                       f"{e['settle_gas']:,}", f"{e['first_claim_gas']:,}",
                       f"{e['later_claim_gas_mean']:,.0f}",
                       measured + (" (extrapolated)" if e["sampled"] else ""),
                       f"{e['claims_gas_total']:,}", f"{e['epoch_gas']:,}")
    console.print(epochs)

    table = Table(title="Amortised gas per attributed inference: one epoch root vs one ERC-20 "
                        "transfer per inference per payee")
    for col in ("N inferences", "M contributors", "ours gas/inference",
                "baseline: 1 transfer/inference", "baseline payees", "baseline gas/inference",
                "x cheaper"):
        table.add_column(col, justify="right")
    for r in results["amortised"]:
        table.add_row(f"{r['inferences']:,}", f"{r['contributors']:,}",
                      f"{r['gas_per_inference']:,.1f}",
                      f"{r['baseline_one_transfer_gas_per_inference']:,.0f}",
                      str(r["baseline_payees_per_inference"]),
                      f"{r['baseline_gas_per_inference']:,.0f}", f"{r['saving_factor']:,.1f}")
    console.print(table)
    console.print(f"Baseline: one ERC-20 transfer per inference per payee, "
                  f"{results['transfer_gas']:,.0f} gas each (mean of "
                  f"{profile.transfer_sample} measured transfers to existing holders, multiplied "
                  f"— not sent {INFERENCES[-1]:,} times); payees = node + developer + validator "
                  f"pool + top-{TOP_K_ATTRIBUTED} attributed contributors. Deposits are excluded "
                  f"(one per consumer, amortised over many epochs).")

    tps = Table(title="Throughput, same workload on each backend (sequential claims, each "
                      "waited for)")
    for col in ("backend", "claims", "seconds", "tx/s", "view calls/s"):
        tps.add_column(col, justify="right")
    for name, backend in results["backends"].items():
        t = backend["throughput"]
        tps.add_row(name, str(t["claims"]), f"{t['claim_seconds']:.2f}", f"{t['tx_per_s']:.1f}",
                    f"{t['calls_per_s']:.0f}")
    console.print(tps)
    console.print(f"load average at start: {results['machine']['load_average_at_start']:.2f} on "
                  f"{results['machine']['cores']} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (M up to 100)")
    parser.add_argument("--no-anvil", action="store_true", help="embedded chain only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "settlement.json")
    args = parser.parse_args()
    profile = QUICK if args.quick else FULL
    load = os.getloadavg()[0]  # tx/s depends on what else the machine runs; record it
    use_anvil = not args.no_anvil and ANVIL.exists() and shutil.which("node") is not None
    if not args.no_anvil and not use_anvil:
        console.print("[yellow]anvil not installed (npm ci in contracts/): embedded chain only")

    backends: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        durable = open_bench("embedded", directory=Path(tmp) / "durable")
        try:
            backends["embedded"] = run_backend(durable, profile)
        finally:
            durable.chain.close()
        fast = open_bench("embedded, no fsync", directory=Path(tmp) / "fast", durable=False)
        try:
            backends["embedded, no fsync"] = run_backend(fast, profile, full=False)
        finally:
            fast.chain.close()
    if use_anvil:
        with anvil_node(ANVIL) as url:
            bench = open_bench("anvil", url=url)
            try:
                backends["anvil"] = run_backend(bench, profile)
            finally:
                bench.chain.close()

    primary = backends["embedded"]
    results = {
        "benchmark": "settlement",
        "profile": "quick" if args.quick else "full",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_average_at_start": load},
        "assumptions": {
            "consumers_per_epoch": profile.consumers,
            "fixed_payees": FIXED_PAYEES,
            "baseline_payees_per_inference": f"{FIXED_PAYEES} + min(M, {TOP_K_ATTRIBUTED})",
            "claims": f"measured on up to {profile.claim_sample} leaves per epoch, "
                      "extrapolated when the tree is larger",
            "baseline_transfers": f"mean of {profile.transfer_sample} measured transfers to "
                                  "existing holders, multiplied",
        },
        "transfer_gas": primary["transfer_gas"],
        "backends": {name: {
            "gas": b.get("gas", {}),
            "settle_by_debits": b.get("settle_by_debits", {}),
            "debit_capacity": b.get("debit_capacity", {}),
            "epochs": [asdict(e) | {"epoch_gas": e.epoch_gas, "sampled": e.sampled}
                       for e in b.get("epochs", [])],
            "throughput": b["throughput"],
            "seconds": b["seconds"],
        } for name, b in backends.items()},
        "amortised": amortised_rows(primary["epochs"], primary["transfer_gas"],
                                    profile.consumers),
    }
    print_report(results, profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {args.out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
