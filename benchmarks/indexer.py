"""Chain event indexer: catch-up speed (blocks/s, events/s) and re-org recovery time on an OP Stack-style L2.

    python benchmarks/indexer.py                      # 5,000 blocks, 200 of them with 25 deposits each
    python benchmarks/indexer.py --blocks 20000 --depths 1,10,100

A fresh anvil in OP Stack mode (chain id 901, EIP-1559) gets the real contracts and a history of
`--blocks` blocks: `--event-blocks` of them hold one `depositFor` crediting `--per-tx` consumers (one
`Deposited` log each), the rest are empty. Then, each into a fresh database with the same schema:

- ours: `ChainIndexer.catch_up()` (batched headers, one eth_getLogs per range, parent-hash checks);
- baseline: a per-block indexer, one eth_getBlockByNumber and one eth_getLogs per block, each block
  written in its own transaction: what an indexer without range queries does.

Both must store the same events (checked); CPU seconds are this process's (the indexer's), not anvil's.
Re-org recovery: with the index at the head, the chain is reverted (`evm_snapshot`/`evm_revert`) by
D blocks that held deposits and grows a different branch of D+1 blocks; we time the catch-up that
finds the fork by parent hash, rolls back and indexes the new branch, against re-indexing the whole
chain from the deployment block, and check both give the same events.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # measure this checkout, not an installed one

from eth_account import Account  # noqa: E402
from report import ResultTable, write_result  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from ledgerlm.chain import ChainIndexer, Contracts, deploy_all, open_rpc  # noqa: E402
from ledgerlm.chain.anvil import anvil_node  # noqa: E402
from ledgerlm.chain.indexer import _json_value  # noqa: E402
from ledgerlm.store import Database  # noqa: E402
from ledgerlm.store.schema import chain_blocks, chain_events, chain_reorgs  # noqa: E402

ANVIL = Path(__file__).resolve().parents[1] / "contracts" / "node_modules" / ".bin" / "anvil"
ANVIL_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's public dev key
L2_CHAIN_ID = 901
UNIT = 10**18


class History:
    """A deployment on a fresh L2 and the means to grow its history."""

    def __init__(self, url: str):
        # bump_after: after an evm_revert the sender's nonce book is ahead of the chain; fill the gap quickly
        self.chain = open_rpc(url, expected_chain_id=L2_CHAIN_ID, poll_latency=0.01, bump_after=0.2)
        self.admin = Account.from_key(ANVIL_FUNDER_KEY)
        node = Account.create()
        self.chain.send_eth(self.admin, node.address, UNIT)
        self.deployment = deploy_all(self.chain, self.admin, treasury=self.admin.address, node=node.address)
        self.contracts = Contracts(self.chain, self.deployment)
        self.contracts.token.approve(self.admin, self.contracts.escrow.address, 10**9 * UNIT)
        self.deposits = 0

    def rpc(self, method: str, *params):
        response = self.chain.w3.provider.make_request(method, list(params))
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response.get("result")

    def deposit_block(self, per_tx: int) -> None:
        consumers = [Account.create().address for _ in range(per_tx)]
        self.contracts.escrow.deposit_for(self.admin, consumers, [UNIT] * per_tx)
        self.deposits += per_tx

    def grow(self, blocks: int, event_blocks: int, per_tx: int) -> None:
        """`blocks` more blocks, `event_blocks` of them with a deposit for `per_tx` consumers, spread evenly."""
        empty = blocks - event_blocks
        for i in range(event_blocks):
            self.deposit_block(per_tx)
            gap = empty * (i + 1) // event_blocks - empty * i // event_blocks
            if gap:
                self.rpc("anvil_mine", hex(gap))
        if event_blocks == 0 and empty:
            self.rpc("anvil_mine", hex(empty))


def fresh_db(workdir: Path, name: str) -> Database:
    db = Database.at(workdir / f"{name}.db")
    db.upgrade()
    return db


def events_of(db: Database) -> list[tuple]:
    with db.connect() as conn:
        return [(r.block_number, r.log_index, r.tx_hash, r.event, r.args) for r in conn.execute(
            select(chain_events).order_by(chain_events.c.block_number, chain_events.c.log_index))]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def index_ours(history: History, db: Database, batch: int):
    indexer = ChainIndexer(history.chain, db, history.deployment, batch_blocks=batch)
    return indexer.catch_up()


def index_per_block(history: History, db: Database) -> int:
    """The baseline: one header and one eth_getLogs per block, one transaction per block."""
    chain, deployment = history.chain, history.deployment
    names = {a.lower(): n for n, a in deployment.addresses.items()}
    indexer = ChainIndexer(chain, db, deployment)  # only to teach the port the contracts' events
    head = chain.block_number()
    for number in range(deployment.block, head + 1):
        block = chain.w3.eth.get_block(number)
        logs = chain.w3.eth.get_logs({"fromBlock": number, "toBlock": number, "address": indexer.addresses})
        rows = []
        for log in logs:
            event = chain.abi_book.decode_log(log)
            rows.append({"block_number": number, "log_index": int(log["logIndex"]),
                         "tx_hash": "0x" + bytes(log["transactionHash"]).hex(),
                         "contract": names.get(event.address.lower(), "unknown"), "address": event.address,
                         "event": event.name or "unknown",
                         "args": {k: _json_value(v) for k, v in event.args.items()}})
        with db.begin() as conn:
            conn.execute(insert(chain_blocks).values(
                number=number, hash="0x" + bytes(block["hash"]).hex(),
                parent_hash="0x" + bytes(block["parentHash"]).hex(), timestamp=int(block["timestamp"]),
                event_count=len(rows)))
            if rows:
                conn.execute(insert(chain_events), rows)
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5000, help="blocks of history after the deployment")
    parser.add_argument("--event-blocks", type=int, default=200, help="how many of them hold a deposit")
    parser.add_argument("--per-tx", type=int, default=25, help="consumers credited (Deposited logs) per deposit")
    parser.add_argument("--batch", type=int, default=1000, help="blocks per step of our indexer")
    parser.add_argument("--depths", default="1,10,100", help="re-org depths to recover from (blocks)")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]

    with tempfile.TemporaryDirectory() as tmp, anvil_node(
            ANVIL, chain_id=L2_CHAIN_ID, timeout=120, extra_args=("--network", "optimism")) as url:
        workdir = Path(tmp)
        history = History(url)
        print(f"building {args.blocks:,} blocks of history ({args.event_blocks} with {args.per_tx} deposits each)…")
        history.grow(args.blocks, args.event_blocks, args.per_tx)
        head = history.chain.block_number()
        blocks = head - history.deployment.block + 1

        ours_db, base_db = fresh_db(workdir, "ours"), fresh_db(workdir, "baseline")
        status, ours_wall, ours_cpu = timed(lambda: index_ours(history, ours_db, args.batch))
        _, base_wall, base_cpu = timed(lambda: index_per_block(history, base_db))
        ours_events, base_events = events_of(ours_db), events_of(base_db)
        if ours_events != base_events:
            raise SystemExit("the two indexers stored different events: the comparison would mean nothing")
        events = len(ours_events)

        catch_up = ResultTable("Indexer catch-up", [
            "indexer", "blocks", "events", "wall s", "blocks/s", "events/s", "CPU s", "blocks per CPU-s",
            "speed-up (wall)", "same events"])
        rows = []
        for name, wall, cpu in (("ours (batched)", ours_wall, ours_cpu), ("per-block baseline", base_wall, base_cpu)):
            rows.append({"indexer": name, "blocks": blocks, "events": events, "wall_s": wall, "cpu_s": cpu,
                         "blocks_per_s": blocks / wall, "events_per_s": events / wall,
                         "blocks_per_cpu_s": blocks / cpu if cpu else None})
            catch_up.add_row(name, f"{blocks:,}", f"{events:,}", f"{wall:.2f}", f"{blocks / wall:,.0f}",
                             f"{events / wall:,.0f}", f"{cpu:.2f}", f"{blocks / cpu:,.0f}" if cpu else "-",
                             f"{base_wall / wall:.1f}x" if name.startswith("ours") else "1.0x", "yes")

        reorg_table = ResultTable("Re-org recovery", [
            "depth (blocks undone)", "events undone", "new branch blocks", "recovery s (ours)",
            "full re-index s (baseline)", "speed-up", "same events as a fresh index"])
        reorgs = []
        indexer = ChainIndexer(history.chain, ours_db, history.deployment, batch_blocks=args.batch)
        for depth in depths:
            snapshot = history.rpc("evm_snapshot")
            history.grow(depth, min(depth, args.event_blocks), args.per_tx)  # the branch to be abandoned
            indexer.catch_up()
            history.rpc("evm_revert", snapshot)
            history.grow(depth + 1, 1, args.per_tx)  # a longer branch with different deposits
            status, wall, cpu = timed(indexer.catch_up)
            with ours_db.connect() as conn:
                undone = conn.execute(select(chain_reorgs.c.events_undone).order_by(chain_reorgs.c.id.desc())).first()[0]
            fresh = fresh_db(workdir, f"fresh-{depth}")
            _, full_wall, _ = timed(lambda db=fresh: index_ours(history, db, args.batch))
            same = events_of(ours_db) == events_of(fresh)
            reorgs.append({"depth": depth, "events_undone": undone, "new_blocks": depth + 1, "recovery_s": wall,
                           "recovery_cpu_s": cpu, "full_reindex_s": full_wall, "same_events": same,
                           "indexed_hash_is_head": status.indexed_hash == history.chain.head().hash})
            reorg_table.add_row(depth, f"{undone:,}", depth + 1, f"{wall:.3f}", f"{full_wall:.2f}",
                                f"{full_wall / wall:.0f}x", "yes" if same else "NO")

    catch_up.print()
    reorg_table.print()
    write_result("indexer", {"catch_up": rows, "reorgs": reorgs, "settings": vars(args)}, [catch_up, reorg_table],
                 notes=["ours = ChainIndexer: headers in JSON-RPC batches, one eth_getLogs per range of "
                        f"{args.batch} blocks, parent-hash checks; per-block baseline = one eth_getBlockByNumber and "
                        "one eth_getLogs per block, one database transaction per block.",
                        f"anvil --network optimism, chain id {L2_CHAIN_ID}, on loopback; SQLite database (WAL).",
                        "CPU s = this process (the indexer: requests, decoding, database writes), not anvil's.",
                        "same events: both indexers stored identical (block, log index, tx, event, args) rows.",
                        "re-org: evm_revert of D blocks that held deposits, then D+1 different blocks; recovery = "
                        "detect by parent hash, roll back to the common ancestor, index the new branch."])


if __name__ == "__main__":
    main()
