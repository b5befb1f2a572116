"""The embedded chain: an in-process EVM (py-evm through eth-tester) whose state lives in SQLite.

py-evm keeps every piece of chain state (trie nodes, headers, bodies, receipts, the canonical head
pointer, the tx-hash index) in one key-value store. Here that store is a SQLite table; its writes
are buffered in memory and land in one SQLite transaction after each mined block, so a process
killed at any moment restarts at the last mined block with everything up to it intact.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB
from eth.estimators.gas import binary_gas_search
from eth.exceptions import Revert as EVMRevert
from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_tester import EthereumTester
from eth_tester.backends.pyevm.main import (
    PyEVMBackend,
    _get_block_by_number,
    get_default_genesis_params,
)
from eth_tester.backends.pyevm.serializers import (
    serialize_transaction,
    serialize_transaction_receipt,
)
from eth_tester.exceptions import TransactionNotFound
from eth_utils import to_canonical_address
from eth_utils.toolz import assoc
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS, static_return

from ledgerlm.chain.errors import ChainError, RevertSignal
from ledgerlm.chain.port import Chain

DEFAULT_CHAIN_ID = 1337
DB_FILE = "evm.sqlite"
LOCK_FILE = "chain.lock"
ZERO_ADDRESS = "0x" + "00" * 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteKeyValueStore(BaseDB):
    """py-evm's key-value store over one SQLite table; writes wait in memory until `commit()`."""

    def __init__(self, path: Path, *, durable: bool = True):
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL also survives power loss; NORMAL (WAL) survives a killed process, which is faster.
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._conn.executescript(_SCHEMA)
        self._pending: dict[bytes, bytes | None] = {}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._pending:
            value = self._pending[key]
            if value is None:
                raise KeyError(key)
            return value
        row = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[bytes(key)] = bytes(value)

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._pending[bytes(key)] = None

    def _exists(self, key: bytes) -> bool:
        if key in self._pending:
            return self._pending[key] is not None
        row = self._conn.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone()
        return row is not None

    def commit(self, meta: dict[str, str]) -> None:
        """Write everything buffered since the last commit, plus `meta`, in one transaction."""
        writes = [(k, v) for k, v in self._pending.items() if v is not None]
        deletes = [(k,) for k, v in self._pending.items() if v is None]
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", writes)
            self._conn.executemany("DELETE FROM kv WHERE key = ?", deletes)
            self._conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                   list(meta.items()))
        self._pending.clear()

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._pending.clear()
        self._conn.close()


# The most gas an estimate may run, when its caller set one (the request's `gas`, as eth_estimateGas
# takes it on an RPC node): eth-tester replaces that field before the estimator sees the transaction.
_ESTIMATE_CAP: ContextVar[int | None] = ContextVar("estimate_cap", default=None)


def _estimate_gas(state, transaction) -> int:
    """Gas for `transaction` in about three EVM runs instead of py-evm's ~13-step binary search.

    Run once with the whole block (or the caller's cap) to learn what execution uses, then confirm
    a limit just above it; subcalls keep back 1/64 of the remaining gas at each depth, hence the
    64/63 margin.
    """
    cap = _ESTIMATE_CAP.get()
    limit = state.gas_limit if cap is None else min(state.gas_limit, cap)

    def attempt(gas: int):
        snapshot = state.snapshot()
        try:
            return state.apply_transaction(SpoofTransaction(transaction, gas=gas))
        finally:
            state.revert(snapshot)

    intrinsic = transaction.intrinsic_gas
    if not attempt(intrinsic).is_error:
        return intrinsic
    full = attempt(limit)
    if full.is_error:
        raise full.error
    guess = min(limit, (intrinsic + full.get_gas_used()) * 64 // 63 + 2_300)
    if not attempt(guess).is_error:
        return guess
    return binary_gas_search(state, transaction, tolerance=1_000)


def _chain_class(chain_id: int) -> type[MiningChain]:
    class LedgerDevChain(MiningChain):
        vm_configuration = ((0, PragueVM),)
        gas_estimator = staticmethod(_estimate_gas)

        def create_header_from_parent(self, parent_header, **header_params):
            # A constant gas limit, like eth-tester's own chain: block capacity never drifts.
            return super().create_header_from_parent(
                parent_header, **assoc(header_params, "gas_limit", parent_header.gas_limit)
            )

        def get_transaction_builder(self):
            return self.get_vm().get_transaction_builder()

    LedgerDevChain.chain_id = chain_id
    return LedgerDevChain


class PersistentPyEVMBackend(PyEVMBackend):
    """eth-tester's py-evm backend over a durable store, with wall-clock block times and no keys.

    It holds no accounts of its own, so the only way in is a raw transaction signed elsewhere.
    """

    def __init__(self, store: SQLiteKeyValueStore, chain_id: int,
                 prefund: dict[str, int] | None):
        self.store = store
        self.account_keys = ()
        chain_class = _chain_class(chain_id)
        base_db = AtomicDB(store)
        stored_id = store.meta("chain_id")
        if stored_id is None:
            genesis_state = {
                to_canonical_address(address): {"balance": int(wei), "nonce": 0, "code": b"",
                                                "storage": {}}
                for address, wei in (prefund or {}).items()
            }
            self.chain = chain_class.from_genesis(base_db, get_default_genesis_params(),
                                                  genesis_state)
            self.time_offset = 0
            self._commit(chain_id=str(chain_id))
        else:
            if int(stored_id) != chain_id:
                raise ChainError(
                    f"the embedded chain was created with chain id {stored_id}, "
                    f"not {chain_id}; open it with chain_id={stored_id}",
                    field="chain_id",
                )
            self.chain = chain_class(base_db)
            self.time_offset = int(store.meta("time_offset") or 0)

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise ChainError("the embedded chain never resets; delete its directory to start over")

    def _commit(self, **extra: str) -> None:
        self.store.commit({"time_offset": str(self.time_offset), **extra})

    def next_timestamp(self) -> int:
        parent = self.chain.get_canonical_head()
        return max(int(time.time()) + self.time_offset, parent.timestamp + 1)

    def _stamp_pending_block(self) -> None:
        # The pending header is made when the previous block is mined; restamp it when the block
        # is still empty, so its time is when its first transaction arrives.
        if not self.chain.get_block().transactions:
            self.chain.set_header_timestamp(self.next_timestamp())

    def send_raw_transaction(self, raw_transaction):
        self._stamp_pending_block()
        return super().send_raw_transaction(raw_transaction)

    def send_signed_transaction(self, signed_transaction, block_number="latest"):
        self._stamp_pending_block()
        return super().send_signed_transaction(signed_transaction, block_number)

    def mine_blocks(self, num_blocks=1, coinbase=b"\x00" * 20):
        hashes = []
        for _ in range(num_blocks):
            self._stamp_pending_block()
            hashes.extend(super().mine_blocks(1, coinbase))
            self._commit()
        return tuple(hashes)

    def advance(self, seconds: int) -> None:
        target = max(self.next_timestamp(), self.chain.get_canonical_head().timestamp + seconds)
        self.time_offset = target - int(time.time())
        self.chain.set_header_timestamp(target)
        super().mine_blocks(1)
        self._commit()

    def time_travel(self, to_timestamp):
        self.advance(max(0, to_timestamp - self.chain.get_canonical_head().timestamp))
        return to_timestamp

    # eth-tester finds a transaction by walking every block back from the head; py-evm keeps a
    # hash index for canonical transactions, which stays fast however long the chain grows.
    def _locate(self, transaction_hash):
        try:
            number, index = self.chain.chaindb.get_transaction_index(transaction_hash)
        except EVMTransactionNotFound:
            pending = self.chain.get_block()
            for index, transaction in enumerate(pending.transactions):
                if transaction.hash == transaction_hash:
                    return pending, transaction, index
            raise TransactionNotFound(
                f"No transaction found for transaction hash: 0x{transaction_hash.hex()}"
            ) from None
        block = self.chain.get_canonical_block_by_number(number)
        return block, block.transactions[index], index

    def get_transaction_by_hash(self, transaction_hash):
        block, transaction, index = self._locate(transaction_hash)
        is_pending = block.number == self.chain.get_block().number
        return serialize_transaction(block, transaction, index, is_pending)

    def get_transaction_receipt(self, transaction_hash):
        block, transaction, index = self._locate(transaction_hash)
        is_pending = block.number == self.chain.get_block().number
        return serialize_transaction_receipt(
            block, block.get_receipts(self.chain.chaindb), transaction, index, is_pending,
            self.chain.get_vm(),
        )

    # eth-tester flattens revert bytes into a repr() string; keep the bytes so custom errors
    # decode to their names. Reads also run fee-free, as on a node: a caller needs no balance
    # to look at state or to estimate.
    def estimate_gas(self, transaction, block_number="latest"):
        cap = _ESTIMATE_CAP.set(transaction.get("gas"))
        try:
            return super().estimate_gas(_fee_free(transaction), block_number)
        except Exception as exc:
            revert = _revert_in(exc)
            if revert is not None:
                raise RevertSignal(revert) from exc
            raise
        finally:
            _ESTIMATE_CAP.reset(cap)

    def call(self, transaction, block_number="latest"):
        request = _fee_free(transaction)
        request.setdefault("gas", self._max_available_gas())
        unsigned = self._get_normalized_and_unsigned_evm_transaction(request, block_number)
        spoofed = SpoofTransaction(unsigned, from_=transaction["from"])
        block = _get_block_by_number(self.chain, block_number)
        vm = self.chain.get_vm(at_header=block.header.copy(base_fee_per_gas=0))
        state = vm.state
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(spoofed)
        finally:
            state.revert(snapshot)
        if computation.is_error:
            error = computation.error
            if isinstance(error, EVMRevert):
                raise RevertSignal(error.args[0] if error.args else b"")
            raise ChainError(f"call failed in the EVM: {error!r}", reason=repr(error))
        return computation.output


def _fee_free(transaction: dict) -> dict:
    request = dict(transaction)
    if not any(k in request for k in ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas")):
        request["max_fee_per_gas"] = 0
        request["max_priority_fee_per_gas"] = 0
    return request


def _revert_in(exc: BaseException) -> bytes | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EVMRevert):
            return current.args[0] if current.args and isinstance(current.args[0], bytes) else b""
        for arg in current.args:
            if isinstance(arg, EVMRevert):
                return arg.args[0] if arg.args else b""
        current = current.__cause__ or current.__context__
    return None


class _LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the API serves requests from a thread pool."""

    def __init__(self, tester: EthereumTester, chain_id: int):
        endpoints = {namespace: dict(methods) for namespace, methods in API_ENDPOINTS.items()}
        endpoints["eth"]["chainId"] = static_return(chain_id)
        endpoints["net"]["version"] = static_return(str(chain_id))
        super().__init__(tester, api_endpoints=endpoints)
        self._lock = threading.RLock()

    def make_request(self, method, params):
        with self._lock:
            return super().make_request(method, params)


class ChainLock:
    """An exclusive flock on `<dir>/chain.lock`, holding the owner's pid for the error message."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ChainError(
                f"the embedded chain in {self.path.parent} is in use by process {owner}; "
                "stop that process or, while it serves, use the running node's API "
                "(--node URL)",
                status=409,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def open_embedded(
    path: Path,
    *,
    chain_id: int = DEFAULT_CHAIN_ID,
    prefund: dict[str, int] | None = None,
    durable: bool = True,
) -> Chain:
    """Open (or create) the embedded chain stored in directory `path`.

    On first start the genesis block gives each `prefund` address its balance in wei; later
    starts resume at the stored head and ignore `prefund`. One process at a time may open a
    directory; `close()` the chain to let the next one in.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    lock = ChainLock(directory)
    lock.acquire()
    store: SQLiteKeyValueStore | None = None
    try:
        store = SQLiteKeyValueStore(directory / DB_FILE, durable=durable)
        backend = PersistentPyEVMBackend(store, chain_id, prefund)
        tester = EthereumTester(backend)
        w3 = Web3(_LockedTesterProvider(tester, chain_id))
        # eth-tester insists on a `from` for eth_call; a node would default it to zero.
        w3.eth.default_account = ZERO_ADDRESS
    except BaseException:
        if store is not None:
            store.close()
        lock.release()
        raise

    def advance_time(seconds: int) -> None:
        with w3.provider._lock:
            backend.advance(seconds)

    def close() -> None:
        with w3.provider._lock:
            store.close()
        lock.release()

    return Chain(w3, kind="embedded", chain_id=chain_id, advance_time=advance_time,
                 on_close=close)
