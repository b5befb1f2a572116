"""Typed clients for revenue shares: the factory that issues one ERC-20 per asset, and each share token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from ledgerlm.chain.contracts import Bytes32, TokenClient, _Client, as_bytes32
from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.port import TxResult

ZERO_ADDRESS = "0x" + "00" * 20
# balancesAt reads this many accounts per eth_call, well inside any node's call gas limit.
BALANCES_PER_CALL = 400
TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")
CLAIMED_TOPIC = keccak(text="AllocationClaimed(address,uint256)")
# What an asset's owner signs for RevenueShareFactory.issue (its SHARE_ISSUE_TYPEHASH): the token's name and
# symbol, who gets what, until when.
SHARE_ISSUE_TYPES = {"ShareIssue": [
    {"name": "kind", "type": "uint8"}, {"name": "assetId", "type": "bytes32"}, {"name": "name", "type": "string"},
    {"name": "symbol", "type": "string"}, {"name": "supply", "type": "uint256"},
    {"name": "allocationRoot", "type": "bytes32"}, {"name": "deadline", "type": "uint256"},
]}


class AssetKind(IntEnum):
    """What shares are in; the numbers are the factory's kind codes."""

    DATANET = 0
    MODEL = 1


def share_issue_typed_data(domain: dict[str, Any], kind: AssetKind | int, asset_id: Bytes32, supply: int,
                           allocation_root: Bytes32, deadline: int, *, name: str, symbol: str) -> dict[str, Any]:
    """The full EIP-712 `ShareIssue` an asset's owner signs in the factory's `domain` (its `eip712Domain`): the
    owner's consent to these terms, without which the factory creates no token for the asset."""
    return {
        "types": {"EIP712Domain": [
            {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
        ], **SHARE_ISSUE_TYPES},
        "primaryType": "ShareIssue",
        "domain": dict(domain),
        "message": {"kind": int(AssetKind(kind)), "assetId": "0x" + as_bytes32(asset_id, "asset_id").hex(),
                    "name": str(name), "symbol": str(symbol), "supply": int(supply), "allocationRoot": "0x" + as_bytes32(allocation_root, "allocation_root").hex(),
                    "deadline": int(deadline)},
    }


def sign_share_issue(owner: LocalAccount, domain: dict[str, Any], kind: AssetKind | int, asset_id: Bytes32,
                     supply: int, allocation_root: Bytes32, deadline: int, *, name: str, symbol: str) -> str:
    """Sign, locally, the owner's `ShareIssue` for these terms; returns the 65-byte signature as 0x-hex."""
    typed = share_issue_typed_data(domain, kind, asset_id, supply, allocation_root, deadline, name=name,
                                   symbol=symbol)
    return "0x" + bytes(owner.sign_typed_data(full_message=typed).signature).hex()


@dataclass(frozen=True)
class Transfer:
    """One Transfer log of a share token."""

    block: int
    log_index: int
    sender: str
    to: str
    amount: int


@dataclass
class ShareEvents:
    """One share token's Transfer logs in chain order, and who claimed an allocation in which block."""

    transfers: list[Transfer]
    claims: dict[str, int]


class ShareFactoryClient(_Client):
    """RevenueShareFactory: one RevenueShare token per registered Datanet or model, issued once."""

    artifact_name = "RevenueShareFactory"

    def issue(self, sender: LocalAccount, kind: AssetKind | int, asset_id: Bytes32, name: str, symbol: str,
              supply: int, allocation_root: Bytes32, deadline: int, signature: str | bytes) -> TxResult:
        """Relay the asset owner's signed `ShareIssue` (`sign_share_issue`); `sender` needs ISSUER_ROLE."""
        raw = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else bytes(signature)
        return self._send(sender, "issue", int(AssetKind(kind)), as_bytes32(asset_id, "asset_id"), name, symbol,
                          int(supply), as_bytes32(allocation_root, "allocation_root"), int(deadline), raw)

    def asset_owner(self, kind: AssetKind | int, asset_id: Bytes32) -> str:
        """Who must sign the asset's issue: the Registry's owner of the Datanet or developer of the model."""
        return to_checksum_address(self._call("assetOwner", int(AssetKind(kind)), as_bytes32(asset_id, "asset_id")))

    def require_named_share_issue(self) -> None:
        """Refuse a factory deployed before its ShareIssue covered the token's name and symbol: it would refuse
        every signature made today, and on it the issuer chose the token's name alone."""
        fields = ",".join(f"{f['type']} {f['name']}" for f in SHARE_ISSUE_TYPES["ShareIssue"])
        if bytes(self._call("SHARE_ISSUE_TYPEHASH")) != keccak(text=f"ShareIssue({fields})"):
            raise ChainError("this deployment's RevenueShareFactory predates share issues that sign the token's name "
                             "and symbol: redeploy the contracts (`ledgerlm chain deploy`) to issue shares",
                             field="share_factory", status=409)

    def share_issue_typed_data(self, kind: AssetKind | int, asset_id: Bytes32, supply: int,
                               allocation_root: Bytes32, deadline: int, *, name: str, symbol: str) -> dict[str, Any]:
        return share_issue_typed_data(self.eip712_domain, kind, asset_id, supply, allocation_root, deadline,
                                      name=name, symbol=symbol)

    def sign_share_issue(self, owner: LocalAccount, kind: AssetKind | int, asset_id: Bytes32, supply: int,
                         allocation_root: Bytes32, deadline: int, *, name: str, symbol: str) -> str:
        return sign_share_issue(owner, self.eip712_domain, kind, asset_id, supply, allocation_root, deadline,
                                name=name, symbol=symbol)

    def share_issue_digest(self, kind: AssetKind | int, asset_id: Bytes32, supply: int, allocation_root: Bytes32,
                           deadline: int, *, name: str, symbol: str) -> str:
        return "0x" + bytes(self._call("shareIssueDigest", int(AssetKind(kind)), as_bytes32(asset_id, "asset_id"),
                                       name, symbol, int(supply), as_bytes32(allocation_root, "allocation_root"),
                                       int(deadline))).hex()

    def share_of(self, kind: AssetKind | int, asset_id: Bytes32) -> str | None:
        """The asset's share token, or None before shares are issued."""
        address = self._call("shareOf", int(AssetKind(kind)), as_bytes32(asset_id, "asset_id"))
        return None if int(address, 16) == 0 else to_checksum_address(address)


class ShareTokenClient(TokenClient):
    """RevenueShare: a standard ERC-20 with per-block balance checkpoints and its allocation drop."""

    artifact_name = "RevenueShare"

    def allocation_root(self) -> str:
        return "0x" + bytes(self._call("allocationRoot")).hex()

    def issued_block(self) -> int:
        return int(self._call("issuedBlock"))

    def claim_allocation(self, sender: LocalAccount, account: str, amount: int, proof: Sequence[str]) -> TxResult:
        return self._send(sender, "claimAllocation", to_checksum_address(account), int(amount),
                          [as_bytes32(p, "proof") for p in proof])

    def is_allocation_claimed(self, account: str) -> bool:
        return bool(self._call("isAllocationClaimed", to_checksum_address(account)))

    def balance_at(self, account: str, block: int) -> int:
        return int(self._call("balanceAt", to_checksum_address(account), int(block)))

    def balances_at(self, accounts: Sequence[str], block: int) -> dict[str, int]:
        """Every account's balance at the end of `block`, read in batches of BALANCES_PER_CALL."""
        accounts = [to_checksum_address(a) for a in accounts]
        out: dict[str, int] = {}
        for start in range(0, len(accounts), BALANCES_PER_CALL):
            part = accounts[start:start + BALANCES_PER_CALL]
            out.update(zip(part, (int(v) for v in self._call("balancesAt", part, int(block)))))
        return out

    def events(self, from_block: int, to_block: int) -> ShareEvents:
        """This token's transfers and allocation claims in the block range."""
        return share_events(self.chain, [self.address], from_block, to_block)[self.address]


def share_events(chain, tokens: Sequence[str], from_block: int, to_block: int) -> dict[str, ShareEvents]:
    """Transfers and allocation claims of many share tokens in one log query (an epoch close reads them all)."""
    tokens = [to_checksum_address(t) for t in tokens]
    found = {t: ShareEvents([], {}) for t in tokens}
    if not tokens:
        return found
    decoder = chain.contract("RevenueShare", tokens[0]).events
    logs = chain.w3.eth.get_logs({"address": tokens, "fromBlock": int(from_block), "toBlock": int(to_block),
                                  "topics": [["0x" + TRANSFER_TOPIC.hex(), "0x" + CLAIMED_TOPIC.hex()]]})
    for log in logs:
        token = to_checksum_address(log["address"])
        if bytes(log["topics"][0]) == TRANSFER_TOPIC:
            e = decoder.Transfer().process_log(log)
            found[token].transfers.append(Transfer(int(e["blockNumber"]), int(e["logIndex"]), e["args"]["from"],
                                                   e["args"]["to"], int(e["args"]["value"])))
        else:
            e = decoder.AllocationClaimed().process_log(log)
            found[token].claims[e["args"]["account"]] = int(e["blockNumber"])
    for events in found.values():
        events.transfers.sort(key=lambda t: (t.block, t.log_index))
    return found
