"""The chain event indexer: rebuilds the node's view of the settlement contracts from their logs, re-org safe."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ledgerlm.chain.deploy import Deployment
from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.port import Chain, ChainBlock
from ledgerlm.store import Database
from ledgerlm.store.schema import chain_blocks, chain_events, chain_reorgs

# Blocks asked for per step: one eth_getLogs over the range and batched header requests. Hosted L2
# endpoints cap a log query's range or result count; a refused range is halved and asked again.
DEFAULT_BATCH_BLOCKS = 1000
# Headers of blocks without events are kept this far below the indexed head, so a re-org up to this
# deep finds its fork point among stored hashes; older empty blocks are pruned.
DEFAULT_KEEP_HEADERS = 1024
# Steps in a row that found the chain moving under them before catch-up gives up.
MAX_RETRIES = 20


@dataclass(frozen=True)
class IndexStatus:
    """How far the index has come: its head against the chain's, and what it holds."""

    indexed_block: int | None  # None: nothing indexed yet
    indexed_hash: str | None
    chain_head: int
    confirmations: int
    lag: int  # final blocks not indexed yet
    events: int
    reorgs: int
    start_block: int
    finality: str = ""  # "safe" / "finalized": the node's tag decides which blocks are final, not the depth

    def to_dict(self) -> dict:
        return {"indexed_block": self.indexed_block, "indexed_hash": self.indexed_hash, "chain_head": self.chain_head,
                "confirmations": self.confirmations, "finality": self.finality or f"{self.confirmations} confirmation{'s' if self.confirmations != 1 else ''}",
                "lag": self.lag, "events": self.events, "reorgs": self.reorgs, "start_block": self.start_block}


@dataclass(frozen=True)
class IndexStep:
    """What one step did: blocks and events added, or a re-org rolled back."""

    blocks: int = 0
    events: int = 0
    reorg_depth: int = 0  # blocks undone
    retried: bool = False  # the chain moved under the step; nothing was written


class ChainIndexer:
    """Indexes every log of a deployment's contracts into `chain_blocks` / `chain_events`.

    It reads confirmed blocks (`confirmations` deep) in batches: headers first, then one
    eth_getLogs for the range, then the last header again, and writes a batch only when every
    parent hash links up and every log's block hash is the header's, so a chain that moved under it
    writes nothing. When the next block's parent is not the stored head, the chain re-orged: the
    indexer finds the last stored block still on the chain, deletes everything above it in one
    transaction, and indexes forward again from there.
    """

    def __init__(self, chain: Chain, db: Database, deployment: Deployment, *, confirmations: int = 1,
                 finality: str | None = None, batch_blocks: int = DEFAULT_BATCH_BLOCKS,
                 keep_headers: int = DEFAULT_KEEP_HEADERS):
        if confirmations < 1:
            raise ChainError("confirmations must be at least 1", field="confirmations")
        if finality not in (None, "safe", "finalized"):
            raise ChainError(f"finality must be 'safe' or 'finalized', got {finality!r}", field="finality")
        self.finality = finality
        if batch_blocks < 1:
            raise ChainError("batch_blocks must be at least 1", field="batch_blocks")
        deployment.check(chain)
        self.chain = chain
        self.db = db
        self.deployment = deployment
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.keep_headers = keep_headers
        self.addresses = list(deployment.addresses.values())
        self._names = {address.lower(): name for name, address in deployment.addresses.items()}
        for name, address in deployment.addresses.items():
            chain.contract(name, address)  # teaches the port's ABI book these contracts' events

    # -- reading the index ---------------------------------------------------------------------

    def status(self) -> IndexStatus:
        head = self.chain.block_number()
        with self.db.connect() as conn:
            tip = _tip(conn)
            events = conn.execute(select(func.count()).select_from(chain_events)).scalar_one()
            reorgs = conn.execute(select(func.count()).select_from(chain_reorgs)).scalar_one()
        indexed = tip.number if tip else self.deployment.block - 1
        return IndexStatus(
            indexed_block=tip.number if tip else None, indexed_hash=tip.hash if tip else None, chain_head=head,
            confirmations=self.confirmations, lag=max(0, self._target(head) - indexed), events=events,
            reorgs=reorgs, start_block=self.deployment.block, finality=self.finality or "",
        )

    # -- indexing ------------------------------------------------------------------------------

    def catch_up(self, *, max_blocks: int | None = None,
                 progress: Callable[[IndexStatus], None] | None = None) -> IndexStatus:
        """Index until the confirmed head (or `max_blocks` more blocks); re-orgs on the way are undone."""
        self._forget_other_deployments()
        done = retries = 0
        while max_blocks is None or done < max_blocks:
            step = self.step(limit=None if max_blocks is None else max_blocks - done)
            done += step.blocks
            retries = retries + 1 if step.retried else 0
            if retries > MAX_RETRIES:
                raise ChainError(f"the chain kept changing under the indexer ({MAX_RETRIES} tries in a row); "
                                 "check the node behind the RPC URL", status=503)
            if progress is not None:
                progress(self.status())
            if not (step.blocks or step.reorg_depth or step.retried):
                break
        return self.status()

    def _forget_other_deployments(self) -> None:
        """An index built for contracts this home no longer uses (a redeploy) is rebuilt from scratch."""
        watched = {a.lower() for a in self.addresses}
        with self.db.connect() as conn:
            seen = {a.lower() for (a,) in conn.execute(select(chain_events.c.address).distinct())}
            tip = _tip(conn)
        if seen - watched or (tip is not None and tip.number < self.deployment.block - 1):
            with self.db.begin() as conn:
                conn.execute(delete(chain_events))
                conn.execute(delete(chain_blocks))

    def step(self, limit: int | None = None) -> IndexStep:
        """Index one batch of confirmed blocks, or undo a re-org; an idle step does nothing."""
        head = self.chain.block_number()
        target = self._target(head)
        with self.db.connect() as conn:
            tip = _tip(conn)
        first = tip.number + 1 if tip else self.deployment.block
        if tip is not None and not self._on_chain(tip, head):
            return IndexStep(reorg_depth=self._roll_back(tip, head))
        if first > target:
            return IndexStep()
        last = min(target, first + self.batch_blocks - 1, first + (limit or self.batch_blocks) - 1)
        headers = self.chain.block_headers(first, last)
        if tip is not None and headers[0].parent_hash != tip.hash:
            return IndexStep(reorg_depth=self._roll_back(tip, head))
        if any(b.parent_hash != a.hash for a, b in zip(headers, headers[1:])):
            return IndexStep(retried=True)  # the chain re-orged while the headers were read
        logs, last = self._logs(first, last)
        headers = headers[: last - first + 1]
        by_number = {h.number: h for h in headers}
        if self.chain.block_headers(last, last)[0].hash != headers[-1].hash or any(
            "0x" + bytes(log["blockHash"]).hex() != by_number[int(log["blockNumber"])].hash for log in logs
        ):
            return IndexStep(retried=True)  # the logs came from another branch than the headers
        rows = [self._event_row(log) for log in logs]
        counts: dict[int, int] = {}
        for row in rows:
            counts[row["block_number"]] = counts.get(row["block_number"], 0) + 1
        try:
            with self.db.begin() as conn:
                if _tip(conn) != tip:
                    return IndexStep(retried=True)  # another indexer process got here first
                conn.execute(insert(chain_blocks), [
                    {"number": h.number, "hash": h.hash, "parent_hash": h.parent_hash, "timestamp": h.timestamp,
                     "event_count": counts.get(h.number, 0)} for h in headers])
                if rows:
                    conn.execute(insert(chain_events), rows)
                conn.execute(delete(chain_blocks).where(
                    chain_blocks.c.number < last - self.keep_headers, chain_blocks.c.event_count == 0))
        except IntegrityError:  # another process wrote the same blocks at the same moment: read its result
            return IndexStep(retried=True)
        return IndexStep(blocks=len(headers), events=len(rows))

    def _target(self, head: int) -> int:
        """The last block the index may read: `confirmations` deep, or the node's safe / finalized block."""
        if self.finality:
            return min(head, self.chain.block(self.finality).number)
        return head - (self.confirmations - 1)

    def _on_chain(self, block: ChainBlock, head: int) -> bool:
        if block.number > head:
            return False  # the chain is now shorter than the index
        return self.chain.block_headers(block.number, block.number)[0].hash == block.hash

    def _logs(self, first: int, last: int) -> tuple[list[Any], int]:
        """Logs of the range, halving it while the node refuses it as too large; returns the range's new end."""
        while True:
            try:
                return self.chain.raw_logs(self.addresses, first, last), last
            except ChainError:
                raise
            except Exception as exc:  # noqa: BLE001 - each provider words its range limit differently
                if last == first:
                    raise ChainError(f"the node refused the logs of block {first}: {exc}", status=502) from exc
                last = first + (last - first) // 2

    def _event_row(self, log: Any) -> dict:
        event = self.chain.abi_book.decode_log(log)
        address = event.address
        return {
            "block_number": int(log["blockNumber"]), "log_index": int(log["logIndex"]),
            "tx_hash": "0x" + bytes(log["transactionHash"]).hex(),
            "contract": self._names.get(address.lower(), "unknown"), "address": address,
            "event": event.name or "unknown", "args": {k: _json_value(v) for k, v in event.args.items()},
        }

    def _roll_back(self, tip: ChainBlock, head: int) -> int:
        """Delete every indexed block above the last one still on the chain; returns how many went."""
        ancestor = self._common_ancestor(head)
        with self.db.begin() as conn:
            blocks = conn.execute(select(func.count()).select_from(chain_blocks)
                                  .where(chain_blocks.c.number > ancestor)).scalar_one()
            events = conn.execute(delete(chain_events).where(chain_events.c.block_number > ancestor)).rowcount
            conn.execute(delete(chain_blocks).where(chain_blocks.c.number > ancestor))
            conn.execute(insert(chain_reorgs).values(
                detected_at_block=tip.number, ancestor=ancestor, blocks_undone=tip.number - ancestor,
                events_undone=events, at=int(time.time())))
        return max(blocks, tip.number - ancestor)

    def _common_ancestor(self, head: int) -> int:
        """The highest stored block still on the chain (binary search: below a shared block, all are shared)."""
        with self.db.connect() as conn:
            stored = [ChainBlock(r.number, r.hash, r.parent_hash, r.timestamp, 0, ()) for r in conn.execute(
                select(chain_blocks).where(chain_blocks.c.number <= head).order_by(chain_blocks.c.number))]
        low, high, found = 0, len(stored) - 1, self.deployment.block - 1
        while low <= high:
            middle = (low + high) // 2
            if self._on_chain(stored[middle], head):
                found, low = stored[middle].number, middle + 1
            else:
                high = middle - 1
        return found


def _tip(conn: Connection) -> ChainBlock | None:
    row = conn.execute(select(chain_blocks).order_by(chain_blocks.c.number.desc()).limit(1)).first()
    if row is None:
        return None
    return ChainBlock(row.number, row.hash, row.parent_hash, row.timestamp, 0, ())


def _json_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)  # uint256 does not fit a JSON number
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value
