"""Builds one Node from a home directory: the only place that wires the rooms together."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from ledgerlm import __version__
from ledgerlm.chain.contracts import as_bytes32, epoch_id
from ledgerlm.config import EMBEDDED, ConfigError, Home, NodeConfig, write_private
from ledgerlm.datanets import ChainAnchor, Datanet, Datanets, DatanetVersion
from ledgerlm.errors import AuthError, ConflictError, LedgerError
from ledgerlm.heap import keep_freed_memory
from ledgerlm.identity import SigningDomain
from ledgerlm.identity.keys import create_keystore
from ledgerlm.identity.node_keys import (
    ADMIN_PASSPHRASE_ENV,
    NODE_PASSPHRASE_ENV,
    keystore_address,
    node_passphrase,
    unlock_keystore,
)
from ledgerlm.store import BlobStaging, Database, open_blob_store

# The embedded chain's genesis gives the node enough ETH to pay gas for years of relaying, the
# faucet account ETH to hand out, and the admin key enough to deploy.
NODE_GENESIS_WEI = 10**9 * 10**18
FAUCET_GENESIS_WEI = 10**9 * 10**18
ADMIN_GENESIS_WEI = 10**3 * 10**18
# Client-signed transactions relayed at once (`Node.relay_slots`): well under the API's worker
# threads (40), so relays waiting on a slow chain leave the other routes workers to run on; and of
# one sender, a few, so one client's transactions that never mine leave other clients slots.
RELAYS_AT_ONCE = 16
RELAYS_PER_SENDER = 4


def _node_key(home: Home) -> LocalAccount:
    """Unlock the hot key, first encrypting a plain-hex key an older home kept."""
    passphrase = node_passphrase(NODE_PASSPHRASE_ENV, "node")
    legacy = home.legacy_node_key_path
    if legacy.exists() and not home.node_key_path.exists():
        create_keystore(home.node_key_path, passphrase, private_key=bytes.fromhex(
            legacy.read_text().strip().removeprefix("0x")))
        legacy.unlink()
    return unlock_keystore(home.node_key_path, passphrase, "node")


# Operator tokens never look like the `sk-lgr-` API keys consumers get, so logs and errors can
# tell the two apart.
OPERATOR_TOKEN_PREFIX = "lgr-operator-"


def new_operator_token() -> str:
    return OPERATOR_TOKEN_PREFIX + secrets.token_hex(32)


def read_operator_token(home: Home) -> str:
    """The operator credential `ledgerlm init` wrote; a home created before it gets one now."""
    if not home.operator_token_path.exists():
        write_private(home.operator_token_path, new_operator_token() + "\n")
    return home.operator_token_path.read_text().strip()


def _signing_domain(home: Home, config: NodeConfig) -> SigningDomain:
    registry = None
    if home.deployment_path.exists():
        from ledgerlm.chain import Deployment

        registry = Deployment.load(home.deployment_path).addresses["Registry"]
    return SigningDomain(config.chain_id, registry, config.max_signature_ttl_seconds)


def datanet_chain_id(name: str) -> bytes:
    """A Datanet's id in the Registry: keccak256 of its unique name."""
    return keccak(text=name)


class RegistryAnchor(ChainAnchor):
    """Mirrors Datanets and their versions into the Registry contract, relayed by the node."""

    def __init__(self, node: Node):
        self.node = node

    def register_datanet(self, datanet: Datanet) -> str:
        registry = self.node.contracts.registry
        datanet_id = datanet_chain_id(datanet.name)
        if registry.datanet_exists(datanet_id):  # anchored before a crash lost the tx hash, or by someone else
            record = registry.get_datanet(datanet_id)
            if (record.owner.lower() != datanet.owner.lower()
                    or as_bytes32(record.metadata_hash, "hash") != as_bytes32(datanet.spec_hash, "hash")):
                # another registrar (a second node on these contracts, or a stolen key) took the name first: adopting
                # its record would anchor its owner and spec as this Datanet's
                raise LedgerError(f"Datanet {datanet.name!r} is registered on chain with another owner or spec "
                                  f"({record.owner}, {record.metadata_hash}); this node's is not anchored",
                                  field="name", status=409)
            return self._find("DatanetRegistered", datanet_id)
        # A private Datanet is anchored without its name: the id is keccak(name), so whoever knows the name can
        # check it, but nobody can list private Datanets by reading the chain (the node's own explorer included).
        shown = datanet.name if datanet.visibility == "public" else ""
        return registry.register_datanet(
            self.node.account, datanet_id, datanet.owner, shown, datanet.spec_hash, datanet.licence
        ).tx_hash

    def publish_version(self, datanet: Datanet, version: DatanetVersion) -> str:
        registry = self.node.contracts.registry
        datanet_id = datanet_chain_id(datanet.name)
        if not registry.datanet_exists(datanet_id):
            self.register_datanet(datanet)
        if registry.latest_version(datanet_id) >= version.number:
            on_chain = registry.get_version(datanet_id, version.number)
            if (as_bytes32(on_chain.root, "hash") != as_bytes32(version.root, "hash")
                    or as_bytes32(on_chain.manifest_hash, "hash") != as_bytes32(version.manifest_hash, "hash")):
                raise LedgerError(f"{datanet.name} version {version.number} is on chain with another root "
                                  f"({on_chain.root}); this node's version is not anchored", field="root",
                                  status=409)
            return self._find("VersionPublished", datanet_id, version.number)
        return registry.publish_version(
            self.node.account, datanet_id, version.number, version.root, version.contribution_count,
            version.manifest_hash,
        ).tx_hash

    def _find(self, event: str, datanet_id: bytes, number: int | None = None) -> str:
        match = {"datanetId": datanet_id} | ({} if number is None else {"version": number})
        tx = self.node.chain.event_tx(self.node.contracts.registry.contract, event, self.node.deployment.block, **match)
        if tx is None:
            raise LedgerError(f"{event} for {datanet_id.hex()} is on chain but its log was not found", status=500)
        return tx


def outcome_id(node: str, local_id: int) -> int:
    """The Staking outcome id of this node's round or spot-check `local_id`: the node's address above the id's 64
    bits, as epoch ids are laid out; the contract reads the node back (`Staking.outcomeNode`) and lets no one else
    record or slash under it, so nodes sharing the contracts, each numbering rounds 1, 2, 3, ..., never record,
    slash under or pre-empt each other's."""
    return epoch_id(node, int(local_id))


def _keccak_outcome_id(node: str, local_id: int) -> int:
    """The outcome id nodes used before Staking bound ids to their node (`Node._slash` finishes slashes begun so)."""
    return int.from_bytes(keccak(bytes.fromhex(to_checksum_address(node)[2:]) + int(local_id).to_bytes(32, "big")),
                          "big")


def _register_model(node: Node):
    def register(record, policy: dict, price_per_1k: int) -> str:
        import hashlib

        import orjson

        from ledgerlm.chain import FeePolicy

        registry = node.contracts.registry
        model_id = keccak(text=record.id)
        card = record.card
        metrics_hash = hashlib.sha256(orjson.dumps(record.metrics, option=orjson.OPT_SORT_KEYS)).digest()
        if registry.model_exists(model_id):
            # registered before a crash lost the rest of the publish, or by someone else: adopted only when it is
            # this model (developer and adapter), else a retry would revert forever or publish another's record
            on_chain = registry.get_model(model_id)
            if (on_chain.developer.lower() != record.developer.lower()
                    or as_bytes32(on_chain.adapter_hash, "hash") != as_bytes32(card["adapter_sha256"], "hash")):
                raise LedgerError(f"model {record.id!r} is registered on chain with another developer or adapter "
                                  f"({on_chain.developer}, {on_chain.adapter_hash})", field="model", status=409)
            tx = node.chain.event_tx(registry.contract, "ModelRegistered", node.deployment.block, modelId=model_id)
        else:
            tx = registry.register_model(
                node.account, model_id, record.developer, record.base_model, "0x" + card["base_sha256"],
                "0x" + card["adapter_sha256"], [record.version_root], "0x" + card["config_sha256"], metrics_hash,
            ).tx_hash
        on_chain = registry.fee_policy(model_id)
        if on_chain != FeePolicy(**policy):
            if on_chain.total:  # set once, by a publish a crash cut short: the chain keeps that split
                split = ",".join(map(str, (on_chain.node_bps, on_chain.developer_bps, on_chain.contributors_bps,
                                           on_chain.validators_bps)))
                raise LedgerError(f"model {record.id!r} was registered on chain with the fee split {split} "
                                  "(node, developer, contributors, validators) by an earlier publish that did not "
                                  "finish: publish it with that split, then change it with `factory fee-policy`",
                                  field="fee_policy", status=409)
            registry.set_fee_policy(node.account, model_id, FeePolicy(**policy))
        if registry.price_per_1k(model_id) != price_per_1k:
            registry.set_price(node.account, model_id, price_per_1k)
        return tx

    return register


def _resolve_model_stack() -> None:
    """Resolve the model libraries' lazily loaded names once, before requests come: transformers resolves them on
    first use, and not safely from several threads at once (requests loading a tokenizer together on a fresh node
    got ImportError: cannot import name 'AutoTokenizer')."""
    try:
        import peft  # noqa: F401 - its import resolves the transformers names it uses too
        import transformers
    except ImportError:  # a node without the model stack serves the rest
        return
    for name in ("AutoTokenizer", "AutoModelForCausalLM", "AutoConfig", "PreTrainedTokenizerBase"):
        getattr(transformers, name, None)


def set_torch_threads(configured: int) -> int:
    """Fix this process's torch CPU thread count from the config (0: half the cores); returns it.

    torch otherwise takes every core, and one busy neighbour then makes each request several
    times slower. Before torch is imported the count goes through OMP_NUM_THREADS, which torch
    reads when it loads (the node imports torch only when a model is first used).
    """
    import sys

    threads = configured or max(1, (os.cpu_count() or 2) // 2)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def _attribution_observer(feature_epochs: int, last_blocks: int = 0, per_token: bool = False,
                          dim: int = NodeConfig.attribution_dim):
    """Builds the index after training, its rows from the node's feature source (collect.py); a pass
    over the final adapter differentiates the last `last_blocks` blocks only (0: every block);
    `per_token` scores answers by their tokens' unit gradients; `dim` is the projection's width."""

    def observe(config, base):
        from ledgerlm.attribution import TrainingFeatures, template_head
        from ledgerlm.factory import load_tokenizer

        return TrainingFeatures(config.epochs, last_epochs=min(feature_epochs, config.epochs),
                                last_blocks=last_blocks, head=template_head(load_tokenizer(base)),
                                per_token_query=per_token, dim=dim)

    return observe


def _database(home: Home, config: NodeConfig) -> Database:
    """The config's database_url, or the SQLite file in the home when it is empty."""
    return Database(config.database_url) if config.database_url else Database.at(home.database_path)


@dataclass
class Node:
    home: Home
    config: NodeConfig
    db: Database
    blobs: BlobStaging  # a BlobStore directory or an S3BlobStore bucket
    account: LocalAccount
    datanets: Datanets
    closers: list = field(default_factory=list)
    started: dict = field(default_factory=dict)  # what `start` finished for an earlier run

    @classmethod
    def init(cls, home: Home, *, chain: str = EMBEDDED, chain_id: int | None = None, database_url: str = "",
             blobs: str = "", s3_endpoint_url: str = "") -> Node:
        """Create the home (config, database, blob store, encrypted node key; on the embedded
        chain also the admin and faucet keys and the deployed contracts); running it again on an
        existing home changes nothing. `blobs` ("s3://bucket/prefix") keeps blobs in an S3 bucket instead of the
        home, at `s3_endpoint_url` (empty: boto3's settings, e.g. AWS_ENDPOINT_URL_S3); credentials come from boto3's
        chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never from the config.

        `database_url` empty keeps the SQLite file in the home; a postgresql:// URL puts the schema
        there instead (several nodes may share it), checked and migrated before anything is written.

        The hot key is unlocked with LEDGERLM_NODE_PASSPHRASE, the admin key (created and used
        only here and by `chain deploy`) with LEDGERLM_ADMIN_PASSPHRASE; a terminal is prompted.
        """
        if chain_id is not None and not 0 < chain_id < 2**53 and not home.exists():
            # refused before anything is written: a home with a bad chain id could not be opened or made again
            raise ConfigError(f"chain_id must be a positive integer below 2**53 (wallets' limit), not {chain_id}",
                              field="chain_id")
        if chain != EMBEDDED and not home.exists():
            # Check the node before writing anything: a mistyped URL should fail here, not at the
            # first signed action, and signatures must name the chain's real id.
            from ledgerlm.chain import ChainError, open_rpc

            rpc = open_rpc(chain)
            try:
                if chain_id is not None and chain_id != rpc.chain_id:
                    raise ChainError(f"the chain at {chain} has chain id {rpc.chain_id}, not {chain_id}",
                                     field="chain_id")
                chain_id = rpc.chain_id
            finally:
                rpc.close()
        if database_url and home.exists() and home.load_config().database_url != database_url:
            raise ConfigError(f"{home.root} already has its database (database_url in its config.toml); "
                              "init does not move it", field="database_url")
        if home.exists():  # init again changes nothing: a setting given that differs is refused, not ignored
            config = home.load_config()
            asked = {"chain": (chain, config.chain, chain != EMBEDDED),
                     "chain_id": (chain_id, config.chain_id, chain_id is not None),
                     "blobs": (blobs, config.blobs, bool(blobs)),
                     "s3_endpoint_url": (s3_endpoint_url, config.s3_endpoint_url, bool(s3_endpoint_url))}
            for field, (given, kept, was_given) in asked.items():
                if was_given and given != kept:
                    raise ConfigError(f"{home.root} already exists with another {field} in its config.toml; init "
                                      "does not change it (edit config.toml, or init a new home)", field=field)
        if database_url and not home.exists():
            db = Database(database_url)  # an unreachable or mistyped URL fails before the home is written
            try:
                db.upgrade()
            finally:
                db.close()
        if blobs and not home.exists():  # a missing bucket or bad credentials fail before anything is written
            import tempfile

            with tempfile.TemporaryDirectory() as staging:
                open_blob_store(blobs, Path(staging), endpoint_url=s3_endpoint_url).check_bucket()
        # Every passphrase init will need is asked for before anything is written, so a missing one leaves no
        # half-made home behind.
        embedded = (home.load_config().chain if home.exists() else chain) == EMBEDDED
        new_node_key = not home.node_key_path.exists() and not home.legacy_node_key_path.exists()
        deploy = embedded and not home.deployment_path.exists()
        node_passphrase_ = (node_passphrase(NODE_PASSPHRASE_ENV, "node", new=new_node_key)
                            if new_node_key or (deploy and not home.faucet_key_path.exists()) else None)
        admin_passphrase = (node_passphrase(ADMIN_PASSPHRASE_ENV, "admin", new=not home.admin_key_path.exists())
                            if deploy else None)
        if not home.exists():
            # the home holds the database (private Datanets' records, prompts) and keys: no other local user reads it
            # (also when the folder was made first, by `keys new` or by hand)
            home.root.mkdir(parents=True, exist_ok=True)
            os.chmod(home.root, 0o700)
            home.save_config(NodeConfig(chain=chain, chain_id=1337 if chain_id is None else chain_id,
                                        database_url=database_url, blobs=blobs, s3_endpoint_url=s3_endpoint_url))
        for directory in (home.blobs, home.keys, home.models):
            directory.mkdir(parents=True, exist_ok=True)
        if not home.operator_token_path.exists():
            write_private(home.operator_token_path, new_operator_token() + "\n")
        if new_node_key:
            create_keystore(home.node_key_path, node_passphrase_)
        admin = None
        if deploy:
            if not home.admin_key_path.exists():
                create_keystore(home.admin_key_path, admin_passphrase)
            admin = unlock_keystore(home.admin_key_path, admin_passphrase, "admin")
            if not home.faucet_key_path.exists():
                # Development only: the node process runs the faucet, so the faucet key shares the
                # hot key's passphrase; on any RPC chain there is no faucet key at all.
                create_keystore(home.faucet_key_path, node_passphrase_)
        db = _database(home, home.load_config())
        db.upgrade()
        db.close()
        node = cls.open(home)
        if admin is not None:
            node.deploy_contracts(admin, treasury=keystore_address(home.faucet_key_path))
        return node

    @classmethod
    def open(cls, home: Home) -> Node:
        config = home.load_config()
        set_torch_threads(config.torch_threads)
        keep_freed_memory()
        db = _database(home, config)
        if db.revision() != db.head_revision():
            db.upgrade()
        blobs = open_blob_store(config.blobs, home.blobs, endpoint_url=config.s3_endpoint_url,
                                region=config.s3_region)
        blobs.clear_staging()
        account = _node_key(home)
        datanets = Datanets(
            db, blobs, domain=_signing_domain(home, config), node_account=account,
            max_upload_bytes=config.max_upload_bytes, storage_quota_bytes=config.storage_quota_bytes,
            max_upload_files=config.max_upload_files, datanets_per_hour=config.datanets_per_hour,
            datanets_per_owner_per_hour=config.datanets_per_owner_per_hour,
            versions_per_hour=config.versions_per_hour, versions_per_owner_per_hour=config.versions_per_owner_per_hour,
        )
        blobs.collect_orphans(datanets.referenced_blobs() | _kept_checkpoints(db))
        node = cls(home, config, db, blobs, account, datanets)
        datanets.actor_guard = lambda *action: node.agent_policies.check(*action)  # agents load on first use
        # a withdrawn record leaves the models' evaluation samples that quote it
        datanets.after_withdrawal = lambda _cid, name: node.factory.forget_withdrawn(name)
        datanets.blob_kept = lambda sha: sha in _kept_checkpoints(db)
        if home.deployment_path.exists():
            datanets.anchor = RegistryAnchor(node)
        return node

    @cached_property
    def agent_policies(self):
        """The policy each agent's owner signed; checked before an agent spends, contributes or votes."""
        from ledgerlm.agents import AgentPolicies

        return AgentPolicies(self.db, domain=lambda: self.domain, agents_per_hour=self.config.agents_per_hour,
                             agents_per_owner_per_hour=self.config.agents_per_owner_per_hour)

    @cached_property
    def validation(self):
        """Gates and staked validator rounds; stakes and slashing go through the chain."""
        from ledgerlm.chain import StakeRole
        from ledgerlm.validation.rounds import RoundSettings, ValidationRounds

        settings = RoundSettings(
            validators_per_contribution=self.config.validators_per_contribution,
            commit_seconds=self.config.round_commit_seconds, reveal_seconds=self.config.round_reveal_seconds,
        )
        return ValidationRounds(
            self.db, self.datanets, domain=self.domain,
            validator_stakes=lambda: self.stakes(StakeRole.VALIDATOR),
            validator_bonds=lambda: self.stakes(StakeRole.VALIDATOR, leaving=True),
            contributor_bonds=lambda addresses: self.at_risk(addresses, StakeRole.CONTRIBUTOR_BOND),
            slash=self._slash if self.on_chain else None, seed_source=lambda: self.chain.head().hash,
            settings=settings, actor_guard=self.agent_policies.check,
        )

    def attributor(self, model_id: str):
        """A warm attributor per fine-tuned model (model, tokenizer and index loaded once), with the lock that
        serialises requests on it. Each holds its own copy of the base model in float64, so at most
        `config.attributors_warm` stay loaded, the least recently used leaving first; one model loads once however
        many first requests arrive together."""
        import threading
        from collections import OrderedDict

        from ledgerlm.attribution import load_attributor
        from ledgerlm.factory.basemodels import get_model

        cache = self.__dict__.setdefault("_attributors", OrderedDict())
        loading = self.__dict__.setdefault("_attributors_loading", threading.Lock())
        with loading:
            if model_id not in cache:
                from ledgerlm.attribution.errors import IndexNotFoundError
                from ledgerlm.errors import NotFoundError

                record = self.factory.model(model_id)
                try:
                    attributor = load_attributor(Path(record.path),
                                                 base=get_model(self.home.models, record.base_model))
                except IndexNotFoundError:  # its message names the model's folder, which is the operator's
                    raise NotFoundError(f"model {model_id!r} has no attribution index (its indexing failed; "
                                        "the node's log says why)", field="model") from None
                cache[model_id] = (attributor, threading.Lock())
                while len(cache) > max(1, self.config.attributors_warm):
                    cache.popitem(last=False)
            cache.move_to_end(model_id)
            return cache[model_id]

    def _attribute(self, model_id: str, prompt, answer: str):
        attributor, lock = self.attributor(model_id)
        with lock:
            return attributor.attribute(prompt, answer)

    def _finish_receipts(self) -> int:
        """Attribute every receipt still awaiting it, for an epoch close: with the serving worker where this node
        serves, else with a worker of its own (a close run without serving need not load the engine)."""
        if "serving" in self.__dict__:
            return self.serving.attribution.finish_pending()
        from ledgerlm.serving.receipts import AttributionWorker, ReceiptLog

        return AttributionWorker(ReceiptLog(self.db, self.account, domain=self.domain), self._attribute).finish_pending()

    def stakes(self, role: int, *, leaving: bool = False) -> dict[str, int]:
        """Current stake of every address that ever staked in `role` (from Staked events); with `leaving`, the
        stake cooling down to leave counts too, as a slash reaches it (`at_risk`)."""
        if not self.on_chain:
            return {}
        staking = self.contracts.staking
        stakers = {
            log["args"]["account"]
            for log in staking.contract.events["Staked"]().get_logs(from_block=self.deployment.block)
            if int(log["args"]["role"]) == role
        }
        if leaving:
            return self.at_risk(sorted(stakers), role)
        return {a: staking.stake_of(a, role) for a in sorted(stakers)}

    def at_risk(self, addresses: list[str], role: int) -> dict[str, int]:
        """What a slash may be sized on per address: active stake and stake requested out but still cooling down
        (Staking slashes both, so asking to unstake before a verdict does not dodge it)."""
        if not self.on_chain:
            return {}
        staking = self.contracts.staking
        return {a: staking.stake_of(a, role) + staking.pending_of(a, role).amount for a in addresses}

    def _slash(self, round_id: int, evidence: str, account: str, role: int, amount: int) -> tuple[str, int]:
        """Slash for a validation round or a failed compute spot-check: record its outcome on chain first, then
        take at most what the contract allows now (its per-round cap, less once the bond's slash window is spent:
        the rest is forgone, as above the per-round cap); a (round, account, role) slashed before is not slashed
        again. The stake is held on chain, revocable by the admin key, until the close settles it for validators."""
        from ledgerlm.chain import ChainError

        staking = self.contracts.staking
        # A slash begun on a deployment whose Staking predates node-bound ids finishes under the id it recorded
        # then: the bare round id, or keccak(node, round id). Recording it again under today's id would slash the
        # same stake twice. On today's Staking neither can be recorded, and both read as nothing.
        legacy = (round_id, _keccak_outcome_id(self.account.address, round_id))
        round_id = next((i for i in legacy if (staking.outcome(i) or "").lower() == evidence.lower()),
                        outcome_id(self.account.address, round_id))
        recorded = staking.outcome(round_id)
        if recorded is None:
            staking.record_outcome(self.account, round_id, evidence)
        elif recorded.lower() != evidence.lower():
            # another slasher (a node of another deployment on these contracts, or a stolen key) recorded this id
            # first: slashing under its evidence would publish a verdict this node did not reach
            raise ChainError(f"outcome {round_id} is on chain with other evidence ({recorded}); nothing was slashed",
                             field="slash", status=409)
        if staking.is_slashed(round_id, account, role):
            for log in staking.contract.events["Slashed"]().get_logs(
                    from_block=self.deployment.block, argument_filters={"roundId": round_id}):
                if log["args"]["account"] == account and int(log["args"]["role"]) == role:
                    return "0x" + bytes(log["transactionHash"]).hex(), int(log["args"]["amount"])
        amount = min(amount, staking.slashable(account, role))
        if amount <= 0:
            return "", 0
        try:
            return staking.slash(self.account, round_id, account, role, amount).tx_hash, amount
        except ChainError as exc:
            if exc.error_name not in ("SlashAboveCap", "SlashAboveWindowCap"):
                raise
            # Another slash of the bond landed between the read and this one: nothing was taken; the caller keeps
            # the slash unfinished and `reconcile` retries it within what is left then.
            raise ChainError(f"the slash of {account} for round {round_id} was refused: {exc.reason}; nothing was "
                             "taken, and it is retried at the next reconcile", reason=exc.reason,
                             error_name=exc.error_name, error_args=exc.error_args, field="slash",
                             status=409) from exc

    @cached_property
    def factory(self):
        """Training jobs and fine-tuned models (torch loads only when a job runs)."""
        from ledgerlm.factory.jobs import ModelFactory

        observe = _attribution_observer(self.config.attribution_feature_epochs,
                                        self.config.attribution_last_blocks,
                                        self.config.attribution_per_token,
                                        self.config.attribution_dim)
        factory = ModelFactory(self.db, self.home.models, self.datanets, domain=self.domain,
                               register_model=_register_model(self), observe_training=observe,
                               pay_access=self._pay_access,
                               jobs_per_developer=self.config.training_jobs_per_developer,
                               jobs_queued=self.config.training_jobs_queued,
                               jobs_per_developer_per_hour=self.config.training_jobs_per_developer_per_hour,
                               jobs_per_hour=self.config.training_jobs_per_hour)
        self.closers.append(factory.close)
        return factory

    @cached_property
    def cap_relays(self):
        """How many consumers' spending caps this node still relays (it pays their gas)."""
        from ledgerlm.economy.earnings import CapRelays

        return CapRelays(per_hour=self.config.cap_relays_per_hour)

    @cached_property
    def relay_slots(self):
        """Transactions clients signed that this node waits on at once (`POST /chain/transactions`)."""
        from ledgerlm.chain.relay_slots import RelaySlots

        return RelaySlots(total=RELAYS_AT_ONCE, per_sender=RELAYS_PER_SENDER)

    @cached_property
    def serving(self):
        """The OpenAI-compatible engine with keys, budgets and receipts (the base model loads on first call)."""
        from ledgerlm.factory.basemodels import get_model
        from ledgerlm.serving import (
            ApiKeys,
            AttributionWorker,
            Budget,
            Catalog,
            Engine,
            EngineSettings,
            ReceiptLog,
            Serving,
            ServingSettings,
        )

        c = self.config
        settings = ServingSettings(
            base_model=c.serving_base_model, base_price_per_1k=int(c.serving_base_price),
            max_batch=c.serving_max_batch, device_adapters=c.serving_device_adapters,
            host_adapters=c.serving_host_adapters, default_max_tokens=c.serving_default_max_tokens,
            requests_per_minute=c.serving_requests_per_minute, max_concurrent_per_key=c.serving_max_concurrent,
            attribution=c.serving_attribution, claim_lease_seconds=c.serving_claim_lease_seconds,
        )
        escrow = self.contracts.escrow if self.on_chain else None
        keys = ApiKeys(self.db, domain=self.domain, settler=self.account.address, escrow=escrow, relayer=self.account,
                       relays=self.cap_relays)
        log = ReceiptLog(self.db, self.account, domain=self.domain)

        def load_engine(base_name: str):
            from ledgerlm.serving.vllm_engine import VllmEngine, VllmSettings, serving_engine_kind

            base = get_model(self.home.models, base_name)
            if serving_engine_kind(c.serving_engine) == "vllm":
                return VllmEngine.load(base, VllmSettings(
                    max_batch=settings.max_batch, device_adapters=settings.device_adapters,
                    host_adapters=settings.host_adapters, max_lora_rank=c.serving_max_lora_rank))
            engine_settings = EngineSettings(max_batch=settings.max_batch, device_adapters=settings.device_adapters,
                                             host_adapters=settings.host_adapters)
            return Engine.load(base, settings=engine_settings)

        serving = Serving(
            Catalog(self.factory, self.home.models, configured_base=settings.base_model,
                    base_price_per_1k=settings.base_price_per_1k),
            keys, Budget(self.db, self.account.address, escrow), log,
            AttributionWorker(log, self._attribute), settings, load_engine, spend_guard=self.agent_policies.check_spend,
        )
        self.closers.append(serving.close)
        return serving

    # ------------------------------------------------------------------ chain

    @cached_property
    def chain(self):
        """The chain, opened on first use (the embedded one is locked to this process)."""
        from ledgerlm.chain import open_embedded, open_rpc

        if self.config.chain == EMBEDDED:
            prefund = {self.account.address: NODE_GENESIS_WEI}
            for path, wei in ((self.home.faucet_key_path, FAUCET_GENESIS_WEI),
                              (self.home.admin_key_path, ADMIN_GENESIS_WEI)):
                if path.exists():
                    prefund[keystore_address(path)] = wei
            chain = open_embedded(self.home.chain_dir, chain_id=self.config.chain_id, prefund=prefund)
        else:
            c = self.config
            chain = open_rpc(c.chain, expected_chain_id=c.chain_id, confirmations=c.chain_confirmations,
                             bump_after=c.chain_fee_bump_seconds, max_fee_bumps=c.chain_max_fee_bumps,
                             nonce_dir=self.home.nonces_dir)
        self.closers.append(chain.close)
        return chain

    @cached_property
    def deployment(self):
        from ledgerlm.chain import Deployment

        if not self.home.deployment_path.exists():
            raise LedgerError(
                "no contracts are deployed for this home: run `ledgerlm chain deploy --chain-url URL --key NAME`",
                field="chain", status=409,
            )
        return Deployment.load(self.home.deployment_path)

    @cached_property
    def contracts(self):
        from ledgerlm.chain import Contracts

        return Contracts(self.chain, self.deployment)

    @cached_property
    def indexer(self):
        """The chain event indexer over this deployment's contracts, writing to this node's database."""
        from ledgerlm.chain import ChainIndexer

        return ChainIndexer(self.chain, self.db, self.deployment, confirmations=self.chain.confirmations,
                            finality=self.config.chain_index_finality or None,
                            batch_blocks=self.config.chain_index_batch_blocks)

    @cached_property
    def chain_view(self):
        """Deposits, anchored versions, settlements, roots and claims as the indexed chain holds them."""
        from ledgerlm.chain import ChainView

        return ChainView(self.db)

    @property
    def on_chain(self) -> bool:
        return self.home.deployment_path.exists()

    @cached_property
    def faucet_account(self) -> LocalAccount:
        """Embedded chain only: the treasury account the development faucet pays from."""
        if self.config.chain != EMBEDDED or not self.home.faucet_key_path.exists():
            raise LedgerError("the faucet exists only on the embedded development chain", field="chain",
                              status=403)
        return unlock_keystore(self.home.faucet_key_path, node_passphrase(NODE_PASSPHRASE_ENV, "node"), "faucet")

    @cached_property
    def economy(self):
        """Epoch closes: plan, settle, release slashed stake, post the root, publish the payout file."""
        from ledgerlm.economy import EpochCloser

        return EpochCloser(self.db, self.contracts, self.account, self.home.epochs,
                           chunk_size=self.config.settle_chunk_size,
                           finish_receipts=self._finish_receipts)

    def change_fee_policy(self, model_id: str, signed) -> dict:
        """A developer's signed SetFeePolicy: prices calls from the next epoch and is announced on the registry."""
        from ledgerlm.economy import change_fee_policy

        def announce(shares, from_epoch: int) -> None:
            self._announce_fee_policy(model_id, shares, from_epoch)

        return change_fee_policy(self.db, self.factory.model(model_id), signed, domain=self.domain,
                                 announce=announce if self.on_chain else None)

    def _announce_fee_policy(self, model_id: str, shares, from_epoch: int, *, unless_announced: bool = False) -> bool:
        """Schedule `shares` for `model_id` from `from_epoch` on the registry (`unless_announced`: only if it prices
        that epoch otherwise); returns whether a transaction was sent."""
        from ledgerlm.chain import FeePolicy

        registry, wanted = self.contracts.registry, FeePolicy(**shares.to_dict())
        if unless_announced and registry.fee_policy_at(keccak(text=model_id), from_epoch) == wanted:
            return False
        registry.schedule_fee_policy(self.account, keccak(text=model_id), wanted, from_epoch)
        return True

    def fee_policies(self, records) -> dict[str, dict]:
        """Per fine-tuned model: the fee split pricing calls now, and a change announced for a later epoch."""
        from ledgerlm.economy import FeeShares, fee_policy_views

        return fee_policy_views(self.db, {r.id: FeeShares.from_dict(r.fee_policy) if r.fee_policy else None
                                          for r in records})

    @cached_property
    def shares(self):
        """Revenue shares: issue one ERC-20 per Datanet or model, read holders and earnings per share."""
        from ledgerlm.economy import Shares

        return Shares(self.db, self.contracts, self.account, domain=self.domain)

    def set_owner_share(self, name: str, signed) -> dict:
        """The owner's signed SetOwnerShare, while the Datanet's shares are not issued (their allocation is
        fixed at issue)."""
        from ledgerlm.economy.shares import shares_issued

        if shares_issued(self.db, "datanet", name):
            raise ConflictError(f"Datanet {name!r} already issued its shares; their allocation is fixed",
                                field="datanet")
        return {"datanet": name, "owner_share_bps": self.datanets.set_owner_share(name, signed)}

    @cached_property
    def access(self):
        """Payments for training on priced private Datanets, taken from escrow into the open epoch."""
        from ledgerlm.economy import AccessPayments

        # The closer's lock: no close plans an epoch while a payment is being debited into it.
        return AccessPayments(self.db, self.contracts, self.account, self.domain, lock=self.economy._lock,
                              spend_guard=self.agent_policies.check_payment)

    @cached_property
    def providers(self):
        """Compute offers and jobs: paid through the escrow like access, spot-checked, slashed on chain."""
        from ledgerlm.chain import StakeRole
        from ledgerlm.providers import ComputeMarket

        def stake_of(address: str) -> int:
            return self.contracts.staking.stake_of(address, StakeRole.PROVIDER) if self.on_chain else 0

        def slash(outcome_id: int, evidence: str, account: str, amount: int) -> tuple[str, int]:
            return self._slash(outcome_id, evidence, account, StakeRole.PROVIDER, amount)

        def slashable(address: str) -> int:
            return self.contracts.staking.slashable(address, StakeRole.PROVIDER)

        return ComputeMarket(self.db, self.blobs, self.home.models, self.domain,
                             payments=self.access if self.on_chain else None, stake_of=stake_of,
                             slash=slash if self.on_chain else None,
                             slashable=slashable if self.on_chain else None,
                             slash_cap_bps=self.contracts.staking.slash_cap_bps if self.on_chain else None,
                             pick_secret=keccak(bytes(self.account.key) + b"ledgerlm spot-check picks"),
                             jobs_per_hour=self.config.compute_jobs_per_hour)

    def _pay_access(self, payment, **licence) -> dict:
        if not self.on_chain:
            raise LedgerError("this node has no chain to take payments on", field="chain", status=409)
        return self.access.pay(payment, **licence)

    def export_licence(self, name: str, number: int, reader: str | None, payment=None) -> dict | None:
        """The reader's licence to export a private Datanet version the owner priced (None: the version is
        free to them); with `payment` (a signed PayAccess) one is bought if not held, else 402."""
        if payment is not None:
            from ledgerlm.identity import verify_action

            reader = verify_action(payment, expected="PayAccess", domain=self.domain)
        self.datanets.require_access(name, reader, "export")
        self.datanets.version(name, number)  # an unknown version is a 404, not a price
        price = self.datanets.access_price(name, number, reader)
        if not price:
            return None
        return self._pay_access(payment, payer=reader, datanet=name, version=number, purpose="export", price=price)

    @cached_property
    def faucet(self):
        """The development faucet (refuses on any chain but the embedded one)."""
        from ledgerlm.economy import Faucet

        embedded = self.config.chain == EMBEDDED and self.home.faucet_key_path.exists()
        return Faucet(self.db, embedded=embedded, chain=self.chain if embedded else None,
                      token=self.contracts.token if embedded else None,
                      account=self.faucet_account if embedded else None,
                      max_eth_wei=self.config.faucet_max_eth_wei, max_tokens=self.config.faucet_max_tokens)

    def deploy_contracts(self, admin: LocalAccount, *, treasury: str):
        """Deploy the settlement contracts with the admin key (the node gets only its operating roles,
        LGR's fixed supply goes to `treasury`) and record them in the home."""
        from ledgerlm.chain import deploy_all

        deployment = deploy_all(self.chain, admin, treasury=treasury, node=self.account.address)
        deployment.save(self.home.deployment_path)
        self.__dict__.pop("deployment", None)
        self.__dict__.pop("contracts", None)
        self.__dict__.pop("indexer", None)
        self.datanets.anchor = RegistryAnchor(self)
        # Signatures are bound to the Registry from now on; every room verifies against it.
        domain = _signing_domain(self.home, self.config)
        for name in ("shares", "access", "providers"):
            self.__dict__.pop(name, None)
        for room in (self.datanets, self.__dict__.get("validation"), self.__dict__.get("factory")):
            if room is not None:
                room.domain = domain
        serving = self.__dict__.pop("serving", None)  # rebuilt with the escrow on next use
        if serving is not None:
            serving.close()
        return deployment

    @property
    def domain(self) -> SigningDomain:
        """The EIP-712 domain of this deployment (the rooms hold the same value)."""
        return self.datanets.domain

    def check_action(self, signed, expected: str, fields: dict) -> str:
        """Verify a signed action for compute before any of it runs: its signature, the request fields it must
        cover, and a nonce not used yet (nothing is recorded: `accept_action` does that); returns the signer."""
        from ledgerlm.identity import verify_action
        from ledgerlm.store.actions import refuse_used_nonce

        signer = verify_action(signed, expected=expected, domain=self.domain)
        for name, value in fields.items():
            if signed.message[name] != value:
                raise AuthError(f"the signed {expected} does not cover this request ({name} differs)", field=name)
        with self.db.connect() as conn:
            refuse_used_nonce(conn, signed, signer)
        return signer

    def accept_action(self, signed, expected: str, fields: dict) -> str:
        """Verify and record a signed action whose effect is compute, not stored state; returns the signer."""
        import time

        from ledgerlm.store.actions import record_action

        signer = self.check_action(signed, expected, fields)
        with self.db.begin() as conn:
            record_action(conn, signed, signer, chain_id=self.domain.chain_id, now=int(time.time()))
        return signer

    def is_operator(self, token: str | None) -> bool:
        """True when `token` is this home's operator credential (compared in constant time)."""
        # compared as bytes: a header's text may hold characters past ASCII, which compare_digest
        # refuses in a str (a bearer token "\xe9" is simply not the credential)
        return token is not None and hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                                                         read_operator_token(self.home).encode())

    @classmethod
    def start(cls, home: Home) -> Node:
        """Open the node for the process that serves its home (`ledgerlm serve`) and, once, finish what an
        earlier run left unfinished (`reconcile`, whose result is kept in `started`); a part that fails now
        is retried at the next start rather than keeping the node from serving."""
        node = cls.open(home)
        node.started = node.reconcile(attribution=True)
        _resolve_model_stack()
        return node

    def pending_work(self) -> dict[str, int]:
        """What a crash or an outage left unfinished, counted from the database alone (no chain call)."""
        from sqlalchemy import func, select

        from ledgerlm.economy.access import PAYMENT_ROWS, pending_payments
        from ledgerlm.economy.policy import pending_announcements
        from ledgerlm.store.schema import (
            compute_jobs,
            datanets,
            epochs,
            receipts,
            share_assets,
            validation_rounds,
            versions,
        )

        def count(query) -> int:
            return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar())

        with self.db.connect() as conn:
            tallies = conn.execute(select(validation_rounds.c.tally).where(
                validation_rounds.c.state == "tallied")).scalars()
            return {
                "datanets": count(select(datanets.c.id).where(datanets.c.chain_tx.is_(None))),
                "versions": count(select(versions.c.id).where(versions.c.chain_tx.is_(None))),
                "slashes": sum(1 for t in tallies if t is not None and (
                    "slashed" not in t or any(e.get("tx") is None for e in t["slashed"])))
                + count(select(compute_jobs.c.id).where(  # compute providers that failed a spot-check
                    compute_jobs.c.state == "rejected", compute_jobs.c.slash_tx.is_(None))),
                "shares": count(select(share_assets.c.id).where(share_assets.c.token.is_(None))),
                "epoch_close": count(select(epochs.c.number).where(
                    epochs.c.state.in_(("planned", "settled", "posted")))),
                # an access or compute-job payment whose escrow transaction a crash may have cut off
                "payments": sum(count(pending_payments(rows)) for rows in PAYMENT_ROWS),
                # fee policy changes for a later epoch: each is checked against the registry's announcement
                "fee_policies": len(pending_announcements(conn)),
                "attribution": count(select(receipts.c.id).where(receipts.c.state == "attributing")),
            }

    def index_chain(self, max_blocks: int | None = None) -> dict:
        """Bring the event index up to the confirmed head (undoing re-orgs), then anchor again whatever a
        re-org took off the chain; answers the index status, what it derived and what was anchored again."""
        status = self.indexer.catch_up(max_blocks=max_blocks)
        reanchored = self.reanchor_lost() if status.lag == 0 else {"datanets": 0, "versions": 0}
        return {**status.to_dict(), "derived": self.chain_view.summary(), "reanchored": reanchored}

    def reanchor_lost(self) -> dict:
        """Datanets and versions this node anchored that the indexed chain no longer holds (a re-org deeper than
        the confirmations removed them) are anchored again, in version order.

        What the index lacks is only a suspect: the transaction may be newer than the index's final head. It
        counts as lost when the chain has no receipt for it either."""
        from ledgerlm.chain import ChainError

        def lost(tx_hash: str) -> bool:
            try:
                self.chain.receipt(tx_hash)
            except ChainError:
                return True
            return False

        registered = {d.datanet_id for d in self.chain_view.registered_datanets()}
        anchored = {(v.datanet_id, v.version) for v in self.chain_view.anchored_versions()}
        done = {"datanets": 0, "versions": 0}
        for datanet in self.datanets.all():
            if datanet.chain_tx is None:
                continue  # never anchored: reconcile's work, not a re-org's
            datanet_id = "0x" + datanet_chain_id(datanet.name).hex()
            if datanet_id not in registered and lost(datanet.chain_tx):
                self.datanets.anchor_datanet(datanet)
                done["datanets"] += 1
            for version in sorted(datanet.versions, key=lambda v: v.number):
                if version.chain_tx and (datanet_id, version.number) not in anchored and lost(version.chain_tx):
                    self.datanets.anchor_version(datanet.name, version.number)
                    done["versions"] += 1
        return done

    def reconcile(self, *, attribution: bool = False) -> dict:
        """Finish what a crash or an outage interrupted: anchor Datanets, versions and share tokens, carry out
        recorded slashes, finish an epoch close, (with `attribution`) queue receipts still awaiting their
        attribution, and take withdrawn records' quotes out of model reports. Idempotent; with nothing pending it reads the database only. Returns how many of each it
        finished, and under "errors" the parts that failed (left for the next run)."""
        pending = self.pending_work()
        done = dict.fromkeys(pending, 0)
        errors: list[str] = []

        def run(part: str, work) -> None:
            try:
                finished = work()
                done.update(finished if isinstance(finished, dict) else {part: finished})
            except LedgerError as exc:
                errors.append(f"{part}: {exc.message}")
            except Exception as exc:  # e.g. an RPC node that is down: the rest still runs, this part next time
                errors.append(f"{part}: {type(exc).__name__}: {exc}")

        chain_parts = ("datanets", "versions", "slashes", "shares", "epoch_close", "payments", "fee_policies")
        if self.on_chain and any(pending[p] for p in chain_parts):
            if pending["fee_policies"]:
                run("fee_policies", self._announce_fee_policies)
            if pending["payments"]:
                # nothing of this node's is in flight at start, so a payment whose chunk never landed has failed
                # (its payer may ask again) and one that landed is paid; a payer's retry otherwise waited on a close
                from ledgerlm.economy.access import resolve_pending

                run("payments", lambda: pending["payments"] - len(resolve_pending(
                    self.db, self.contracts.escrow, self.account.address)))
            if pending["slashes"]:
                run("slashes", lambda: self.validation.execute_slashes() + self.providers.execute_slashes())
            if pending["shares"] and "RevenueShareFactory" in self.deployment.addresses:
                run("shares", self.shares.reconcile)
            if pending["datanets"] or pending["versions"]:
                run("datanets", self._anchor_unanchored)
            if pending["epoch_close"]:  # a close resumes the interrupted epoch before it would plan another
                run("epoch_close", lambda: int(self.economy.finish().get("state") == "published"))
        if attribution and pending["attribution"]:
            run("attribution", self.serving.attribution.resume)
        # a node that died between storing a withdrawal and taking its record's quotes out of model reports
        run("withdrawn_samples", self.factory.forget_all_withdrawn)
        if errors:
            done["errors"] = errors
        return done

    def _announce_fee_policies(self) -> int:
        """Announce on the registry each fee policy change for a later epoch that it does not price as the
        database does (a node stopped between committing a change and announcing it); returns how many."""
        from ledgerlm.economy.policy import pending_announcements

        with self.db.connect() as conn:
            pending = pending_announcements(conn)
        return sum(self._announce_fee_policy(model_id, shares, from_epoch, unless_announced=True)
                   for model_id, from_epoch, shares in pending)

    def _anchor_unanchored(self) -> dict[str, int]:
        done = {"datanets": 0, "versions": 0}
        for datanet in self.datanets.all():
            if datanet.chain_tx is None or any(v.chain_tx is None for v in datanet.versions):
                for part, count in self.datanets.anchor_pending(datanet.name).items():
                    done[part] += count
        return done

    def info(self, *, operator: bool = True) -> dict:
        """Version, chain, limits and contracts; for anyone but the operator (`operator=False`) without where the
        home and a local blob store lie on the server's disk, and with a chain URL's path, query and userinfo
        hidden: a hosted endpoint carries its API key there."""
        info = {
            "ledgerlm": __version__,
            "home": str(self.home.root),
            "chain": self.config.chain,
            "chain_id": self.config.chain_id,
            "node_address": self.account.address,
            "database": "postgresql" if self.db.postgres else "sqlite",  # public: where it is stays private
            "schema_revision": self.db.revision(),
            "max_upload_bytes": self.config.max_upload_bytes,
            "max_upload_files": self.config.max_upload_files,
            "storage_quota_bytes": self.config.storage_quota_bytes,
            "blobs": str(self.blobs),
            "signing_domain": self.domain.to_dict(),
            "contracts": None,
        }
        if self.on_chain:
            info["contracts"] = self.deployment.addresses
        if not operator:
            from ledgerlm.chain.endpoints import public_url

            info.pop("home")
            if info["chain"] != EMBEDDED:
                info["chain"] = public_url(info["chain"])
            if "://" not in info["blobs"]:  # a path on the server, where an object store's URL is public
                info["blobs"] = "local"
        return info

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()
        self.db.close()


def _kept_checkpoints(db: Database) -> set[str]:
    """The checkpoints of reported training jobs: the spot-check's evidence, kept in the blob store for good."""
    from sqlalchemy import and_, select

    from ledgerlm.store.schema import compute_jobs

    with db.connect() as conn:
        results = conn.execute(select(compute_jobs.c.result).where(and_(
            compute_jobs.c.kind == "train", compute_jobs.c.result.is_not(None)))).scalars()
        return {sha for result in results for sha in (result or {}).get("checkpoints", [])}
