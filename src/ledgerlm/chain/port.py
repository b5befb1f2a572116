"""The Chain port: one web3.py front door to any EVM backend, with local signing and one revert error type."""

from __future__ import annotations

import ast
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import requests
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    MismatchedABI,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
    Web3ValidationError,
)
from web3.logs import DISCARD

from ledgerlm.chain.abi import (
    AbiBook,
    Artifact,
    ChainEvent,
    known_artifacts,
    load_artifact,
    revert_data_of,
)
from ledgerlm.chain.endpoints import scrub_urls
from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.nonces import NonceBook, NonceTicket
from ledgerlm.chain.reverts import explain as explain_revert
from ledgerlm.units import format_amount

# Fee headroom over the node's current base fee: two doublings of the base fee still get mined,
# which is what EIP-1559 wallets do.
BASE_FEE_MULTIPLIER = 2
DEFAULT_PRIORITY_FEE = 10**9
# A transaction can need more gas at inclusion than at estimation: state may change in between
# (a first write to a slot costs more than an update), so give it a fifth more.
GAS_HEADROOM_NUMERATOR, GAS_HEADROOM_DENOMINATOR = 6, 5
# A replacement must raise both fee fields by at least 10% on geth-based nodes (op-geth included);
# 12.5% clears that with room for rounding.
FEE_BUMP_NUMERATOR, FEE_BUMP_DENOMINATOR = 9, 8
# Headers asked for in one JSON-RPC batch: under the batch limits hosted L2 endpoints set.
HEADER_BATCH = 100
# Tries at a nonce before a send gives up, when other senders of the same key keep taking them first.
NONCE_ATTEMPTS = 10
# Node messages that mean "this nonce is taken": another sender of the same key got there first.
_NONCE_TAKEN = ("nonce too low", "replacement transaction underpriced", "already known",
                "nonce has already been used", "transaction already imported")


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


@dataclass(frozen=True)
class ChainBlock:
    """A mined block as an explorer shows it: its place, time, gas and transaction hashes."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int
    gas_used: int
    transactions: tuple[str, ...]


@dataclass(frozen=True)
class ChainTransaction:
    """A mined transaction: who sent what to whom, and what it did (its receipt, logs decoded)."""

    tx_hash: str
    block_number: int
    sender: str
    to: str | None
    value: int
    nonce: int
    input: str
    contract: str | None  # the deployed contract's name when `to` is one the port knows
    result: TxResult


class Chain:
    """One connection to an EVM chain. The same methods work on the embedded chain and any node.

    Every write is built here, signed locally with the sender's key and sent raw; node-held keys
    are never used. Concurrent writes from one sender get distinct nonces without gaps (`NonceBook`).
    A write returns once its block is `confirmations` deep; a transaction left unmined for
    `bump_after` seconds is signed again with the same nonce and fees raised by an eighth (at most
    `max_fee_bumps` times, then it is only re-broadcast), and one a node dropped or a re-org removed
    is sent again.
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
        confirmations: int = 1,
        bump_after: float = 30.0,
        max_fee_bumps: int = 5,
        nonce_dir: Path | None = None,
    ):
        if confirmations < 1:
            raise ChainError("confirmations must be at least 1 (the block that includes the transaction)",
                             field="confirmations")
        self.w3 = w3
        self.kind = kind
        self.chain_id = chain_id
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        self.confirmations = confirmations
        self.bump_after = bump_after
        self.max_fee_bumps = max_fee_bumps
        self.nonces = NonceBook(chain_id, nonce_dir)
        self._advance_time = advance_time
        self._on_close = on_close
        self._artifacts_dir = artifacts_dir
        self._closed = False

    def __repr__(self) -> str:
        return f"Chain(kind={self.kind!r}, chain_id={self.chain_id})"

    def __enter__(self) -> Self:
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
        result = self._transact(factory.constructor(*args), sender, 0, f"deploying {found.name}")
        if not result.contract_address:
            raise ChainError(f"deploying {found.name} produced no contract address",
                             tx_hash=result.tx_hash, status=502)
        self.abi_book.name_contract(result.contract_address, found.name)
        return result.contract_address

    # -- writes ------------------------------------------------------------------------------

    def transact(self, fn: Any, sender: LocalAccount, value: int = 0) -> TxResult:
        """Send a bound contract function (or constructor) as a locally signed transaction.

        Waits until it is mined; a revert raises ChainError with the decoded reason and costs
        nothing, because it is caught while estimating gas, before anything is sent.
        """
        return self._transact(fn, sender, value, self._describe(fn))

    def send_eth(self, sender: LocalAccount, to: str, wei: int) -> TxResult:
        request = {"from": sender.address, "to": to_checksum_address(to), "value": int(wei),
                   "data": b""}
        return self._send(request, sender, f"transfer to {to}")

    # -- relaying transactions that clients signed themselves ----------------------------------

    def fee_fields(self) -> dict:
        """Fee fields a client should put in a transaction it signs for this chain."""
        return self._fee_fields(self.w3.eth.get_block("latest"))

    def estimate(self, request: dict, target: str = "transaction", max_gas: int | None = None) -> int:
        """Gas for `request` with headroom; a revert raises ChainError before anything is signed.
        `max_gas` bounds the EVM work the estimate itself may do (a call needing more fails)."""
        if max_gas is not None:
            request = {**request, "gas": int(max_gas)}
        if target == "transaction" and self.abi_book.contract_name(request.get("to")):
            # a client's own transaction to a contract this chain knows: its errors name the contract
            target = f"{self.abi_book.contract_name(request.get('to'))} transaction"
        try:
            estimate = self.w3.eth.estimate_gas(request)
        except Exception as exc:  # every backend raises its own revert type
            raise self._as_chain_error(exc, target) from exc
        limit = int(self.w3.eth.get_block("latest")["gasLimit"])
        return max(min(estimate * GAS_HEADROOM_NUMERATOR // GAS_HEADROOM_DENOMINATOR, limit), estimate)

    def send_raw(self, raw: bytes, target: str = "transaction") -> TxResult:
        """Send a transaction a client signed with its own key and wait until it is mined."""
        try:
            tx_hash = self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            raise self._as_chain_error(exc, target) from exc
        # The node holds no key for it: it can be re-broadcast but not re-priced.
        receipt = self._await(_Outstanding(None, {}, [bytes(tx_hash)], bytes(raw)), target)
        result = self._result(receipt)
        if result.status != 1:
            tx = self.w3.eth.get_transaction(receipt["transactionHash"])
            raise self._explain_failed(dict(tx), receipt, target)
        return result

    def _transact(self, fn: Any, sender: LocalAccount, value: int, target: str) -> TxResult:
        draft = fn.build_transaction(self._placeholder_fields(sender, value))
        request = {"from": sender.address, "value": int(value), "data": draft["data"]}
        if draft.get("to"):
            request["to"] = draft["to"]
        return self._send(request, sender, target)

    def _placeholder_fields(self, sender: LocalAccount, value: int) -> dict:
        # Every field filled so web3 encodes the call without asking the node for anything.
        return {"from": sender.address, "value": value, "gas": 1, "nonce": 0,
                "chainId": self.chain_id, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1}

    def _send(self, request: dict, sender: LocalAccount, target: str) -> TxResult:
        with self.nonces.hold(sender.address) as ticket:
            outstanding = self._sign_and_send(request, sender, target, ticket)
        # The wait happens outside the hold: other writes of this sender go out meanwhile.
        receipt = self._await(outstanding, target)
        result = self._result(receipt)
        if result.status != 1:
            raise self._explain_failed(outstanding.tx, receipt, target)
        return result

    def _sign_and_send(self, request: dict, sender: LocalAccount, target: str,
                       ticket: NonceTicket) -> _Outstanding:
        try:
            estimate = self.w3.eth.estimate_gas(request)
        except Exception as exc:  # every backend raises its own revert type
            raise self._as_chain_error(exc, target) from exc
        latest = self.w3.eth.get_block("latest")
        tx = dict(request)
        headroom = estimate * GAS_HEADROOM_NUMERATOR // GAS_HEADROOM_DENOMINATOR
        tx["gas"] = max(min(headroom, int(latest["gasLimit"])), estimate)
        tx["chainId"] = self.chain_id
        tx.update(self._fee_fields(latest))
        # A few random wei make every signed transaction unique: two nodes sending the same call with one
        # key at one nonce would otherwise sign identical bytes, which a node accepts twice as one
        # transaction, and both callers would believe their call ran.
        jitter = random.randrange(1, 1000)
        for name in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
            if name in tx:
                tx[name] += jitter
        most = tx["value"] + tx["gas"] * tx.get("maxFeePerGas", tx.get("gasPrice", 0))
        balance = self.eth_balance(sender.address)
        if balance < most:
            raise ChainError(
                f"{target}: account {sender.address} holds {balance} wei but the transaction "
                f"may cost up to {most} wei (value plus gas); fund the account with ETH first",
                field="sender", status=402,
            )

        def pending() -> int:
            return self.w3.eth.get_transaction_count(sender.address, "pending")

        tx["nonce"] = ticket.next(pending)
        for attempt in range(NONCE_ATTEMPTS):
            signed = sender.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                if attempt < NONCE_ATTEMPTS - 1 and _says(exc, _NONCE_TAKEN):
                    # Another process or node sending with this key took the nonce: take the next. The
                    # random pause keeps senders that collided from colliding again in lockstep.
                    time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                    ticket.skip_past(tx["nonce"])
                    tx["nonce"] = ticket.next(pending)
                    continue
                raise self._as_chain_error(exc, target) from exc
            ticket.used(tx["nonce"])
            return _Outstanding(sender, tx, [bytes(tx_hash)], bytes(signed.raw_transaction))
        raise AssertionError("unreachable: the last attempt raises")

    def _await(self, out: _Outstanding, target: str) -> Any:
        """Wait until a version of the transaction is mined `confirmations` deep, unsticking it on the way."""
        deadline = time.monotonic() + self.receipt_timeout
        last_push = time.monotonic()
        while True:
            receipt = self._first_receipt(out.hashes)
            if receipt is not None:
                if self._is_final(receipt):
                    return receipt
                last_push = time.monotonic()  # mined, only not deep enough yet: nothing to unstick
            elif time.monotonic() - last_push >= self.bump_after:
                self._unstick(out, target)
                last_push = time.monotonic()
            if time.monotonic() > deadline:
                tx_hash = "0x" + out.hashes[-1].hex()
                raise ChainError(
                    f"{target}: transaction {tx_hash} was sent but not mined {self.confirmations} "
                    f"block(s) deep within {self.receipt_timeout:.0f}s; check the node, then look the "
                    "hash up again", tx_hash=tx_hash, status=504,
                )
            time.sleep(self.poll_latency)

    def _first_receipt(self, hashes: list[bytes]) -> Any:
        for tx_hash in reversed(hashes):
            try:
                receipt = self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                continue
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt
        return None

    def _is_final(self, receipt: Any) -> bool:
        if self.confirmations <= 1:
            return True
        number = int(receipt["blockNumber"])
        if self.block_number() - number + 1 < self.confirmations:
            return False
        # Deep enough, if its block is still the chain's block at that height (no re-org since).
        return bytes(self.w3.eth.get_block(number)["hash"]) == bytes(receipt["blockHash"])

    def _unstick(self, out: _Outstanding, target: str) -> None:
        """The transaction is not mined: raise its fees, send it again, or give it a new nonce."""
        sender = out.sender
        if sender is None:  # relayed for a client: only its own bytes can go out again
            self._broadcast(out.raw)
            return
        if self.w3.eth.get_transaction_count(sender.address, "latest") > out.tx["nonce"]:
            if self._first_receipt(out.hashes) is not None:
                return  # mined between the two reads
            # Another transaction used our nonce (a second node with this key replaced ours): ours
            # never ran, so sending it again under a new nonce still runs it exactly once.
            request = {k: out.tx[k] for k in ("from", "to", "value", "data") if k in out.tx}
            with self.nonces.hold(sender.address) as ticket:
                fresh = self._sign_and_send(request, sender, target, ticket)
            out.tx, out.hashes, out.raw, out.bumps = fresh.tx, fresh.hashes, fresh.raw, 0
            return
        waiting = self.w3.eth.get_transaction_count(sender.address, "pending")
        if waiting < out.tx["nonce"]:
            # Nonces below ours are neither mined nor waiting (a re-org or a dropped transaction whose
            # sender is gone): ours would queue behind the gap for ever. Fill it with no-op transfers
            # rather than move ours to a lower nonce, so the version already signed can never run twice.
            with self.nonces.hold(sender.address):  # no other write of this process signs meanwhile
                self._fill_gap(sender, waiting, out.tx["nonce"])
        if out.bumps >= self.max_fee_bumps:
            self._broadcast(out.raw)  # at the fee ceiling: only make sure the node still has it
            return
        tx = dict(out.tx)
        tx.update(_bumped(out.tx, self._fee_fields(self.w3.eth.get_block("latest"))))
        signed = sender.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            if _says(exc, _NONCE_TAKEN):
                return  # an earlier version was mined meanwhile, or is still pending: wait on
            raise self._as_chain_error(exc, target) from exc
        out.tx, out.raw, out.bumps = tx, bytes(signed.raw_transaction), out.bumps + 1
        out.hashes.append(bytes(tx_hash))

    def _fill_gap(self, sender: LocalAccount, first: int, end: int) -> None:
        fees = self._fee_fields(self.w3.eth.get_block("latest"))
        for nonce in range(first, end):
            filler = {"from": sender.address, "to": sender.address, "value": 0, "data": b"", "gas": 21_000,
                      "nonce": nonce, "chainId": self.chain_id, **fees}
            self._broadcast(sender.sign_transaction(filler).raw_transaction)  # taken meanwhile: fine too

    def _broadcast(self, raw: bytes) -> None:
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception:  # noqa: BLE001 - "already known" and "nonce too low" both mean it is in hand
            pass

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
        except Exception as exc:  # noqa: BLE001 - the replay's failure is the explanation
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
        except Exception as exc:  # every backend raises its own revert type
            raise self._as_chain_error(exc, self._describe(fn)) from exc

    def eth_balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(to_checksum_address(address)))

    def nonce(self, address: str) -> int:
        return int(self.w3.eth.get_transaction_count(to_checksum_address(address)))

    def in_flight(self, address: str) -> bool:
        """Whether `address` has transactions sent but not mined: with none, every transaction it sent before
        this call has been mined (or dropped) and can be looked up."""
        address = to_checksum_address(address)
        with self.nonces.hold(address) as ticket:  # sends this process (or this machine's others) just made count
            sent = ticket.next(lambda: self.w3.eth.get_transaction_count(address, "pending"))
        return sent > int(self.w3.eth.get_transaction_count(address, "latest"))

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def head(self) -> ChainHead:
        block = self.w3.eth.get_block("latest")
        return ChainHead(number=int(block["number"]), hash="0x" + bytes(block["hash"]).hex(),
                         timestamp=int(block["timestamp"]))

    def block(self, number: int | str = "latest") -> ChainBlock:
        """One block by number (or "latest"), with its transaction hashes."""
        try:
            block = self.w3.eth.get_block(number)
        except Exception as exc:
            raise ChainError(f"no block {number} on this chain", field="block", status=404) from exc
        return ChainBlock(
            number=int(block["number"]), hash="0x" + bytes(block["hash"]).hex(),
            parent_hash="0x" + bytes(block["parentHash"]).hex(), timestamp=int(block["timestamp"]),
            gas_used=int(block["gasUsed"]),
            transactions=tuple("0x" + bytes(t).hex() for t in block["transactions"]),
        )

    def block_headers(self, first: int, last: int) -> list[ChainBlock]:
        """Blocks `first`..`last` without transactions; batched JSON-RPC requests on a node (an indexer
        reads thousands of headers, and one round trip per header would dominate its time)."""
        numbers = list(range(first, last + 1))
        batch = getattr(self.w3.provider, "make_batch_request", None)
        if self.kind != "rpc" or batch is None:
            return [_header(self.w3.eth.get_block(n), raw=False) for n in numbers]
        headers = []
        for at in range(0, len(numbers), HEADER_BATCH):
            part = numbers[at:at + HEADER_BATCH]
            responses = batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
            if not isinstance(responses, list):
                raise ChainError(f"the node refused a batch of block headers: {responses}", status=502)
            for number, response in zip(part, sorted(responses, key=lambda r: r.get("id", 0))):
                block = response.get("result") if isinstance(response, dict) else None
                if not block:
                    raise ChainError(f"the node has no block {number} (the chain is shorter than asked)",
                                     field="block", status=404)
                headers.append(_header(block, raw=True))
        return headers

    def raw_logs(self, addresses: list[str], first: int, last: int) -> list[Any]:
        """Every log the `addresses` emitted in blocks `first`..`last`, in chain order."""
        return list(self.w3.eth.get_logs({"fromBlock": first, "toBlock": last,
                                          "address": [to_checksum_address(a) for a in addresses]}))

    def transaction(self, tx_hash: str) -> ChainTransaction:
        """A mined transaction with its decoded receipt."""
        result = self.receipt(tx_hash)
        tx = self.w3.eth.get_transaction(HexBytes(tx_hash))
        to = tx.get("to")
        return ChainTransaction(
            tx_hash=result.tx_hash, block_number=result.block_number, sender=to_checksum_address(tx["from"]),
            to=to_checksum_address(to) if to else None, value=int(tx.get("value") or 0), nonce=int(tx["nonce"]),
            input="0x" + bytes(tx.get("input") or b"").hex(),
            contract=self.abi_book.contract_name(to or result.contract_address), result=result,
        )

    def receipt(self, tx_hash: str) -> TxResult:
        try:
            return self._result(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        except Exception as exc:
            raise ChainError(f"no mined transaction {tx_hash} on this chain", field="tx_hash",
                             status=404) from exc

    def logs(self, contract: Contract, name: str, from_block: int = 0,
             to_block: int | str = "latest") -> list[dict[str, Any]]:
        """Arguments of every `name` event `contract` emitted in the block range."""
        found = contract.events[name]().get_logs(from_block=from_block, to_block=to_block)
        return [dict(e["args"]) for e in found]

    def event_tx(self, contract: Contract, name: str, from_block: int = 0, **match: Any) -> str | None:
        """The hash of the first transaction whose `name` event from `contract` carries the arguments `match`
        (the record of a write whose own answer a crash lost), or None."""
        for log in contract.events[name]().get_logs(from_block=from_block, argument_filters=match):
            if all(log["args"][k] == v for k, v in match.items()):
                return "0x" + bytes(log["transactionHash"]).hex()
        return None

    # -- time and lifecycle ------------------------------------------------------------------

    def advance_time(self, seconds: int) -> ChainHead:
        """Mine an empty block at least `seconds` later than the head (cooldowns, deadlines)."""
        if seconds < 0:
            raise ChainError("advance_time takes a non-negative number of seconds",
                             field="seconds")
        if self._advance_time is None:
            raise ChainError(f"this {self.kind} chain cannot move its clock", status=501)
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
            explained = explain_revert(name, args, target)
            if explained is not None:  # the field it concerns and why, in words, before the revert itself
                field, words = explained
                return ChainError(f"{words} ({target} reverted: {reason})", reason=reason, error_name=name,
                                  error_args=args, data="0x" + data.hex(), field=field)
            return ChainError(f"{target} reverted: {reason}", reason=reason, error_name=name,
                              error_args=args, data="0x" + data.hex())
        reason = _message_of(exc)
        if "revert" in reason.lower():
            return ChainError(f"{target} reverted: {reason}", reason=reason)
        no_gas = _NO_GAS.search(reason)
        if no_gas:
            # py-evm names the sender as a bytes literal; people need the address and what to do.
            sender = to_checksum_address(ast.literal_eval(no_gas["sender"]))
            return ChainError(
                f"{target}: {sender} has {format_amount(int(no_gas['balance']))} ETH but the gas costs up to "
                f"{format_amount(int(no_gas['gas']))} ETH; send it ETH first (on the embedded chain: "
                f"`ledgerlm chain faucet {sender}`)", reason=reason, field="gas")
        if isinstance(exc, (requests.RequestException, OSError)):  # the endpoint, not the caller: try again later
            return ChainError(f"{target}: the chain's endpoint did not answer ({reason})", reason=reason,
                              field="chain", status=503)
        return ChainError(f"{target} was rejected by the chain: {reason}", reason=reason)


_NO_GAS = re.compile(r"""Sender (?P<sender>b'(?:[^'\\]|\\.)*'|b"(?:[^"\\]|\\.)*") cannot afford txn gas """
                     r"(?P<gas>\d+) with account balance (?P<balance>\d+)")


def _header(block: Any, *, raw: bool) -> ChainBlock:
    if raw:  # a JSON-RPC result: hex strings
        return ChainBlock(number=int(block["number"], 16), hash=block["hash"], parent_hash=block["parentHash"],
                          timestamp=int(block["timestamp"], 16), gas_used=int(block["gasUsed"], 16),
                          transactions=())
    return ChainBlock(number=int(block["number"]), hash="0x" + bytes(block["hash"]).hex(),
                      parent_hash="0x" + bytes(block["parentHash"]).hex(), timestamp=int(block["timestamp"]),
                      gas_used=int(block["gasUsed"]), transactions=())


@dataclass
class _Outstanding:
    """A write on its way: every signed version of it (bumps share the nonce) and the latest bytes."""

    sender: LocalAccount | None  # None: signed by a client, so it cannot be re-priced here
    tx: dict
    hashes: list[bytes]
    raw: bytes
    bumps: int = 0


def _bumped(previous: dict, market: dict) -> dict:
    """Fee fields for a replacement: an eighth over the previous ones, and at least what the market asks now."""
    def up(value: int) -> int:
        return value * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR + 1

    if "gasPrice" in previous:
        return {"gasPrice": max(up(previous["gasPrice"]), market.get("gasPrice", 0))}
    priority = max(up(previous["maxPriorityFeePerGas"]), market.get("maxPriorityFeePerGas", 0))
    return {"maxPriorityFeePerGas": priority,
            "maxFeePerGas": max(up(previous["maxFeePerGas"]), market.get("maxFeePerGas", 0), priority)}


def _says(exc: BaseException, phrases: tuple[str, ...]) -> bool:
    message = _message_of(exc).lower()
    return any(phrase in message for phrase in phrases)


def _message_of(exc: BaseException) -> str:
    """The error's own words, with any URL in them cut to scheme, host and port (`scrub_urls`): a hosted endpoint's
    key rides in its URL, which an HTTP client's error repeats, and chain errors reach callers."""
    return scrub_urls(_raw_message_of(exc))


def _raw_message_of(exc: BaseException) -> str:
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

