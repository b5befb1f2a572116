"""The EIP-712 domain every signed action names: one deployment (chain id + Registry) and a deadline cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address

DOMAIN_NAME = "ledgerlm"
DOMAIN_VERSION = "1"
DEFAULT_MAX_TTL = 24 * 3600


@dataclass(frozen=True)
class SigningDomain:
    """Where a signature is valid: one chain and one Registry contract (`verifyingContract`).

    Two embedded nodes share chain id 1337, but each deploys its own Registry, so a message
    signed for one is refused by the other. `verifying_contract` is None only on a node whose
    contracts are not deployed yet. `max_ttl` caps how far ahead a deadline may lie.
    """

    chain_id: int
    verifying_contract: str | None = None
    max_ttl: int = DEFAULT_MAX_TTL

    def __post_init__(self):
        if self.verifying_contract is not None:
            if not is_address(self.verifying_contract):
                raise ValueError(f"verifying_contract {self.verifying_contract!r} is not an address")
            object.__setattr__(self, "verifying_contract", to_checksum_address(self.verifying_contract))

    def eip712(self) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The EIP712Domain type fields and values, as `typed_data` embeds them."""
        fields = [
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
        ]
        values: dict[str, Any] = {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": self.chain_id}
        if self.verifying_contract is not None:
            fields.append({"name": "verifyingContract", "type": "address"})
            values["verifyingContract"] = self.verifying_contract
        return fields, values

    def to_dict(self) -> dict[str, Any]:
        """What /node/info publishes so clients sign for this deployment."""
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
            "maxDeadlineSeconds": self.max_ttl,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SigningDomain:
        return cls(
            chain_id=int(data["chainId"]),
            verifying_contract=data.get("verifyingContract"),
            max_ttl=int(data.get("maxDeadlineSeconds", DEFAULT_MAX_TTL)),
        )

    def describe(self) -> str:
        where = f"Registry {self.verifying_contract}" if self.verifying_contract else "no Registry"
        return f"chain id {self.chain_id}, {where}"
