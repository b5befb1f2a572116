"""Typed clients for the settlement contracts: domain names in, integers and records out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from itertools import islice
from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3.contract import Contract

from ledgerlm.chain.deploy import Deployment, role_id
from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.port import Chain, TxResult

Bytes32 = bytes | str


def as_bytes32(value: Bytes32, field: str) -> bytes:
    """Accept 32 raw bytes or their 0x-hex form; anything else is the caller's mistake."""
    raw = value
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raw = b""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
        raise ChainError(f"{field} must be 32 bytes (or 64 hex digits), got {value!r}",
                         field=field)
    return bytes(raw)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class StakeRole(IntEnum):
    """What a stake backs; the numbers are the contract's role codes."""

    VALIDATOR = 0
    AGENT = 1
    CONTRIBUTOR_BOND = 2
    PROVIDER = 3  # a compute provider's bond, slashed for a failed spot-check


@dataclass(frozen=True)
class DatanetRecord:
    datanet_id: str
    owner: str
    name: str
    metadata_hash: str
    licence: str
    latest_version: int
    created_at: int


@dataclass(frozen=True)
class DatanetVersionRecord:
    datanet_id: str
    version: int
    root: str
    count: int
    manifest_hash: str
    published_at: int


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    developer: str
    base_model: str
    base_model_hash: str
    adapter_hash: str
    datanet_version_roots: tuple[str, ...]
    training_config_hash: str
    eval_metrics_hash: str
    registered_at: int


@dataclass(frozen=True)
class FeePolicy:
    """Shares of one fee in basis points; the contract insists they sum to 10,000."""

    node_bps: int
    developer_bps: int
    contributors_bps: int
    validators_bps: int

    @property
    def total(self) -> int:
        return self.node_bps + self.developer_bps + self.contributors_bps + self.validators_bps


@dataclass(frozen=True)
class PendingAmount:
    """Stake cooling down, or an escrow withdrawal waiting; usable from `available_at`."""

    amount: int
    available_at: int


class SlashState(IntEnum):
    """Where a slash stands; the numbers are the contract's."""

    HELD = 1  # revocable by the admin until it matures
    REVOKED = 2  # given back to the staker's active stake
    SETTLED = 3  # in the validators' reward pool


@dataclass(frozen=True)
class HeldSlash:
    """A slash as Staking holds it: taken from the bond, revocable until `matures_at`, then settled into the pool."""

    slash_id: int
    account: str
    role: StakeRole
    round_id: int
    amount: int
    matures_at: int
    state: SlashState


@dataclass(frozen=True)
class EpochFunding:
    """An epoch in the distributor: funded total, root once posted, claims and sweep so far."""

    epoch: int
    root: str | None  # None until the root is posted
    total: int
    claimed: int
    funded_at: int
    posted_at: int
    swept: bool

    @property
    def unclaimed(self) -> int:
        return self.total - self.claimed


@dataclass(frozen=True)
class PermitSignature:
    """An ERC-2612 permit, signed locally by the token holder."""

    owner: str
    spender: str
    value: int
    deadline: int
    v: int
    r: bytes
    s: bytes


# PaymentEscrow stores a spending cap in 96 bits and a debit's amount shares a word with the consumer's address;
# the node stores a cap's deadline as a 64-bit Unix time.
CAP_LIMIT, DEADLINE_LIMIT, DEBIT_LIMIT = 2**96, 2**63, 2**96


# An epoch id holds its node's address above the node's own epoch number, which takes the low 64 bits.
EPOCH_NUMBER_BITS = 64


def epoch_id(node: str, number: int) -> int:
    """The distributor's id of `node`'s epoch `number`: the node's address above the number's 64 bits. The contracts
    let only that node settle into, release rewards into and post the root of its ids, so nodes sharing one
    distributor each keep their own epoch numbers (1, 2, 3, ...) and never publish the same epoch."""
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**EPOCH_NUMBER_BITS:
        raise ChainError(f"an epoch number must be an integer in [0, 2**{EPOCH_NUMBER_BITS}), got {number!r}",
                         field="epoch")
    return int(to_checksum_address(node), 16) << EPOCH_NUMBER_BITS | number


def cap_nonce() -> int:
    """A nonce for a new spending cap: the time in milliseconds, so a later authorisation outranks an earlier one
    without reading the chain first (the escrow accepts only nonces above the last one used)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class SignedSpendingCap:
    """A consumer's EIP-712 SpendingCap: `settler` may debit up to `cap` per cap period, from `nonce` on."""

    consumer: str
    settler: str
    cap: int
    nonce: int
    deadline: int  # the last time it can be relayed
    signature: bytes

    def as_tuple(self) -> tuple:
        signature = bytes(self.signature)
        if len(signature) != 65:
            raise ChainError(f"a spending cap's signature must be 65 bytes (r, s, v), got {len(signature)}",
                             field="signature")
        if not 0 <= int(self.cap) < CAP_LIMIT:
            raise ChainError(f"cap must be in [0, {CAP_LIMIT}), got {self.cap}", field="cap")
        return (to_checksum_address(self.consumer), to_checksum_address(self.settler), int(self.cap),
                int(self.nonce), int(self.deadline), signature[64], signature[:32], signature[32:64])


@dataclass(frozen=True)
class SpendingAllowance:
    """What a settler may debit from a consumer on chain: the standing cap per period and what is left of it."""

    cap: int
    nonce: int
    spent: int  # debited in the current cap period
    period_ends_at: int  # when the current period ends and `spent` starts again from 0

    @property
    def left(self) -> int:
        return max(0, self.cap - self.spent)


@dataclass(frozen=True)
class Debit:
    """One consumer's charge in an epoch settlement."""

    consumer: str
    amount: int

    def packed(self) -> bytes:
        """The word PaymentEscrow.settle reads: consumer << 96 | amount."""
        if not 0 <= int(self.amount) < DEBIT_LIMIT:
            raise ChainError(f"a debit's amount must be in [0, {DEBIT_LIMIT}), got {self.amount}", field="amount")
        return (int(to_checksum_address(self.consumer), 16) << 96 | int(self.amount)).to_bytes(32, "big")


class _Client:
    """What every settlement contract client shares: its contract, its chain, AccessControl."""

    artifact_name = ""

    def __init__(self, chain: Chain, address: str):
        self.chain = chain
        self.address = to_checksum_address(address)
        self.contract: Contract = chain.contract(self.artifact_name, self.address)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"

    def _call(self, name: str, *args: Any) -> Any:
        return self.chain.call(self.contract.functions[name](*args))

    def _send(self, sender: LocalAccount, name: str, *args: Any) -> TxResult:
        return self.chain.transact(self.contract.functions[name](*args), sender)

    def has_role(self, role: str, account: str) -> bool:
        return bool(self._call("hasRole", role_id(role), to_checksum_address(account)))

    def grant_role(self, sender: LocalAccount, role: str, account: str) -> TxResult:
        return self._send(sender, "grantRole", role_id(role), to_checksum_address(account))

    def revoke_role(self, sender: LocalAccount, role: str, account: str) -> TxResult:
        return self._send(sender, "revokeRole", role_id(role), to_checksum_address(account))

    def renounce_role(self, sender: LocalAccount, role: str) -> TxResult:
        return self._send(sender, "renounceRole", role_id(role), sender.address)

    @cached_property
    def eip712_domain(self) -> dict[str, Any]:
        """The contract's own EIP-712 domain (ERC-5267), so signatures always match it."""
        _, name, version, chain_id, verifying_contract, _, _ = self._call("eip712Domain")
        return {"name": name, "version": version, "chainId": int(chain_id),
                "verifyingContract": to_checksum_address(verifying_contract)}


class TokenClient(_Client):
    """LedgerToken: the ERC-20 (with ERC-2612 permit) that payments, stakes and rewards use."""

    artifact_name = "LedgerToken"

    def name(self) -> str:
        return self._call("name")

    def symbol(self) -> str:
        return self._call("symbol")

    def decimals(self) -> int:
        return int(self._call("decimals"))

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def balance_of(self, account: str) -> int:
        return int(self._call("balanceOf", to_checksum_address(account)))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._call("allowance", to_checksum_address(owner),
                              to_checksum_address(spender)))

    def nonce_of(self, owner: str) -> int:
        return int(self._call("nonces", to_checksum_address(owner)))

    def transfer(self, sender: LocalAccount, to: str, amount: int) -> TxResult:
        return self._send(sender, "transfer", to_checksum_address(to), int(amount))

    def approve(self, sender: LocalAccount, spender: str, amount: int) -> TxResult:
        return self._send(sender, "approve", to_checksum_address(spender), int(amount))

    def transfer_from(self, sender: LocalAccount, owner: str, to: str, amount: int) -> TxResult:
        return self._send(sender, "transferFrom", to_checksum_address(owner),
                          to_checksum_address(to), int(amount))

    def ensure_allowance(self, owner: LocalAccount, spender: str, amount: int) -> TxResult | None:
        """Approve `spender` for exactly `amount` unless it may already spend that much."""
        if self.allowance(owner.address, spender) >= amount:
            return None
        return self.approve(owner, spender, amount)

    def sign_permit(self, owner: LocalAccount, spender: str, value: int,
                    deadline: int, *, nonce: int | None = None) -> PermitSignature:
        """Sign an ERC-2612 permit locally; anyone may submit it (`permit`, `*_with_permit`).
        `nonce` defaults to the owner's current permit nonce, read from the chain."""
        spender = to_checksum_address(spender)
        message = {"owner": owner.address, "spender": spender, "value": int(value),
                   "nonce": self.nonce_of(owner.address) if nonce is None else int(nonce),
                   "deadline": int(deadline)}
        types = {"Permit": [
            {"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
            {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
            {"name": "deadline", "type": "uint256"},
        ]}
        signed = owner.sign_typed_data(self.eip712_domain, types, message)
        return PermitSignature(owner.address, spender, int(value), int(deadline), signed.v,
                               signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))

    def permit(self, sender: LocalAccount, permit: PermitSignature) -> TxResult:
        return self._send(sender, "permit", permit.owner, permit.spender, permit.value,
                          permit.deadline, permit.v, permit.r, permit.s)


class RegistryClient(_Client):
    """Registry: Datanets, their version roots, models with lineage, and fee policies."""

    artifact_name = "Registry"

    def register_datanet(self, sender: LocalAccount, datanet_id: Bytes32, owner: str, name: str,
                         metadata_hash: Bytes32, licence: str) -> TxResult:
        return self._send(sender, "registerDatanet", as_bytes32(datanet_id, "datanet_id"),
                          to_checksum_address(owner), name,
                          as_bytes32(metadata_hash, "metadata_hash"), licence)

    def publish_version(self, sender: LocalAccount, datanet_id: Bytes32, version: int,
                        root: Bytes32, count: int, manifest_hash: Bytes32) -> TxResult:
        return self._send(sender, "publishVersion", as_bytes32(datanet_id, "datanet_id"),
                          int(version), as_bytes32(root, "root"), int(count),
                          as_bytes32(manifest_hash, "manifest_hash"))

    def register_model(
        self,
        sender: LocalAccount,
        model_id: Bytes32,
        developer: str,
        base_model: str,
        base_model_hash: Bytes32,
        adapter_hash: Bytes32,
        datanet_version_roots: Sequence[Bytes32],
        training_config_hash: Bytes32,
        eval_metrics_hash: Bytes32,
    ) -> TxResult:
        roots = [as_bytes32(r, "datanet_version_roots") for r in datanet_version_roots]
        return self._send(sender, "registerModel", as_bytes32(model_id, "model_id"),
                          to_checksum_address(developer), base_model,
                          as_bytes32(base_model_hash, "base_model_hash"),
                          as_bytes32(adapter_hash, "adapter_hash"), roots,
                          as_bytes32(training_config_hash, "training_config_hash"),
                          as_bytes32(eval_metrics_hash, "eval_metrics_hash"))

    def set_fee_policy(self, sender: LocalAccount, model_id: Bytes32,
                       policy: FeePolicy) -> TxResult:
        return self._send(sender, "setFeePolicy", as_bytes32(model_id, "model_id"),
                          policy.node_bps, policy.developer_bps, policy.contributors_bps,
                          policy.validators_bps)

    def schedule_fee_policy(self, sender: LocalAccount, model_id: Bytes32, policy: FeePolicy,
                            from_epoch: int) -> TxResult:
        """Announce a split that prices the model's calls from settlement epoch `from_epoch` on."""
        return self._send(sender, "scheduleFeePolicy", as_bytes32(model_id, "model_id"),
                          policy.node_bps, policy.developer_bps, policy.contributors_bps,
                          policy.validators_bps, int(from_epoch))

    def set_price(self, sender: LocalAccount, model_id: Bytes32, price_per_1k: int) -> TxResult:
        return self._send(sender, "setPrice", as_bytes32(model_id, "model_id"), int(price_per_1k))

    def datanet_exists(self, datanet_id: Bytes32) -> bool:
        return bool(self._call("datanetExists", as_bytes32(datanet_id, "datanet_id")))

    def get_datanet(self, datanet_id: Bytes32) -> DatanetRecord:
        raw_id = as_bytes32(datanet_id, "datanet_id")
        owner, name, metadata_hash, licence, latest, created = _found(
            lambda: self._call("getDatanet", raw_id))
        return DatanetRecord(_hex(raw_id), owner, name, _hex(metadata_hash), licence,
                             int(latest), int(created))

    def latest_version(self, datanet_id: Bytes32) -> int:
        return int(_found(lambda: self._call("latestVersion",
                                             as_bytes32(datanet_id, "datanet_id"))))

    def get_version(self, datanet_id: Bytes32, version: int) -> DatanetVersionRecord:
        raw_id = as_bytes32(datanet_id, "datanet_id")
        root, count, manifest_hash, published_at = _found(
            lambda: self._call("getVersion", raw_id, int(version)))
        return DatanetVersionRecord(_hex(raw_id), int(version), _hex(root), int(count),
                                    _hex(manifest_hash), int(published_at))

    def root_publication(self, root: Bytes32) -> tuple[str, int] | None:
        """(datanet id, version) that first published `root`, or None if none did."""
        datanet_id, version = self._call("rootPublication", as_bytes32(root, "root"))
        return (_hex(datanet_id), int(version)) if version else None

    def model_exists(self, model_id: Bytes32) -> bool:
        return bool(self._call("modelExists", as_bytes32(model_id, "model_id")))

    def get_model(self, model_id: Bytes32) -> ModelRecord:
        raw_id = as_bytes32(model_id, "model_id")
        (developer, base_model, base_hash, adapter_hash, roots, config_hash, metrics_hash,
         registered_at) = _found(lambda: self._call("getModel", raw_id))
        return ModelRecord(_hex(raw_id), developer, base_model, _hex(base_hash),
                           _hex(adapter_hash), tuple(_hex(r) for r in roots), _hex(config_hash),
                           _hex(metrics_hash), int(registered_at))

    def fee_policy(self, model_id: Bytes32) -> FeePolicy:
        """The fee policy the model was published with (`set_fee_policy`); all zeros until one is set. It prices
        the epochs before the first scheduled change: `fee_policy_at` gives the split of any epoch."""
        return FeePolicy(*(int(v) for v in self._call("feePolicy",
                                                      as_bytes32(model_id, "model_id"))))

    def fee_policy_at(self, model_id: Bytes32, epoch: int) -> FeePolicy:
        """The split that prices the model's calls in settlement `epoch` (announced changes included)."""
        return FeePolicy(*(int(v) for v in self._call("feePolicyAt", as_bytes32(model_id, "model_id"),
                                                      int(epoch))))

    def scheduled_fee_policy(self, model_id: Bytes32) -> tuple[FeePolicy, int] | None:
        """The latest announced change and the epoch it prices from; None when none was announced."""
        shares, from_epoch = self._call("scheduledFeePolicy", as_bytes32(model_id, "model_id"))
        if int(from_epoch) == 0:
            return None
        return FeePolicy(*(int(v) for v in shares)), int(from_epoch)

    def price_per_1k(self, model_id: Bytes32) -> int:
        """Base units per 1,000 tokens the model's calls cost; 0 until set."""
        return int(self._call("pricePer1k", as_bytes32(model_id, "model_id")))


class StakingClient(_Client):
    """Staking: stake under a role, unstake through a cooldown, slashing by the SLASHER role."""

    artifact_name = "Staking"

    def __init__(self, chain: Chain, address: str, token: TokenClient):
        super().__init__(chain, address)
        self.token = token

    def stake(self, sender: LocalAccount, role: StakeRole | int, amount: int) -> TxResult:
        """Approve (if needed) and stake `amount` of the sender's tokens under `role`."""
        self.token.ensure_allowance(sender, self.address, int(amount))
        return self._send(sender, "stake", int(StakeRole(role)), int(amount))

    def stake_with_permit(self, sender: LocalAccount, role: StakeRole | int, amount: int,
                          deadline: int) -> TxResult:
        """Stake in one transaction, authorising the transfer with a locally signed permit."""
        permit = self.token.sign_permit(sender, self.address, int(amount), int(deadline))
        return self._send(sender, "stakeWithPermit", int(StakeRole(role)), int(amount),
                          permit.deadline, permit.v, permit.r, permit.s)

    def request_unstake(self, sender: LocalAccount, role: StakeRole | int,
                        amount: int) -> TxResult:
        return self._send(sender, "requestUnstake", int(StakeRole(role)), int(amount))

    def withdraw(self, sender: LocalAccount, role: StakeRole | int) -> TxResult:
        return self._send(sender, "withdraw", int(StakeRole(role)))

    def record_outcome(self, sender: LocalAccount, round_id: int, evidence_hash: Bytes32) -> TxResult:
        """Record a validation round's evidence hash, once; slashes for the round need it."""
        return self._send(sender, "recordOutcome", int(round_id),
                          as_bytes32(evidence_hash, "evidence_hash"))

    def slash(self, sender: LocalAccount, round_id: int, account: str, role: StakeRole | int,
              amount: int) -> TxResult:
        """Slash `account` for round `round_id`'s recorded outcome: held, revocable by the admin, until it matures."""
        return self._send(sender, "slash", int(round_id), to_checksum_address(account),
                          int(StakeRole(role)), int(amount))

    def slashable(self, account: str, role: StakeRole | int) -> int:
        """The most one slash of this bond may take now (the per-round cap, or less if its slash window is spent)."""
        return int(self._call("slashable", to_checksum_address(account), int(StakeRole(role))))

    def revoke_slash(self, sender: LocalAccount, slash_id: int) -> TxResult:
        """Give a held slash back to its staker before it matures (the admin key only)."""
        return self._send(sender, "revokeSlash", int(slash_id))

    def settle_slash(self, sender: LocalAccount, slash_id: int) -> TxResult:
        """Move one matured held slash into the reward pool (anyone)."""
        return self._send(sender, "settleSlash", int(slash_id))

    def held_slash(self, slash_id: int) -> HeldSlash:
        account, role, round_id, amount, matures_at, state = self._call("heldSlash", int(slash_id))
        return HeldSlash(int(slash_id), to_checksum_address(account), StakeRole(role), int(round_id), int(amount),
                         int(matures_at), SlashState(state))

    def settle_matured_slashes(self, sender: LocalAccount, *, batch: int = 200) -> int:
        """Settle every slash matured by the head's time into the reward pool, `batch` ids per transaction; returns
        how much it moved. Sends nothing when no slash has matured, so a close may call it every time."""
        moved = 0
        while True:
            cursor, count = int(self._call("nextSlashToSettle")), int(self._call("slashCount"))
            end = min(count, cursor + int(batch))
            # Slashes mature in id order, so the oldest one still held tells whether any has matured (revoked ones
            # and ones settled singly may lie before it).
            oldest = next((h for h in map(self.held_slash, range(cursor, end)) if h.state == SlashState.HELD), None)
            if oldest is None and end == count:
                return moved
            if oldest is not None and oldest.matures_at > self.chain.head().timestamp:
                return moved
            result = self._send(sender, "settleMaturedSlashes", int(batch))
            moved += sum(int(e["amount"]) for e in result.events(self.contract, "SlashSettled"))

    def release_rewards(self, sender: LocalAccount, epoch: int, amount: int) -> TxResult:
        """Pay `amount` of the reward pool into `epoch` of the distributor (once per epoch)."""
        return self._send(sender, "releaseRewards", int(epoch), int(amount))

    def outcome_node(self, round_id: int) -> str:
        """The node an outcome id belongs to: the only slasher that may record it or slash under it."""
        return to_checksum_address(self._call("outcomeNode", int(round_id)))

    def outcome(self, round_id: int) -> str | None:
        """The evidence hash recorded for a round, or None."""
        raw = self._call("outcomes", int(round_id))
        return None if raw == b"\x00" * 32 else _hex(raw)

    def is_slashed(self, round_id: int, account: str, role: StakeRole | int) -> bool:
        return bool(self._call("isSlashed", int(round_id), to_checksum_address(account),
                               int(StakeRole(role))))

    def reward_pool(self) -> int:
        """Settled slashed stake not yet released into an epoch."""
        return int(self._call("rewardPool"))

    def releasable(self) -> int:
        """What `release_rewards` may pay out now: the pool, within what the day's release limit has left."""
        return int(self._call("releasable"))

    def reward_release_limit(self) -> int:
        """The most of the pool the node may release per day."""
        return int(self._call("rewardReleaseLimit"))

    def set_reward_release_limit(self, sender: LocalAccount, limit: int) -> TxResult:
        """Set the most of the pool the node may release per day (the admin key only)."""
        return self._send(sender, "setRewardReleaseLimit", int(limit))

    def held_slashes_of(self, account: str, *, from_block: int = 0, most: int = 100) -> list[HeldSlash]:
        """The newest `most` slashes of `account`'s bonds that are still held (revocable until they mature, or
        matured and not yet settled), from the Slashed logs since `from_block`."""
        logs = self.contract.events["Slashed"]().get_logs(
            from_block=int(from_block), argument_filters={"account": to_checksum_address(account)})
        held = (self.held_slash(int(log["args"]["slashId"])) for log in reversed(logs))
        return list(islice((h for h in held if h.state == SlashState.HELD), most))

    def slashes_held(self) -> int:
        """Slashed stake still held (revocable, or matured but not yet settled), outside the reward pool."""
        return int(self._call("slashesHeld"))

    def slash_count(self) -> int:
        return int(self._call("slashCount"))

    def slash_window_seconds(self) -> int:
        return int(self._call("slashWindowSeconds"))

    def slash_dispute_seconds(self) -> int:
        return int(self._call("slashDisputeSeconds"))

    def rewards_released(self, epoch: int) -> bool:
        return bool(self._call("rewardsReleased", int(epoch)))

    def slash_cap_bps(self) -> int:
        return int(self._call("slashCapBps"))

    def pause(self, sender: LocalAccount) -> TxResult:
        return self._send(sender, "pause")

    def unpause(self, sender: LocalAccount) -> TxResult:
        return self._send(sender, "unpause")

    def stake_of(self, account: str, role: StakeRole | int) -> int:
        return int(self._call("stakeOf", to_checksum_address(account), int(StakeRole(role))))

    def pending_of(self, account: str, role: StakeRole | int) -> PendingAmount:
        amount, release_at = self._call("pendingOf", to_checksum_address(account),
                                        int(StakeRole(role)))
        return PendingAmount(int(amount), int(release_at))

    def total_staked(self, role: StakeRole | int) -> int:
        return int(self._call("totalStaked", int(StakeRole(role))))

    def cooldown_seconds(self) -> int:
        return int(self._call("cooldownSeconds"))

    def paused(self) -> bool:
        return bool(self._call("paused"))


class DistributorClient(_Client):
    """EpochDistributor: per-epoch payout roots funded up front; one claim per account."""

    artifact_name = "EpochDistributor"

    def __init__(self, chain: Chain, address: str, token: TokenClient):
        super().__init__(chain, address)
        self.token = token

    def fund(self, sender: LocalAccount, epoch: int, amount: int) -> TxResult:
        """Approve (if needed) and add `amount` to `epoch` (the sender needs FUNDER_ROLE)."""
        self.token.ensure_allowance(sender, self.address, int(amount))
        return self._send(sender, "fund", int(epoch), int(amount))

    def post_root(self, sender: LocalAccount, epoch: int, root: Bytes32, total: int) -> TxResult:
        """Post `epoch`'s payout root for exactly its funded `total`; claims open."""
        return self._send(sender, "postRoot", int(epoch), as_bytes32(root, "root"), int(total))

    def claim(self, sender: LocalAccount, epoch: int, account: str, amount: int,
              proof: Sequence[Bytes32]) -> TxResult:
        """Pay `account` its `amount` for `epoch`; `sender` only pays the gas."""
        return self._send(sender, "claim", int(epoch), to_checksum_address(account), int(amount),
                          [as_bytes32(p, "proof") for p in proof])

    def sweep(self, sender: LocalAccount, epoch: int) -> TxResult:
        """After the claim window, send what `epoch` still holds to the treasury."""
        return self._send(sender, "sweep", int(epoch))

    def is_claimed(self, epoch: int, account: str) -> bool:
        return bool(self._call("isClaimed", int(epoch), to_checksum_address(account)))

    def epoch(self, epoch: int) -> EpochFunding | None:
        """The epoch as the distributor holds it, or None if nobody funded it yet."""
        root, total, claimed, funded_at, posted_at, swept = self._call("epochs", int(epoch))
        if int(total) == 0 and not swept:
            return None
        return EpochFunding(int(epoch), None if root == b"\x00" * 32 or not posted_at else _hex(root),
                            int(total), int(claimed), int(funded_at), int(posted_at), bool(swept))

    def treasury(self) -> str:
        return self._call("treasury")

    def claim_window_seconds(self) -> int:
        return int(self._call("claimWindowSeconds"))


class EscrowClient(_Client):
    """PaymentEscrow: consumer deposits, delayed withdrawals, capped epoch settlement."""

    artifact_name = "PaymentEscrow"

    SPENDING_CAP_TYPES: ClassVar[dict[str, list[dict[str, str]]]] = {"SpendingCap": [
        {"name": "consumer", "type": "address"}, {"name": "settler", "type": "address"},
        {"name": "cap", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]}

    def __init__(self, chain: Chain, address: str, token: TokenClient):
        super().__init__(chain, address)
        self.token = token

    def deposit(self, sender: LocalAccount, amount: int) -> TxResult:
        """Approve (if needed) and move `amount` of the sender's tokens into escrow."""
        self.token.ensure_allowance(sender, self.address, int(amount))
        return self._send(sender, "deposit", int(amount))

    def deposit_with_permit(self, sender: LocalAccount, amount: int, deadline: int) -> TxResult:
        permit = self.token.sign_permit(sender, self.address, int(amount), int(deadline))
        return self._send(sender, "depositWithPermit", int(amount), permit.deadline, permit.v,
                          permit.r, permit.s)

    def deposit_for(self, sender: LocalAccount, consumers: Sequence[str],
                    amounts: Sequence[int]) -> TxResult:
        """Approve (if needed) the total and credit each consumer their amount from the sender's tokens."""
        self.token.ensure_allowance(sender, self.address, sum(int(a) for a in amounts))
        return self._send(sender, "depositFor", [to_checksum_address(c) for c in consumers],
                          [int(a) for a in amounts])

    def request_withdrawal(self, sender: LocalAccount, amount: int) -> TxResult:
        return self._send(sender, "requestWithdrawal", int(amount))

    def cancel_withdrawal(self, sender: LocalAccount) -> TxResult:
        return self._send(sender, "cancelWithdrawal")

    def withdraw(self, sender: LocalAccount) -> TxResult:
        return self._send(sender, "withdraw")

    def settle(self, sender: LocalAccount, epoch: int, chunk: int,
               debits: Sequence[Debit]) -> TxResult:
        """Debit each consumer within the cap they gave the sender and add the sum to `epoch` (chunk once)."""
        return self._send(sender, "settle", int(epoch), int(chunk), [d.packed() for d in debits])

    def is_chunk_settled(self, epoch: int, chunk: int) -> bool:
        return bool(self._call("isChunkSettled", int(epoch), int(chunk)))

    def set_spending_cap(self, consumer: LocalAccount, settler: str, cap: int, nonce: int) -> TxResult:
        """The consumer sets (lowers, revokes with 0) the cap of `settler` on chain, voiding older signed ones."""
        return self._send(consumer, "setSpendingCap", to_checksum_address(settler), int(cap), int(nonce))

    def set_spending_caps_with_sig(self, sender: LocalAccount, caps: Sequence[SignedSpendingCap]) -> TxResult:
        """Relay consumers' signed spending caps (any sender may)."""
        return self._send(sender, "setSpendingCapsWithSig", [c.as_tuple() for c in caps])

    def spending_cap(self, consumer: str, settler: str) -> SpendingAllowance:
        cap, nonce, spent, ends_at = self._call("spendingCap", to_checksum_address(consumer),
                                                to_checksum_address(settler))
        return SpendingAllowance(int(cap), int(nonce), int(spent), int(ends_at))

    def cap_in_force(self, consumer: str, settler: str) -> tuple[int, int]:
        """(cap, grace_ends_at): the cap a debit is checked against now (the replaced, higher one while a lowering's
        grace runs) and when that grace ends (0 when none runs)."""
        cap, ends_at = self._call("capInForce", to_checksum_address(consumer), to_checksum_address(settler))
        return int(cap), int(ends_at)

    def cap_period_seconds(self) -> int:
        return int(self._call("capPeriodSeconds"))

    def spending_cap_typed_data(self, consumer: str, settler: str, cap: int, nonce: int,
                                deadline: int) -> dict[str, Any]:
        """The full EIP-712 message a consumer's wallet signs to let `settler` charge them up to `cap` per period."""
        return {
            "types": {"EIP712Domain": [
                {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ], **self.SPENDING_CAP_TYPES},
            "primaryType": "SpendingCap",
            "domain": self.eip712_domain,
            "message": {"consumer": to_checksum_address(consumer),
                        "settler": to_checksum_address(settler), "cap": int(cap),
                        "nonce": int(nonce), "deadline": int(deadline)},
        }

    def sign_spending_cap(self, consumer: LocalAccount, settler: str, cap: int, nonce: int,
                          deadline: int) -> SignedSpendingCap:
        """Sign, locally, the consumer's standing permission for `settler` to debit up to `cap` per period."""
        typed = self.spending_cap_typed_data(consumer.address, settler, cap, nonce, deadline)
        signature = bytes(consumer.sign_typed_data(full_message=typed).signature)
        return SignedSpendingCap(consumer.address, to_checksum_address(settler), int(cap), int(nonce),
                                 int(deadline), signature)

    def spending_cap_digest(self, consumer: str, settler: str, cap: int, nonce: int,
                            deadline: int) -> str:
        return _hex(self._call("spendingCapDigest", to_checksum_address(consumer),
                               to_checksum_address(settler), int(cap), int(nonce),
                               int(deadline)))

    def balance_of(self, consumer: str) -> int:
        return int(self._call("balanceOf", to_checksum_address(consumer)))

    def pending_withdrawal(self, consumer: str) -> PendingAmount:
        amount, available_at = self._call("pendingWithdrawal", to_checksum_address(consumer))
        return PendingAmount(int(amount), int(available_at))

    def withdraw_delay_seconds(self) -> int:
        return int(self._call("withdrawDelaySeconds"))


def _found(read: Any) -> Any:
    """Run a registry read; its Unknown* reverts mean "not found" to a caller."""
    try:
        return read()
    except ChainError as exc:
        if exc.error_name and exc.error_name.startswith("Unknown"):
            exc.status = 404
        raise


class Contracts:
    """The deployed settlement contracts on one chain, as typed clients."""

    def __init__(self, chain: Chain, deployment: Deployment):
        if chain.chain_id != deployment.chain_id:
            raise ChainError(
                f"the deployment belongs to chain id {deployment.chain_id}, but the connected "
                f"chain has id {chain.chain_id}; connect to the right chain or redeploy",
                field="chain_id",
            )
        self.chain = chain
        self.deployment = deployment
        self.token = TokenClient(chain, deployment.address_of("LedgerToken"))
        self.registry = RegistryClient(chain, deployment.address_of("Registry"))
        self.staking = StakingClient(chain, deployment.address_of("Staking"), self.token)
        self.distributor = DistributorClient(chain, deployment.address_of("EpochDistributor"),
                                             self.token)
        self.escrow = EscrowClient(chain, deployment.address_of("PaymentEscrow"), self.token)

    def __repr__(self) -> str:
        return f"Contracts(chain_id={self.chain.chain_id}, token={self.token.address})"

    @cached_property
    def share_factory(self):
        """The RevenueShareFactory (a deployment made before revenue shares existed has none: redeploy)."""
        from ledgerlm.chain.shares import ShareFactoryClient

        return ShareFactoryClient(self.chain, self.deployment.address_of("RevenueShareFactory"))

    def share_token(self, address: str):
        """The RevenueShare token at `address`, with its custom errors decoded."""
        from ledgerlm.chain.shares import ShareTokenClient

        self.chain.abi_book.name_contract(to_checksum_address(address), "RevenueShare")
        return ShareTokenClient(self.chain, address)
