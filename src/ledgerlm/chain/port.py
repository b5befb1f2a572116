"""The Chain port: one web3.py front door to any EVM backend, with local signing and one revert error type."""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from eth_abi import abi as eth_abi
from eth_abi.exceptions import DecodingError
from eth_account.signers.local import LocalAccount
from eth_utils import (
    collapse_if_tuple,
    event_abi_to_log_topic,
    function_signature_to_4byte_selector,
    keccak,
    to_checksum_address,
)
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractLogicError,
    MismatchedABI,
    Web3Exception,
    Web3RPCError,
    Web3ValidationError,
)
from web3.logs import DISCARD

from ledgerlm.errors import LedgerError

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"

# Fee headroom over the node's current base fee: two doublings of the base fee still get mined,
# which is what EIP-1559 wallets do.
BASE_FEE_MULTIPLIER = 2
DEFAULT_PRIORITY_FEE = 10**9
# Estimates are exact on py-evm and anvil, but storage refunds and warm/cold slot changes between
# estimate and inclusion can push real use slightly higher.
GAS_HEADROOM_NUMERATOR, GAS_HEADROOM_DENOMINATOR = 6, 5

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
PANIC_SELECTOR = bytes.fromhex("4e487b71")
PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assert(false)",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupted storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


class ChainError(LedgerError):
    """A chain operation failed: a revert (decoded to the contract's error), or an unusable node.

    `reason` is the decoded revert (`ExceedsCap(cap=100, requested=150)`, a require message, a
    panic), or the node's own message; `error_name`/`error_args` carry a decoded custom error.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        error_name: str | None = None,
        error_args: dict[str, Any] | None = None,
        data: str | None = None,
        tx_hash: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ):
        super().__init__(message, field=field, status=status)
        self.reason = reason if reason is not None else message
        self.error_name = error_name
        self.error_args = error_args or {}
        self.data = data
        self.tx_hash = tx_hash

    def to_dict(self) -> dict:
        return {**super().to_dict(), "reason": self.reason, "error": self.error_name}


class RevertSignal(Exception):
    """Raised inside an in-process backend with the raw revert bytes, before any lossy formatting."""

    def __init__(self, data: bytes, message: str = "execution reverted"):
        super().__init__(message)
        self.data = bytes(data)


@dataclass(frozen=True)
class Artifact:
    """A compiled contract as committed under chain/artifacts/<Name>.json."""

    name: str
    abi: list[dict]
    bytecode: str
    deployed_bytecode: str = ""
    compiler: Any = ""
    source_hash: str = ""

    @classmethod
    def from_json(cls, payload: dict) -> Artifact:
        return cls(
            name=payload["contractName"],
            abi=payload["abi"],
            bytecode=payload.get("bytecode", ""),
            deployed_bytecode=payload.get("deployedBytecode", ""),
            compiler=payload.get("compiler", ""),
            source_hash=payload.get("sourceHash", ""),
        )


def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """Read `<directory>/<name>.json` (default: the package's committed artifacts)."""
    path = (directory or ARTIFACTS_DIR) / f"{name}.json"
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ChainError(
            f"no compiled artifact for contract {name!r} at {path}; "
            "compile the contracts (npm run compile in contracts/)",
            field="artifact",
            status=500,
        ) from None
    return Artifact.from_json(payload)


def known_artifacts(directory: Path | None = None) -> list[Artifact]:
    folder = directory or ARTIFACTS_DIR
    if not folder.is_dir():
        return []
    return [load_artifact(p.stem, folder) for p in sorted(folder.glob("*.json"))]


@dataclass(frozen=True)
class ChainEvent:
    """One log of a mined transaction, decoded when a known ABI describes it."""

    address: str
    name: str | None
    args: dict[str, Any]
    log_index: int
    topics: tuple[str, ...] = ()
    data: str = "0x"


@dataclass(frozen=True)
class TxResult:
    """What a mined transaction did: where it landed, what it cost, what it emitted."""

    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    logs: tuple[ChainEvent, ...] = ()
    contract_address: str | None = None
    effective_gas_price: int = 0
    receipt: Any = field(default=None, repr=False, compare=False)

    @property
    def fee_paid(self) -> int:
        return self.gas_used * self.effective_gas_price

    def events(self, contract: Contract, name: str) -> list[dict[str, Any]]:
        """Arguments of every `name` event that `contract` emitted in this transaction."""
        if self.receipt is None:
            return []
        emitted = contract.events[name]().process_receipt(self.receipt, errors=DISCARD)
        return [dict(e["args"]) for e in emitted if e["address"] == contract.address]


@dataclass(frozen=True)
class ChainHead:
    number: int
    hash: str
    timestamp: int


class AbiBook:
    """Errors and events of every ABI the port knows, indexed by selector / topic for decoding."""

    def __init__(self) -> None:
        self._names_by_abi: dict[str, str] = {}
        self._errors: dict[bytes, dict] = {}
        self._events: dict[bytes, list[dict]] = {}
        self._contract_names: dict[str, str] = {}
        self._role_names: dict[bytes, str] = {b"\x00" * 32: "DEFAULT_ADMIN_ROLE"}
        self._seen: set[str] = set()

    def add(self, artifact: Artifact) -> None:
        if artifact.name in self._seen:
            return
        self._seen.add(artifact.name)
        for item in artifact.abi:
            if item.get("type") == "error":
                self._errors.setdefault(_selector(item), item)
            elif item.get("type") == "function" and item.get("name", "").endswith("_ROLE"):
                self._role_names[bytes(keccak(text=item["name"]))] = item["name"]
            elif item.get("type") == "event" and not item.get("anonymous"):
                topic = bytes(event_abi_to_log_topic(item))
                candidates = self._events.setdefault(topic, [])
                if item not in candidates:
                    candidates.append(item)

    def name_contract(self, address: str, name: str) -> None:
        self._contract_names[address.lower()] = name

    def contract_name(self, address: str | None) -> str | None:
        return self._contract_names.get((address or "").lower())

    def decode_revert(self, data: bytes) -> tuple[str, str | None, dict[str, Any]]:
        """Return (reason text, custom error name or None, its arguments)."""
        if not data:
            return "reverted without a reason", None, {}
        selector, body = data[:4], data[4:]
        try:
            if selector == ERROR_STRING_SELECTOR:
                return eth_abi.decode(["string"], body)[0], None, {}
            if selector == PANIC_SELECTOR:
                code = eth_abi.decode(["uint256"], body)[0]
                return f"Panic(0x{code:02x}: {PANIC_CODES.get(code, 'unknown panic')})", None, {}
            item = self._errors.get(selector)
            if item is not None:
                types = [collapse_if_tuple(i) for i in item["inputs"]]
                values = eth_abi.decode(types, body)
                names = [i.get("name") or f"arg{n}" for n, i in enumerate(item["inputs"])]
                args = {n: _plain(v) for n, v in zip(names, values)}
                shown = ", ".join(f"{n}={self._show(v)}" for n, v in args.items())
                return f"{item['name']}({shown})", item["name"], args
        except DecodingError:
            pass
        return f"reverted with unknown error data 0x{data.hex()}", None, {}

    def _show(self, value: Any) -> str:
        # AccessControl errors carry role hashes; a role's name tells the user what is missing.
        if isinstance(value, bytes) and value in self._role_names:
            return self._role_names[value]
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(self._show(v) for v in value) + "]"
        return _show(value)

    def decode_log(self, log: Any) -> ChainEvent:
        topics = [bytes(t) for t in log["topics"]]
        data = bytes(log["data"])
        event = ChainEvent(
            address=log["address"],
            name=None,
            args={},
            log_index=int(log["logIndex"]),
            topics=tuple("0x" + t.hex() for t in topics),
            data="0x" + data.hex(),
        )
        if not topics:
            return event
        for item in self._events.get(topics[0], []):
            args = _decode_event(item, topics, data)
            if args is not None:
                return ChainEvent(event.address, item["name"], args, event.log_index,
                                  event.topics, event.data)
        return event


def _selector(error_abi: dict) -> bytes:
    types = ",".join(collapse_if_tuple(i) for i in error_abi["inputs"])
    return bytes(function_signature_to_4byte_selector(f"{error_abi['name']}({types})"))


def _decode_event(item: dict, topics: list[bytes], data: bytes) -> dict[str, Any] | None:
    inputs = item["inputs"]
    indexed = [i for i in inputs if i.get("indexed")]
    plain = [i for i in inputs if not i.get("indexed")]
    if len(topics) != 1 + len(indexed):
        return None
    try:
        values: dict[str, Any] = {}
        for inp, topic in zip(indexed, topics[1:]):
            kind = collapse_if_tuple(inp)
            dynamic = kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("(")
            # Dynamic indexed values are stored as their keccak hash, not the value itself.
            values[inp["name"]] = topic if dynamic else _plain(eth_abi.decode([kind], topic)[0])
        decoded = eth_abi.decode([collapse_if_tuple(i) for i in plain], data)
        values.update({i["name"]: _plain(v) for i, v in zip(plain, decoded)})
    except DecodingError:
        return None
    return {i["name"]: values[i["name"]] for i in inputs}


def _plain(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def revert_data_of(exc: BaseException) -> bytes | None:
    """Dig the raw revert bytes out of whatever a backend raised, or None if there are none."""
    if isinstance(exc, RevertSignal):
        return exc.data
    candidates: list[Any] = []
    if isinstance(exc, ContractLogicError):
        candidates.append(exc.data)
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error") or {}
        candidates.append(error.get("data") if isinstance(error, dict) else None)
    candidates.extend(exc.args)
    for candidate in candidates:
        data = _as_revert_bytes(candidate)
        if data is not None:
            return data
    return None


def _as_revert_bytes(candidate: Any) -> bytes | None:
    if isinstance(candidate, (bytes, bytearray)):
        return bytes(candidate)
    if isinstance(candidate, dict):
        return _as_revert_bytes(candidate.get("data"))
    if not isinstance(candidate, str):
        return None
    text = candidate.strip()
    if text.startswith("execution reverted: "):
        text = text.removeprefix("execution reverted: ").strip()
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            return None
    # eth-tester renders revert bytes with repr(): "b'\\x08\\xc3y\\xa0...'".
    if text.startswith(("b'", 'b"')):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


class Chain:
    """One connection to an EVM chain. The same methods work on the embedded chain and any node.

    Every write is built here, signed locally with the sender's key and sent raw; node-held keys
    are never used. Sequential writes from one sender are safe: nonces are tracked per sender.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        kind: str,
        chain_id: int,
        advance_time: Callable[[int], None] | None = None,
        on_close: Callable[[], None] | None = None,
        receipt_timeout: float = 120.0,
        poll_latency: float = 0.1,
        artifacts_dir: Path | None = None,
    ):
        self.w3 = w3
        self.kind = kind
        self.chain_id = chain_id
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        self._advance_time = advance_time
        self._on_close = on_close
        self._artifacts_dir = artifacts_dir
        self._write_lock = threading.RLock()
        self._next_nonce: dict[str, int] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"Chain(kind={self.kind!r}, chain_id={self.chain_id})"

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- contracts ---------------------------------------------------------------------------

    @cached_property
    def abi_book(self) -> AbiBook:
        book = AbiBook()
        for artifact in known_artifacts(self._artifacts_dir):
            book.add(artifact)
        return book

    def artifact(self, artifact: str | Artifact) -> Artifact:
        found = artifact if isinstance(artifact, Artifact) else load_artifact(
            artifact, self._artifacts_dir
        )
        self.abi_book.add(found)
        return found

    def contract(self, artifact: str | Artifact, address: str) -> Contract:
        found = self.artifact(artifact)
        checksum = to_checksum_address(address)
        self.abi_book.name_contract(checksum, found.name)
        return self.w3.eth.contract(address=checksum, abi=found.abi)

    def deploy(self, artifact: str | Artifact, *args: Any, sender: LocalAccount) -> str:
        """Deploy a compiled contract with constructor `args`; return its address."""
        found = self.artifact(artifact)
        if not found.bytecode or found.bytecode in ("0x", ""):
            raise ChainError(f"artifact {found.name} has no bytecode to deploy", field="artifact")
        factory = self.w3.eth.contract(abi=found.abi, bytecode=found.bytecode)
        result = self.transact(factory.constructor(*args), sender)
        if not result.contract_address:
            raise ChainError(f"deploying {found.name} produced no contract address",
                             tx_hash=result.tx_hash, status=502)
        self.abi_book.name_contract(result.contract_address, found.name)
        return result.contract_address

    # -- writes ------------------------------------------------------------------------------

    def transact(self, fn: Any, sender: LocalAccount, value: int = 0) -> TxResult:
        """Send a bound contract function (or constructor) as a locally signed transaction."""
        target = self._describe(fn)
        with self._write_lock:
            draft = fn.build_transaction(self._placeholder_fields(sender, value))
            request = {"from": sender.address, "value": value, "data": draft["data"]}
            if draft.get("to"):
                request["to"] = draft["to"]
            return self._send(request, sender, target)

    def send_eth(self, sender: LocalAccount, to: str, wei: int) -> TxResult:
        request = {"from": sender.address, "to": to_checksum_address(to), "value": int(wei),
                   "data": b""}
        with self._write_lock:
            return self._send(request, sender, f"transfer to {to}")

    def _placeholder_fields(self, sender: LocalAccount, value: int) -> dict:
        # Every field filled so web3 encodes the call without asking the node for anything.
        return {"from": sender.address, "value": value, "gas": 1, "nonce": 0,
                "chainId": self.chain_id, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1}

    def _send(self, request: dict, sender: LocalAccount, target: str) -> TxResult:
        try:
            estimate = self.w3.eth.estimate_gas(request)
        except Exception as exc:  # noqa: BLE001 - every backend raises its own revert type
            raise self._as_chain_error(exc, target) from exc
        latest = self.w3.eth.get_block("latest")
        tx = dict(request)
        headroom = estimate * GAS_HEADROOM_NUMERATOR // GAS_HEADROOM_DENOMINATOR
        tx["gas"] = max(min(headroom, int(latest["gasLimit"])), estimate)
        tx["chainId"] = self.chain_id
        tx["nonce"] = self._nonce_for(sender.address)
        tx.update(self._fee_fields(latest))
        signed = sender.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # noqa: BLE001
            self._next_nonce.pop(sender.address, None)
            raise self._as_chain_error(exc, target) from exc
        self._next_nonce[sender.address] = tx["nonce"] + 1
        receipt = self._wait(tx_hash, target)
        result = self._result(receipt)
        if result.status != 1:
            raise self._explain_failed(tx, receipt, target)
        return result

    def _nonce_for(self, address: str) -> int:
        on_chain = self.w3.eth.get_transaction_count(address, "pending")
        return max(on_chain, self._next_nonce.get(address, 0))

    def _fee_fields(self, latest: Any) -> dict:
        base_fee = latest.get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": self.w3.eth.gas_price}
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3Exception, ValueError, NotImplementedError):
            priority = DEFAULT_PRIORITY_FEE
        return {"maxFeePerGas": base_fee * BASE_FEE_MULTIPLIER + priority,
                "maxPriorityFeePerGas": priority}

    def _wait(self, tx_hash: bytes, target: str) -> Any:
        try:
            return self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout, poll_latency=self.poll_latency
            )
        except Web3Exception as exc:
            raise ChainError(
                f"{target}: transaction 0x{bytes(tx_hash).hex()} was sent but not mined within "
                f"{self.receipt_timeout:.0f}s; check the node, then look the hash up again",
                tx_hash="0x" + bytes(tx_hash).hex(),
                status=504,
            ) from exc

    def _result(self, receipt: Any) -> TxResult:
        address = receipt.get("contractAddress")
        return TxResult(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            status=int(receipt["status"]),
            logs=tuple(self.abi_book.decode_log(log) for log in receipt["logs"]),
            contract_address=to_checksum_address(address) if address else None,
            effective_gas_price=int(receipt.get("effectiveGasPrice") or 0),
            receipt=receipt,
        )

    def _explain_failed(self, tx: dict, receipt: Any, target: str) -> ChainError:
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        replay = {k: tx[k] for k in ("from", "to", "value", "data") if k in tx}
        try:
            self.w3.eth.call(replay, block_identifier=max(int(receipt["blockNumber"]) - 1, 0))
        except Exception as exc:  # noqa: BLE001
            error = self._as_chain_error(exc, target)
            error.tx_hash = tx_hash
            return error
        return ChainError(f"{target} failed on chain (out of gas or reverted) in {tx_hash}",
                          reason="transaction failed", tx_hash=tx_hash)

    # -- reads -------------------------------------------------------------------------------

    def call(self, fn: Any, block: int | str = "latest") -> Any:
        try:
            return fn.call(block_identifier=block)
        except (MismatchedABI, Web3ValidationError, TypeError):
            raise
        except Exception as exc:  # noqa: BLE001 - every backend raises its own revert type
            raise self._as_chain_error(exc, self._describe(fn)) from exc

    def eth_balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(to_checksum_address(address)))

    def nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(to_checksum_address(address)))

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def head(self) -> ChainHead:
        block = self.w3.eth.get_block("latest")
        return ChainHead(number=int(block["number"]), hash="0x" + bytes(block["hash"]).hex(),
                         timestamp=int(block["timestamp"]))

    def receipt(self, tx_hash: str) -> TxResult:
        try:
            return self._result(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        except Exception as exc:  # noqa: BLE001
            raise ChainError(f"no mined transaction {tx_hash} on this chain", field="tx_hash",
                             status=404) from exc

    def logs(self, contract: Contract, name: str, from_block: int = 0,
             to_block: int | str = "latest") -> list[dict[str, Any]]:
        """Arguments of every `name` event `contract` emitted in the block range."""
        found = contract.events[name]().get_logs(from_block=from_block, to_block=to_block)
        return [dict(e["args"]) for e in found]

    # -- time and lifecycle ------------------------------------------------------------------

    def advance_time(self, seconds: int) -> ChainHead:
        """Mine an empty block at least `seconds` later than the head (cooldowns, deadlines)."""
        if seconds < 0:
            raise ChainError("advance_time takes a non-negative number of seconds",
                             field="seconds")
        if self._advance_time is None:
            raise ChainError(f"this {self.kind} chain cannot move its clock", status=501)
        with self._write_lock:
            self._advance_time(int(seconds))
        return self.head()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close()

    # -- errors ------------------------------------------------------------------------------

    def _describe(self, fn: Any) -> str:
        name = getattr(fn, "fn_name", None)
        address = getattr(fn, "address", None)
        contract = self.abi_book.contract_name(address) or (address or "contract")
        if name is None:
            return "contract deployment"
        return f"{contract}.{name}"

    def _as_chain_error(self, exc: BaseException, target: str) -> ChainError:
        if isinstance(exc, ChainError):
            return exc
        data = revert_data_of(exc)
        if data is not None:
            reason, name, args = self.abi_book.decode_revert(data)
            return ChainError(f"{target} reverted: {reason}", reason=reason, error_name=name,
                              error_args=args, data="0x" + data.hex())
        reason = _message_of(exc)
        if "revert" in reason.lower():
            return ChainError(f"{target} reverted: {reason}", reason=reason)
        return ChainError(f"{target} was rejected by the chain: {reason}", reason=reason)


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    if exc.args and isinstance(exc.args[0], dict) and "message" in exc.args[0]:
        return str(exc.args[0]["message"])
    return str(exc) or type(exc).__name__

