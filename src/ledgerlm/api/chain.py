"""Chain routes: status, balances, and relaying transactions that clients signed themselves."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from eth_account import Account
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ledgerlm.api.cadence import start_every
from ledgerlm.api.deps import address_in, caller_address, get_node, is_operator, require_operator
from ledgerlm.chain import ChainError, StakeRole
from ledgerlm.config import EMBEDDED
from ledgerlm.errors import LedgerError
from ledgerlm.node import Node

router = APIRouter(prefix="/chain", tags=["chain"])
log = logging.getLogger("ledgerlm.chain")

ROLES = {r.name.lower(): r for r in StakeRole}

# An estimate is EVM work anyone may ask for without paying gas, so it is bounded: the calls clients make
# (stakes, deposits, claims with their Merkle proofs, share transfers) use well under a million gas.
ESTIMATE_MAX_GAS = 5_000_000
# Precompiles sit at the lowest addresses (0x01-0x11 today; the range is kept for later forks); some run
# for seconds of pure Python per call on the embedded chain (a bn128 pairing takes ~0.3 s per pair).
PRECOMPILE_RANGE = 0x10000


class TxRequest(BaseModel):
    to: str
    # calldata as 0x-hex: a refusal names the field rather than failing inside the chain's encoder
    data: str = Field("0x", pattern=r"^0x([0-9a-fA-F]{2})*$", max_length=2 + 2 * 128 * 1024)
    value: int = Field(0, ge=0, lt=2**256)
    sender: str = Field(alias="from")

    model_config = {"populate_by_name": True}


class RawTransaction(BaseModel):
    raw: str


class IndexRequest(BaseModel):
    max_blocks: int = Field(1000, ge=1, le=1_000_000, description="blocks to index in this call at most")


class FaucetRequest(BaseModel):
    address: str
    eth_wei: int = Field(0, ge=0, le=10**24)
    tokens: int = Field(0, ge=0, le=10**30)


def tx_json(result) -> dict[str, Any]:
    return {
        "tx_hash": result.tx_hash,
        "block_number": result.block_number,
        "gas_used": result.gas_used,
        "status": result.status,
        "events": [
            {"name": e.name, "address": e.address, "args": _plain(e.args)} for e in result.logs
        ],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@router.get("/info")
def chain_info(node: Node = Depends(get_node), operator: bool = Depends(is_operator)) -> dict:
    """Backend, chain id, head block, contract addresses, the node's address and fees (the RPC URL whole, with
    the credential a hosted endpoint carries in it, to the operator only)."""
    from ledgerlm.chain.endpoints import public_url

    head = node.chain.head()
    info: dict[str, Any] = {
        "kind": node.chain.kind,
        "url": node.config.chain if operator or node.config.chain == EMBEDDED else public_url(node.config.chain),
        "chain_id": node.chain.chain_id,
        "head": {"number": head.number, "hash": head.hash, "timestamp": head.timestamp},
        "node_address": node.account.address,
        "node_eth_wei": node.chain.eth_balance(node.account.address),
        "fees": node.chain.fee_fields(),
        "contracts": None,
        "faucet": node.config.chain == EMBEDDED,
    }
    if node.on_chain:
        info["contracts"] = node.deployment.addresses
        info["deployment_block"] = node.deployment.block
        info["token_supply"] = node.contracts.token.total_supply()
        staking = node.contracts.staking
        # the validators' reward pool, and what the node may release of it now (the admin's daily limit)
        info["reward_pool"] = {"pool": str(staking.reward_pool()), "releasable": str(staking.releasable()),
                               "limit_per_day": str(staking.reward_release_limit())}
        info["index"] = node.indexer.status().to_dict()
    return info


def _require_contracts(node: Node) -> None:
    if not node.on_chain:
        raise LedgerError("no contracts are deployed for this home, so there is nothing to index: run "
                          "`ledgerlm chain deploy --chain-url URL --key NAME`", field="chain", status=409)


@router.get("/index")
def index_status(node: Node = Depends(get_node)) -> dict:
    """How far the event index has come (indexed head, chain head, lag) and what it derived from the logs."""
    _require_contracts(node)
    return {**node.indexer.status().to_dict(), "derived": node.chain_view.summary()}


def start_index_follower(node) -> Callable[[], None]:
    """With `chain_index_seconds` set, keep the event index at the confirmed head in the background; returns a stopper."""
    seconds = getattr(getattr(node, "config", None), "chain_index_seconds", 0)
    if not seconds or not node.on_chain:
        return lambda: None

    def index() -> None:
        status = node.index_chain()
        log.debug("chain index at block %s (lag %s)", status["indexed_block"], status["lag"])

    return start_every(seconds, "chain-index", index, log)


@router.post("/index", dependencies=[Depends(require_operator)])
def index(body: IndexRequest, node: Node = Depends(get_node)) -> dict:
    """Index up to `max_blocks` more confirmed blocks (undoing any re-org first; once at the head, what the re-org
    took off the chain is anchored again); answers the new status."""
    _require_contracts(node)
    return node.index_chain(max_blocks=body.max_blocks)


@router.get("/accounts/{address}")
def account(address: str, node: Node = Depends(get_node)) -> dict:
    """ETH and token balances, nonce, stake per role and escrow balance of one address."""
    address = address_in(address)
    result: dict[str, Any] = {
        "address": address,
        "eth_wei": node.chain.eth_balance(address),
        "nonce": node.chain.nonce(address),
    }
    if node.on_chain:
        c = node.contracts
        result["tokens"] = c.token.balance_of(address)
        result["stake"] = {name: c.staking.stake_of(address, role) for name, role in ROLES.items()}
        result["unstaking"] = {}
        for name, role in ROLES.items():
            pending = c.staking.pending_of(address, role)
            if pending.amount:
                result["unstaking"][name] = {"amount": pending.amount, "release_at": pending.available_at}
        # slashes of its bonds still held: the admin key may give them back until they mature
        result["held_slashes"] = [
            {"slash_id": h.slash_id, "role": h.role.name.lower(), "round_id": h.round_id, "amount": h.amount,
             "matures_at": h.matures_at}
            for h in c.staking.held_slashes_of(address, from_block=node.deployment.block)]
        result["escrow"] = c.escrow.balance_of(address)
    return result


@router.post("/estimate")
def estimate(body: TxRequest, node: Node = Depends(get_node)) -> dict:
    """Gas for a transaction before the client signs it; a revert answers 400 with its reason. Calls to the
    chain's precompiles are refused, and an estimate runs at most ESTIMATE_MAX_GAS (free EVM work)."""
    request = {"from": address_in(body.sender, "from"), "to": address_in(body.to, "to"),
               "data": body.data, "value": body.value}
    if int(request["to"], 16) < PRECOMPILE_RANGE:
        raise LedgerError(f"to: {request['to']} is a precompile or reserved address; the node estimates calls to "
                          "contracts and transfers to accounts", field="to")
    try:
        gas = node.chain.estimate(request, max_gas=ESTIMATE_MAX_GAS)
    except ChainError as exc:
        if "out of gas" not in (exc.reason or "").lower():
            raise
        raise LedgerError(f"data: the call needs more than {ESTIMATE_MAX_GAS:,} gas, the most this node estimates "
                          f"(or it never ends): {exc.reason}", field="data") from exc
    return {"gas": gas, "fees": node.chain.fee_fields(),
            "nonce": node.chain.w3.eth.get_transaction_count(request["from"], "pending"),
            "chain_id": node.chain.chain_id}


@router.post("/transactions")
def send(body: RawTransaction, node: Node = Depends(get_node)) -> dict:
    """Relay a transaction the sender signed with their own key; answers once it is mined."""
    try:
        raw = bytes.fromhex(body.raw.removeprefix("0x"))
    except ValueError as exc:
        raise LedgerError("raw must be a hex-encoded signed transaction", field="raw") from exc
    try:
        sender = Account.recover_transaction(raw)
    except Exception as exc:  # eth-account raises several types for bytes that are no signed transaction
        raise LedgerError("raw is not a signed transaction this node can read", field="raw") from exc
    with node.relay_slots.hold(sender):
        return tx_json(node.chain.send_raw(raw))


@router.post("/faucet")
def faucet(body: FaucetRequest, request: Request, node: Node = Depends(get_node)) -> dict:
    """Embedded development chain only, loopback clients addressing it by a loopback name only: ETH for
    gas and LGR from the treasury account, up to a per-address limit."""
    relayed = any(name in request.headers for name in ("x-forwarded-for", "forwarded", "x-real-ip"))
    grant = node.faucet.grant(address_in(body.address), eth_wei=body.eth_wei, tokens=body.tokens,
                              client_host=caller_address(request, node), host_header=request.headers.get("host"),
                              relayed=relayed)
    return asdict(grant)
