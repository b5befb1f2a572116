"""Deploying the settlement contracts, wiring their roles, and recording where they live."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.port import Chain

CONTRACT_NAMES = ("LedgerToken", "Registry", "Staking", "EpochDistributor", "PaymentEscrow")

# An unbonding period long enough for a validator round and a dispute to finish.
DEFAULT_COOLDOWN_SECONDS = 7 * 24 * 3600
# Longer than an epoch, so a consumer cannot pull funds out from under a settlement in progress.
DEFAULT_WITHDRAW_DELAY_SECONDS = 2 * 24 * 3600


def role_id(name: str) -> bytes:
    """The AccessControl id of a role: zero for the admin role, else keccak256 of its name."""
    return b"\x00" * 32 if name == "DEFAULT_ADMIN_ROLE" else keccak(text=name)


@dataclass(frozen=True)
class Deployment:
    """Where the settlement contracts live on one chain, and who deployed them in which block."""

    chain_id: int
    addresses: dict[str, str]
    deployer: str
    block: int
    node: str = ""
    settings: dict[str, int] = field(default_factory=dict)

    def address_of(self, name: str) -> str:
        try:
            return self.addresses[name]
        except KeyError:
            raise ChainError(f"the deployment has no {name} contract; redeploy with "
                             "`ledgerlm chain deploy`", field="deployment") from None

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
            deployment = cls(
                chain_id=int(payload["chain_id"]),
                addresses={k: to_checksum_address(v) for k, v in payload["addresses"].items()},
                deployer=to_checksum_address(payload["deployer"]),
                block=int(payload["block"]),
                node=to_checksum_address(payload["node"]) if payload.get("node") else "",
                settings={k: int(v) for k, v in payload.get("settings", {}).items()},
            )
        except FileNotFoundError:
            raise ChainError(f"no contract deployment recorded at {path}; run `ledgerlm init` "
                             "or `ledgerlm chain deploy` first", field="deployment",
                             status=404) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"the deployment record {path} is damaged ({exc}); redeploy or "
                             "restore it", field="deployment") from exc
        missing = [n for n in CONTRACT_NAMES if n not in deployment.addresses]
        if missing:
            raise ChainError(f"the deployment record {path} lacks {', '.join(missing)}",
                             field="deployment")
        return deployment

    def check(self, chain: Chain) -> None:
        """Fail unless `chain` is the chain this deployment was made on and holds its code."""
        if chain.chain_id != self.chain_id:
            raise ChainError(
                f"the contracts were deployed on chain id {self.chain_id}, but the connected "
                f"chain has id {chain.chain_id}; connect to the right chain or redeploy",
                field="chain_id",
            )
        for name, address in self.addresses.items():
            if not chain.w3.eth.get_code(address):
                raise ChainError(
                    f"no {name} contract code at {address} on chain {chain.chain_id}; the chain "
                    "was reset or this is another network — redeploy",
                    field="deployment",
                )


def deploy_all(
    chain: Chain,
    deployer: LocalAccount,
    *,
    treasury: str,
    node: str | None = None,
    cooldown: int = DEFAULT_COOLDOWN_SECONDS,
    withdraw_delay: int = DEFAULT_WITHDRAW_DELAY_SECONDS,
    node_funds_epochs: bool = False,
) -> Deployment:
    """Deploy the five settlement contracts and grant the node its roles.

    `deployer` holds every admin role. `node` (default: the deployer) gets MINTER, REGISTRAR,
    SLASHER and SETTLER (not FUNDER: epochs are funded only by settlement, so no direct funding can
    take an epoch number a settlement needs); the escrow gets FUNDER on the distributor so settlements can fund
    epochs. Slashed stake goes to `treasury`.
    """
    node_address = to_checksum_address(node or deployer.address)
    treasury = to_checksum_address(treasury)
    start = chain.block_number() + 1
    admin = deployer.address
    token = chain.deploy("LedgerToken", admin, sender=deployer)
    registry = chain.deploy("Registry", admin, sender=deployer)
    staking = chain.deploy("Staking", token, admin, treasury, int(cooldown), sender=deployer)
    distributor = chain.deploy("EpochDistributor", token, admin, sender=deployer)
    escrow = chain.deploy("PaymentEscrow", token, distributor, admin, int(withdraw_delay),
                          sender=deployer)
    addresses = {"LedgerToken": token, "Registry": registry, "Staking": staking,
                 "EpochDistributor": distributor, "PaymentEscrow": escrow}

    grants = [
        ("Registry", "REGISTRAR_ROLE", node_address),
        ("Staking", "SLASHER_ROLE", node_address),
        ("EpochDistributor", "FUNDER_ROLE", escrow),
        ("PaymentEscrow", "SETTLER_ROLE", node_address),
    ]
    if node_funds_epochs:  # for tooling that funds payout epochs directly, outside the escrow
        grants.append(("EpochDistributor", "FUNDER_ROLE", node_address))
    if node_address != admin:
        grants.append(("LedgerToken", "MINTER_ROLE", node_address))
    for name, role, account in grants:
        contract = chain.contract(name, addresses[name])
        chain.transact(contract.functions.grantRole(role_id(role), account), deployer)

    return Deployment(
        chain_id=chain.chain_id,
        addresses=addresses,
        deployer=admin,
        block=start,
        node=node_address,
        settings={"cooldown": int(cooldown), "withdraw_delay": int(withdraw_delay)},
    )
