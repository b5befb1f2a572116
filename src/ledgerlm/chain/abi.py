"""Compiled artifacts, and what their ABIs let us read back: revert reasons and event logs."""

from __future__ import annotations

import ast
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import abi as eth_abi
from eth_abi.exceptions import DecodingError
from eth_utils import (
    collapse_if_tuple,
    event_abi_to_log_topic,
    function_signature_to_4byte_selector,
    keccak,
    to_checksum_address,
)
from web3.exceptions import ContractLogicError, Web3RPCError

from ledgerlm.chain.errors import ChainError, RevertSignal

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"

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
        return _read_artifact(path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise ChainError(
            f"no compiled artifact for contract {name!r} at {path}; "
            "compile the contracts (npm run compile in contracts/)",
            field="artifact",
            status=500,
        ) from None


@functools.lru_cache(maxsize=64)
def _read_artifact(path: Path, modified_ns: int) -> Artifact:
    # Keyed on the file's mtime too, so a recompiled artifact is read again.
    return Artifact.from_json(json.loads(path.read_text()))


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
