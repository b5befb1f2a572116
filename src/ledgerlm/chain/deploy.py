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
# `deploy_all` also deploys the RevenueShareFactory; a record without one (made before revenue shares
# existed) still loads, and only the shares commands ask for a redeploy.

# An unbonding period long enough for a validator round and a dispute to finish.
DEFAULT_COOLDOWN_SECONDS = 7 * 24 * 3600
# Longer than an epoch, so a consumer cannot pull funds out from under a settlement in progress.
DEFAULT_WITHDRAW_DELAY_SECONDS = 2 * 24 * 3600
# A consumer's spending cap for a node bounds what that node may debit per this much chain time.
DEFAULT_CAP_PERIOD_SECONDS = 24 * 3600
# How long payees have to claim an epoch before its unclaimed rest may be swept to the treasury.
DEFAULT_CLAIM_WINDOW_SECONDS = 90 * 24 * 3600
# LGR's fixed supply: one billion tokens, minted once to the treasury at deployment.
DEFAULT_SUPPLY = 10**9 * 10**18
# The most one validation round, and one slash window, may slash from one bond (the 10% policy), enforced by Staking.
DEFAULT_SLASH_CAP_BPS = 1_000
# How long a slash stays held, revocable by the admin key, before it may join the validators' reward pool: time for
# the operator to see a slash the node should not have made.
DEFAULT_SLASH_DISPUTE_SECONDS = 3 * 24 * 3600
# The most of the validators' reward pool the node's hot key may release per day: it also posts the root naming who
# is paid, so this is what a stolen key could take of the pool in a day before the admin revokes its role.
DEFAULT_REWARD_RELEASE_PER_DAY = 10_000 * 10**18


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
    treasury: str = ""

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
                treasury=to_checksum_address(payload["treasury"]) if payload.get("treasury") else "",
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
    admin: LocalAccount,
    *,
    treasury: str,
    node: str,
    supply: int = DEFAULT_SUPPLY,
    cooldown: int = DEFAULT_COOLDOWN_SECONDS,
    withdraw_delay: int = DEFAULT_WITHDRAW_DELAY_SECONDS,
    cap_period: int = DEFAULT_CAP_PERIOD_SECONDS,
    claim_window: int = DEFAULT_CLAIM_WINDOW_SECONDS,
    slash_cap_bps: int = DEFAULT_SLASH_CAP_BPS,
    slash_dispute: int = DEFAULT_SLASH_DISPUTE_SECONDS,
    reward_release_per_day: int = DEFAULT_REWARD_RELEASE_PER_DAY,
) -> Deployment:
    """Deploy the five settlement contracts and the revenue share factory with `admin` and grant the node only its operating roles.

    `admin` holds every admin role and the sweeper role; LGR's whole `supply` is minted once to
    `treasury`, which also receives swept funds. The node (the hot key) may register, relay roots,
    record validation outcomes and slash within them, settle within consumers' signed caps and post
    payout roots; it cannot mint (nobody can), fund an epoch except from escrow or the slashed-stake
    pool, or move anyone's stake to itself. A slash is held for `slash_dispute` seconds, during which
    `admin` may revoke it, before it can reach the pool; the node releases at most `reward_release_per_day` of the
    pool a day (the admin may change it).
    """
    node_address = to_checksum_address(node)
    treasury = to_checksum_address(treasury)
    if node_address == admin.address:
        raise ChainError("the node's hot key must not be the admin key: use a separate admin key",
                         field="node")
    start = chain.block_number() + 1
    token = chain.deploy("LedgerToken", treasury, int(supply), sender=admin)
    registry = chain.deploy("Registry", admin.address, sender=admin)
    distributor = chain.deploy("EpochDistributor", token, admin.address, treasury, int(claim_window),
                               sender=admin)
    staking = chain.deploy("Staking", token, distributor, admin.address, int(cooldown),
                           int(slash_cap_bps), int(slash_dispute), int(reward_release_per_day), sender=admin)
    escrow = chain.deploy("PaymentEscrow", token, distributor, admin.address, int(withdraw_delay),
                          int(cap_period), sender=admin)
    share_factory = chain.deploy("RevenueShareFactory", registry, admin.address, sender=admin)
    addresses = {"LedgerToken": token, "Registry": registry, "Staking": staking,
                 "EpochDistributor": distributor, "PaymentEscrow": escrow, "RevenueShareFactory": share_factory}

    grants = [
        ("Registry", "REGISTRAR_ROLE", node_address),
        ("Staking", "SLASHER_ROLE", node_address),
        ("Staking", "REWARDS_ROLE", node_address),
        ("EpochDistributor", "FUNDER_ROLE", escrow),
        ("EpochDistributor", "FUNDER_ROLE", staking),
        ("EpochDistributor", "POSTER_ROLE", node_address),
        ("EpochDistributor", "SWEEPER_ROLE", admin.address),
        ("PaymentEscrow", "SETTLER_ROLE", node_address),
        ("RevenueShareFactory", "ISSUER_ROLE", node_address),
    ]
    for name, role, account in grants:
        contract = chain.contract(name, addresses[name])
        chain.transact(contract.functions.grantRole(role_id(role), account), admin)

    return Deployment(
        chain_id=chain.chain_id,
        addresses=addresses,
        deployer=admin.address,
        block=start,
        node=node_address,
        settings={"cooldown": int(cooldown), "withdraw_delay": int(withdraw_delay), "cap_period": int(cap_period),
                  "claim_window": int(claim_window), "slash_cap_bps": int(slash_cap_bps),
                  "slash_dispute": int(slash_dispute), "reward_release_per_day": int(reward_release_per_day),
                  "supply": int(supply)},
        treasury=treasury,
    )
