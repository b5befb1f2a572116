"""Revenue shares: gas to issue, transfer and claim, how the per-epoch cost of paying holders grows with the
number of holders and assets, against paying each holder by a direct LGR transfer, and conservation of each
asset's revenue across random transfers during an epoch.

    python benchmarks/liquidity.py                               # 10/100/1000 holders x 1 asset, 100 x 10
    python benchmarks/liquidity.py --holders 10,100 --assets 1   # a smaller grid
    python benchmarks/liquidity.py --transfers 40 --epochs 3     # the conservation run

Each grid row builds a fresh embedded chain with the real contracts and a database, issues A Datanet share
tokens through the RevenueShareFactory with H holders each (the allocation is the Merkle drop; a few holders
claim theirs and trade, the rest hold unclaimed leaves, which earn the same), writes fee receipts that fill
each Datanet's data pool, and times `EpochCloser.close()`: holders read from Transfer logs and `balancesAt`,
the holder split merged into the payout tree, settlement and root posting. The baseline pays the same
holders the same amounts by one LGR `transfer` each, on the same chain in the same run (measured for up to
100 holders; beyond that, the measured per-transfer gas and time times the number of holders).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # measure this checkout, not an installed one

from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402
from report import ResultTable, write_result  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from economy import Setup as EconomySetup  # noqa: E402
from ledgerlm.chain import Contracts, cap_nonce, deploy_all, open_embedded  # noqa: E402
from ledgerlm.economy import FeeShares, open_epoch, split_fee  # noqa: E402
from ledgerlm.economy.close import EpochCloser, published_files  # noqa: E402
from ledgerlm.economy.payouts import payout_tree  # noqa: E402
from ledgerlm.economy.shares import load_assets  # noqa: E402
from ledgerlm.money import split_by_weight  # noqa: E402
from ledgerlm.store import Database  # noqa: E402
from ledgerlm.store.schema import epoch_payouts, receipts, share_assets, signed_actions  # noqa: E402

UNIT = 10**18
ETHER = 10**18
SHARES = FeeShares(500, 4000, 4500, 1000)
SUPPLY = 10**6 * UNIT
TRADERS = 8  # holders per asset who claim their allocation and trade during the epoch
MEASURED_BASELINE = 100  # direct transfers actually sent per row; larger rows extrapolate from them


def account(label: str):
    return Account.from_key(keccak(text=f"liquidity-benchmark:{label}"))


class Market:
    """A fresh embedded chain with the contracts, a database, a funded consumer and its node's closer."""

    def __init__(self, workdir: Path, traders: list):
        self.admin, self.node, self.treasury, self.consumer = (account(n) for n in
                                                               ("admin", "node", "treasury", "consumer"))
        gas = [self.admin, self.node, self.treasury, self.consumer, *traders]
        self.chain = open_embedded(workdir / "chain", prefund={a.address: 100 * ETHER for a in gas}, durable=False)
        self.c = Contracts(self.chain, deploy_all(self.chain, self.admin, treasury=self.treasury.address,
                                                  node=self.node.address))
        self.db = Database.at(workdir / "ledger.db")
        self.db.upgrade()
        self.closer = EpochCloser(self.db, self.c, self.node, workdir / "epochs")
        self.c.token.transfer(self.treasury, self.consumer.address, 10**6 * UNIT)
        self.c.escrow.deposit(self.consumer, 10**6 * UNIT)

    def issue(self, name: str, allocation: dict[str, int]) -> tuple[int, str]:
        """Register Datanet `name` and issue its shares with this allocation, as `Shares.issue` does once it has
        checked the owner's signatures and computed the allocation; returns (issue gas, token)."""
        asset_id = keccak(text=name)
        self.c.registry.register_datanet(self.node, asset_id, self.treasury.address, name, b"\x01" * 32, "CC0")
        tree = payout_tree(sorted(allocation.items()))
        deadline = self.chain.head().timestamp + 3600
        token_name, symbol = f"ledgerlm datanet {name}", name.upper()[:11]
        consent = self.c.share_factory.sign_share_issue(self.treasury, 0, asset_id, SUPPLY, tree.root, deadline,
                                                        name=token_name, symbol=symbol)
        gas = self.c.share_factory.issue(self.node, 0, asset_id, token_name, symbol, SUPPLY, tree.root, deadline,
                                         consent).gas_used
        token = self.c.share_factory.share_of(0, asset_id)
        leaves = [{"account": v[0], "amount": str(v[1]), "proof": tree.proof(i)} for i, v in enumerate(tree.values)]
        with self.db.begin() as conn:
            action_id = conn.execute(insert(signed_actions).values(
                action="IssueShares", signer=self.treasury.address, nonce=uuid.uuid4().hex, deadline=0,
                chain_id=self.chain.chain_id, message={"asset": name}, signature="0x", created_at=0,
            )).inserted_primary_key[0]
            conn.execute(insert(share_assets).values(
                kind="datanet", asset=name, asset_id="0x" + asset_id.hex(), version=1, token=token,
                name=f"ledgerlm datanet {name}", symbol=name.upper()[:11], supply=str(SUPPLY),
                owner=self.treasury.address, owner_bps=0, allocation_root=tree.root, allocation=leaves,
                action_id=action_id, tx=None, block=self.c.share_token(token).issued_block(), created_at=0))
        return gas, token

    def leaf(self, name: str, address: str) -> dict:
        with self.db.connect() as conn:
            asset = load_assets(conn)[("datanet", name)]
        return next(x for x in asset.allocation if x["account"] == address)

    def fees_for(self, datanets: list[str], per_datanet: int, rng: random.Random) -> int:
        """Receipts whose whole contributor and validator shares fill each Datanet's data pool; returns the
        consumer's total, after raising the consumer's standing cap to cover it."""
        rows, total = [], 0
        with self.db.begin() as conn:
            epoch = open_epoch(conn)
            for name in datanets:
                for _ in range(per_datanet):
                    fee = rng.randrange(10**16, 10**18)
                    payouts = split_fee(fee, SHARES, node=self.node.address, developer=self.admin.address,
                                        datanet=name)
                    rows.append({"id": uuid.uuid4().hex, "epoch": epoch, "consumer": self.consumer.address,
                                 "model_id": "m", "adapter_sha256": None, "prompt_tokens": 1, "completion_tokens": 1,
                                 "price_per_1k": "1", "fee": str(fee), "fee_policy": SHARES.to_dict(),
                                 "payouts": [p.to_dict() for p in payouts], "datanet_roots": [], "attribution": None,
                                 "state": "final", "body": {}, "signature": None, "created_at": 0, "finalized_at": 0})
                    total += fee
            conn.execute(receipts.insert(), rows)
        # a standing cap that leaves exactly this epoch's total, signed by the consumer and relayed by the node
        spent = self.c.escrow.spending_cap(self.consumer.address, self.node.address).spent
        deadline = self.chain.head().timestamp + 30 * 24 * 3600
        self.c.escrow.set_spending_caps_with_sig(self.node, [self.c.escrow.sign_spending_cap(
            self.consumer, self.node.address, spent + total, cap_nonce(), deadline)])
        return total

    gas_sent_by = EconomySetup.gas_sent_by  # reads only self.chain

    def close(self) -> None:
        self.chain.close()
        self.db.close()


def random_allocation(holders: list[str], rng: random.Random) -> dict[str, int]:
    return split_by_weight(SUPPLY, {h: rng.randrange(1, 1000) for h in holders})


def shares_pools(m: Market, epoch: int) -> list[dict]:
    return [p for p in published_files(m.db, epoch, m.c)["payouts"]["pools"] if p["kind"] == "shares"]


def grid_row(holders: int, assets: int, seed: int) -> dict:
    """Issue A assets with H holders each, trade a little, close one epoch, claim; and the direct-transfer
    baseline paying the same holders the same amounts."""
    rng = random.Random(seed)
    traders = [account(f"trader-{i}") for i in range(TRADERS)]
    with tempfile.TemporaryDirectory() as tmp:
        m = Market(Path(tmp), traders)
        try:
            names = [f"asset-{i}" for i in range(assets)]
            issue_gas, tokens = [], {}
            for name in names:
                others = [account(f"{name}-holder-{i}").address for i in range(holders - TRADERS)]
                gas, tokens[name] = m.issue(name, random_allocation([t.address for t in traders] + others, rng))
                issue_gas.append(gas)
            claim_alloc = transfer_cold = transfer_warm = 0
            for name in names:  # traders claim their leaves and trade among themselves before the close
                token = m.c.share_token(tokens[name])
                for t in traders:
                    leaf = m.leaf(name, t.address)
                    claim_alloc = token.claim_allocation(t, t.address, int(leaf["amount"]), leaf["proof"]).gas_used
                newcomer = account(f"{name}-newcomer").address
                transfer_cold = token.transfer(traders[0], newcomer, UNIT).gas_used
                transfer_warm = token.transfer(traders[1], traders[2].address, UNIT).gas_used
            fees = m.fees_for(names, 3, rng)
            first = m.chain.block_number() + 1
            started = time.perf_counter()
            summary = m.closer.close()
            close_s = time.perf_counter() - started
            close_gas = m.gas_sent_by(m.node.address, first)
            assert int(summary["charged"]) == fees, summary
            pools = shares_pools(m, 1)
            revenue = sum(int(p["amount"]) for p in pools)
            assert all(sum(int(v) for v in p["split"].values()) == int(p["amount"]) for p in pools)
            with m.db.connect() as conn:
                leaves = conn.execute(select(func.count()).select_from(epoch_payouts)).scalar()
                row = conn.execute(select(epoch_payouts).where(epoch_payouts.c.account == traders[3].address)
                                   ).mappings().one()
            # the distributor knows the epoch by the id that binds it to its node
            claim_gas = m.c.distributor.claim(m.node, m.closer.chain_epoch(1), row["account"], int(row["amount"]),
                                              row["proof"]).gas_used
            paid = [(a, int(v)) for p in pools for a, v in p["split"].items()]
            baseline_gas, baseline_s = baseline(m, paid[:MEASURED_BASELINE])
            scale = len(paid) / min(len(paid), MEASURED_BASELINE)
        finally:
            m.close()
    holders_paid = len(paid)
    return {"holders": holders, "assets": assets, "holders_paid": holders_paid, "payout_leaves": leaves,
            "revenue": str(revenue), "conserved": revenue == sum(v for _, v in paid),
            "issue_gas": round(sum(issue_gas) / len(issue_gas)), "claim_allocation_gas": claim_alloc,
            "transfer_gas_cold": transfer_cold, "transfer_gas_warm": transfer_warm,
            "close_s": round(close_s, 2), "close_gas": close_gas, "payout_claim_gas": claim_gas,
            "ours_gas_per_holder_all_claim": (close_gas + claim_gas * holders_paid) / holders_paid,
            "baseline_gas": round(baseline_gas * scale), "baseline_s": round(baseline_s * scale, 2),
            "baseline_measured": min(holders_paid, MEASURED_BASELINE),
            "baseline_gas_per_holder": baseline_gas / min(holders_paid, MEASURED_BASELINE)}


def baseline(m: Market, paid: list[tuple[str, int]]) -> tuple[int, float]:
    """Pay these holders these amounts by one LGR transfer each from the treasury: (gas, seconds)."""
    started = time.perf_counter()
    gas = sum(m.c.token.transfer(m.treasury, account_, amount).gas_used for account_, amount in paid)
    return gas, time.perf_counter() - started


def conservation(transfers: int, epochs: int, seed: int) -> dict:
    """Random share transfers among a few holders during each epoch; each close must pay the Datanet's revenue
    exactly, split by balance at the closing block."""
    rng = random.Random(seed)
    people = [account(f"holder-{i}") for i in range(6)]
    checked = []
    with tempfile.TemporaryDirectory() as tmp:
        m = Market(Path(tmp), people)
        try:
            _, address = m.issue("pool", random_allocation([p.address for p in people], rng))
            token = m.c.share_token(address)
            for p in people:
                leaf = m.leaf("pool", p.address)
                token.claim_allocation(p, p.address, int(leaf["amount"]), leaf["proof"])
            for _ in range(epochs):
                for _ in range(transfers):
                    src, dst = rng.sample(people, 2)
                    have = token.balance_of(src.address)
                    if have:
                        token.transfer(src, dst.address, rng.randrange(1, have + 1))
                m.fees_for(["pool"], 2, rng)
                summary = m.closer.close()
                pool = shares_pools(m, summary["epoch"])[0]
                balances = {p.address: token.balance_at(p.address, pool["block"]) for p in people}
                expected = split_by_weight(int(pool["amount"]), {a: v for a, v in balances.items() if v})
                split = {a: int(v) for a, v in pool["split"].items()}
                checked.append({"epoch": summary["epoch"], "revenue": pool["amount"],
                                "paid": str(sum(split.values())), "error": sum(split.values()) - int(pool["amount"]),
                                "matches_balances": split == expected})
        finally:
            m.close()
    return {"transfers_per_epoch": transfers, "epochs": checked,
            "max_abs_error": max(abs(c["error"]) for c in checked),
            "all_match_balances": all(c["matches_balances"] for c in checked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", default="10,100,1000", help="holders per asset, comma-separated")
    parser.add_argument("--assets", default="1", help="assets per row, comma-separated (crossed with --holders)")
    parser.add_argument("--extra", default="100x10", help="more HOLDERSxASSETS rows, comma-separated ('' for none)")
    parser.add_argument("--transfers", type=int, default=20, help="random transfers per epoch in the conservation run")
    parser.add_argument("--epochs", type=int, default=3, help="epochs in the conservation run")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    plan = [(int(h), int(a)) for a in args.assets.split(",") for h in args.holders.split(",")]
    plan += [tuple(int(x) for x in e.split("x")) for e in args.extra.split(",") if e]
    rows = []
    for holders, assets in plan:
        if holders < TRADERS:
            raise SystemExit(f"--holders: each asset needs at least {TRADERS} holders (its traders)")
        rows.append(grid_row(holders, assets, args.seed))
        print(rows[-1], flush=True)
    kept = conservation(args.transfers, args.epochs, args.seed)
    print(kept, flush=True)
    record(rows, kept)


def record(rows: list[dict], kept: dict) -> None:
    gas = ResultTable("Gas per action (embedded py-evm)", ["action", "gas"])
    first = rows[0]
    for label, key in (("issue shares (create the token, mint the supply into the drop)", "issue_gas"),
                       ("claim an allocation leaf", "claim_allocation_gas"),
                       ("transfer shares to a new holder", "transfer_gas_cold"),
                       ("transfer shares to a holder", "transfer_gas_warm"),
                       ("claim an epoch payout (EpochDistributor)", "payout_claim_gas")):
        gas.add_row(label, f"{first[key]:,}")
    scale = ResultTable("Paying holders each epoch: holder split in the payout tree vs a direct LGR transfer each", [
        "holders/asset", "assets", "holder payouts", "payout leaves (one per account)", "close s", "close gas",
        "gas/holder if all claim (ours)", "baseline s", "baseline gas", "gas/holder (baseline)", "conserved"])
    for r in rows:
        scale.add_row(f"{r['holders']:,}", r["assets"], f"{r['holders_paid']:,}", f"{r['payout_leaves']:,}",
                      f"{r['close_s']:.2f}", f"{r['close_gas']:,}", f"{r['ours_gas_per_holder_all_claim']:,.0f}",
                      f"{r['baseline_s']:.2f}", f"{r['baseline_gas']:,}", f"{r['baseline_gas_per_holder']:,.0f}",
                      "yes" if r["conserved"] else "NO")
    conserve = ResultTable("Conservation across random transfers during each epoch", [
        "epoch", "transfers", "revenue (base units)", "paid to holders", "error", "split == by balance at close"])
    for e in kept["epochs"]:
        conserve.add_row(e["epoch"], kept["transfers_per_epoch"], e["revenue"], e["paid"], e["error"],
                         "yes" if e["matches_balances"] else "NO")
    for t in (gas, scale, conserve):
        t.print()
    notes = [
        f"each asset: {TRADERS} holders claim their allocation and trade before the close; the others hold "
        "unclaimed leaves, which earn exactly as claimed shares do.",
        "close = the whole EpochCloser.close(): plan (holders from Transfer logs, balancesAt at the closing block, "
        "holder split, payout tree), settlement, root posting, payout file; close gas = the node's transactions.",
        "ours per holder = (close gas + one EpochDistributor claim per holder paid) / holders paid: the cost if "
        "every holder claims that epoch; a holder who never claims costs nothing on chain.",
        f"baseline = one LGR transfer per holder paid from a funded account, sent for the first "
        f"{MEASURED_BASELINE} holders of a row; larger rows scale the measured gas and time by holders paid.",
    ]
    write_result("liquidity", {"runs": rows, "conservation": kept}, [gas, scale, conserve], notes=notes)


if __name__ == "__main__":
    main()
