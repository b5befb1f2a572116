"""The node home directory and its config file: where every room keeps its state."""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ledgerlm.errors import LedgerError

DEFAULT_HOME = Path("~/.ledgerlm")
EMBEDDED = "embedded"


class ConfigError(LedgerError):
    pass


@dataclass
class NodeConfig:
    """Settings read from `<home>/config.toml`; every value has a working default."""

    chain: str = EMBEDDED  # "embedded" or a JSON-RPC URL
    chain_id: int = 1337
    # JSON-RPC chains only (the embedded chain is final at once): a write counts once this many blocks
    # hold it (1: its own block), and the indexer reads only blocks this deep.
    chain_confirmations: int = 1
    chain_fee_bump_seconds: int = 30  # an unmined write is re-priced (+12.5%) after this long
    chain_max_fee_bumps: int = 5  # then it is only re-broadcast: a ceiling on what a fee spike costs
    chain_index_batch_blocks: int = 1000  # blocks per eth_getLogs; hosted endpoints may cap the range
    chain_index_seconds: int = 0  # `serve` brings the event index up to date this often; 0: only `chain index`
    # "": the index reads blocks chain_confirmations deep; "safe" / "finalized": only blocks the node's
    # tag covers (on an OP Stack chain: derived from batches on L1 / final on L1)
    chain_index_finality: str = ""
    max_upload_bytes: int = 50 * 1024 * 1024
    max_upload_files: int = 1000  # files one upload may hold; the next one is refused before it is written
    # Datanets the node registers on chain (and pays the gas of) per hour: in all, and for one owner; a signer
    # needs no ETH to create one, so these bound what fresh keys can make the node spend
    datanets_per_hour: int = 60
    datanets_per_owner_per_hour: int = 10
    # versions whose root the node anchors on chain per hour: in all, and for one owner (the same reason)
    versions_per_hour: int = 120
    versions_per_owner_per_hour: int = 30
    # new agents whose policy the node stores per hour, in all and for one owner: a policy needs only two
    # signatures from keys that cost nothing, so these bound what fresh keys can make the node store
    agents_per_hour: int = 120
    agents_per_owner_per_hour: int = 30
    # consumers' spending caps the node relays to the escrow (and pays the gas of) per hour, in all
    cap_relays_per_hour: int = 600
    # paid compute jobs accepted per hour in all (a tenth of it per requester): each debit's gas is the node's
    compute_jobs_per_hour: int = 120
    # fine-tuned models whose attributor (a float64 copy of the base model, its index) stays loaded at once
    attributors_warm: int = 4
    storage_quota_bytes: int = 1024 * 1024 * 1024  # what one account may store across uploads
    max_signature_ttl_seconds: int = 24 * 3600  # how far ahead a signed action's deadline may lie
    host: str = "127.0.0.1"
    port: int = 8547
    database_url: str = ""  # empty: SQLite file in the home
    blobs: str = ""  # empty: the blobs directory in the home; or s3://bucket/prefix
    # S3 endpoint and region for s3:// blobs (empty: boto3's own, e.g. AWS_ENDPOINT_URL_S3); credentials come
    # only from boto3's chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile), never from this file
    s3_endpoint_url: str = ""
    s3_region: str = ""
    round_commit_seconds: int = 3600  # validator rounds: how long commits are accepted
    round_reveal_seconds: int = 3600  # then how long reveals are accepted
    validators_per_contribution: int = 3
    # torch CPU threads for training, serving and attribution; 0: half the cores (at least 1).
    # More threads than free cores makes every request slower under contention, not faster.
    torch_threads: int = 0
    epoch_seconds: int = 0  # `serve` closes the open epoch this often; 0: only `ledgerlm epoch close`
    settle_chunk_size: int = 200  # consumers debited per settlement transaction
    faucet_max_tokens: int = 10_000 * 10**18  # embedded faucet: most LGR one address ever receives
    faucet_max_eth_wei: int = 10 * 10**18  # and most ETH
    serving_base_model: str = ""  # empty: the base model most published adapters use
    serving_base_price: str = "0"  # base units per 1,000 tokens for calls to the base model itself
    serving_max_batch: int = 32  # rows decoded together
    serving_device_adapters: int = 16  # adapter slots on the device
    serving_host_adapters: int = 64  # adapters kept read in host memory
    serving_default_max_tokens: int = 256  # chat completions without max_tokens
    serving_requests_per_minute: int = 120  # per API key
    serving_max_concurrent: int = 8  # calls running at once per API key
    serving_attribution: bool = True  # attribute every answer of a fine-tuned model
    # where the attribution index's rows come from: 0, a pass over the final adapter after training (about one
    # epoch's forward and backward); N, the last N training epochs' gradients, collected inside training at the
    # projection's cost alone but weaker where training has not settled (README, "Feature source")
    attribution_feature_epochs: int = 0
    # how many last transformer blocks that pass over the final adapter differentiates: 0, every block; K, its
    # backward (and the null answers' at calibration) stops at the last K blocks, so the build costs little more
    # than a forward pass; cheaper, measured but not chosen (benchmarks/results/attribution_build_cost*.md)
    attribution_last_blocks: int = 0
    # score each answer by the weighted mean of its tokens' unit gradients (a backward pass per answer token, and
    # per null answer token at calibration) instead of the gradient of its mean loss: ranks better where one
    # token's loss would dominate, at several times the cost (README, "Per-token answers")
    attribution_per_token: bool = False
    # numbers each gradient feature is projected to: on SmolLM2 the count-sketched gradients' LDS was 0.98 of the
    # exact LoRA gradients' at 8,192, where Gaussian matrices at 2,048 kept 0.86 (benchmarks/results/
    # attribution_projection_width-smollm2.md) for about the same build time; the index's rows (32 KiB each at
    # 8,192) and every search grow with it, so a node with hundreds of thousands of rows may set less
    attribution_dim: int = 8192
    # training jobs one developer may have queued or running at once: the node trains one job at a time for
    # everyone, so one key must not be able to queue ahead of all others
    training_jobs_per_developer: int = 2
    # and all developers together: keys are free, so a queue bounded per key alone is not bounded
    training_jobs_queued: int = 16
    # jobs submitted per hour, per developer and in all: a job cancelled at once leaves the queue, so the queue's
    # bounds alone let a key submit and cancel without end
    training_jobs_per_developer_per_hour: int = 12
    training_jobs_per_hour: int = 120
    serving_engine: str = "builtin"  # builtin | vllm | auto (vLLM where it imports and CUDA is present)
    serving_max_lora_rank: int = 64  # vLLM reserves LoRA memory for adapters up to this rank
    serving_claim_lease_seconds: int = 30  # an idempotency claim whose node stopped renewing it lapses after this
    # comma-separated addresses of gateways in front of this node: for their requests the caller is the address
    # their X-Forwarded-For names, so calls without a key keep per-caller limits and idempotency scopes
    trusted_proxies: str = ""
    extra: dict = field(default_factory=dict)

    def to_toml(self) -> str:
        lines = ["# ledgerlm node configuration"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
        for key, value in sorted(self.extra.items()):
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True)
class Home:
    """Paths inside one node home; nothing here touches the disk until `init`."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def resolve(cls, home: str | Path | None = None) -> Home:
        raw = home or os.environ.get("LEDGERLM_HOME") or DEFAULT_HOME
        return cls(Path(raw).expanduser().resolve())

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def database_path(self) -> Path:
        return self.root / "ledger.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def chain_dir(self) -> Path:
        return self.root / "chain"

    @property
    def nonces_dir(self) -> Path:
        """Lock files through which node processes of this home share the hot key's nonces."""
        return self.root / "nonces"

    @property
    def deployment_path(self) -> Path:
        return self.root / "deployment.json"

    @property
    def node_key_path(self) -> Path:
        """The node's hot key (relays, anchors, settles), an encrypted keystore."""
        return self.root / "node_key.json"

    @property
    def legacy_node_key_path(self) -> Path:
        """Where older homes kept the hot key as plain hex; encrypted on the next start."""
        return self.root / "node_key"

    @property
    def known_nodes_path(self) -> Path:
        """The key and signing domain each node URL reported when first read from (`ledgerlm node known`)."""
        return self.root / "known_nodes.json"

    @property
    def operator_token_path(self) -> Path:
        """The node operator's credential (mode 0600), sent as `Authorization: Bearer <token>`."""
        return self.root / "operator_token"

    @property
    def admin_key_path(self) -> Path:
        """The admin key (deploys, grants roles), an encrypted keystore; never loaded by `serve`."""
        return self.root / "admin_key.json"

    @property
    def faucet_key_path(self) -> Path:
        """Embedded chain only: the treasury account that holds LGR's supply and runs the faucet."""
        return self.root / "faucet_key.json"

    @property
    def epochs(self) -> Path:
        """Published payout files, one directory per settled epoch."""
        return self.root / "epochs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def running_dir(self) -> Path:
        """One record per `ledgerlm serve` process on this home, named by its pid, so local CLI calls go
        through a running node; several nodes on one home each keep their own."""
        return self.root / "running"

    def exists(self) -> bool:
        return self.config_path.exists()

    def require(self) -> None:
        if not self.exists():
            raise ConfigError(
                f"no ledgerlm home at {self.root}: run `ledgerlm init --home {self.root}` first",
                field="home",
            )

    def load_config(self) -> NodeConfig:
        self.require()
        try:
            raw = tomllib.loads(self.config_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.config_path}: {exc}", field="config") from exc
        known = {f.name for f in fields(NodeConfig)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known}
        extra = {k: v for k, v in raw.items() if k not in known}
        if extra:  # a mistyped key would leave its setting at the default without a word
            import difflib

            name = sorted(extra)[0]
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise ConfigError(f"{self.config_path}: unknown setting {name!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""), field=name)
        try:
            config = NodeConfig(**values, extra=extra)
        except TypeError as exc:
            raise ConfigError(f"{self.config_path}: {exc}", field="config") from exc
        if isinstance(config.serving_base_price, int) and not isinstance(config.serving_base_price, bool) \
                and config.serving_base_price >= 0:  # written unquoted, as earlier versions read it too
            config.serving_base_price = str(config.serving_base_price)
        for name in ("chain", "chain_index_finality", "host", "database_url", "blobs", "s3_endpoint_url", "s3_region",
                     "serving_base_model", "serving_base_price", "serving_engine", "trusted_proxies"):
            if not isinstance(getattr(config, name), str):
                raise ConfigError(f"{self.config_path}: {name} must be a string (in quotes)"
                                  + ("; list several addresses in one, comma-separated" if name == "trusted_proxies"
                                     else ""), field=name)
        for f in fields(NodeConfig):  # true is an int to Python: `port = true` would listen on port 1
            if f.type in ("int", int) and isinstance(getattr(config, f.name), bool):
                raise ConfigError(f"{self.config_path}: {f.name} must be an integer, not true or false", field=f.name)
        if not config.host:
            raise ConfigError(f"{self.config_path}: host must name an interface, e.g. 127.0.0.1", field="host")
        if not 0 < config.port < 65536:
            raise ConfigError(f"{self.config_path}: port must be between 1 and 65535", field="port")
        for name in ("chain_id", "max_upload_bytes", "max_upload_files", "datanets_per_hour",
                     "datanets_per_owner_per_hour", "versions_per_hour", "versions_per_owner_per_hour",
                     "agents_per_hour", "agents_per_owner_per_hour", "cap_relays_per_hour", "attributors_warm", "compute_jobs_per_hour",
                     "storage_quota_bytes", "max_signature_ttl_seconds", "port", "round_commit_seconds", "round_reveal_seconds",
                     "validators_per_contribution", "settle_chunk_size", "serving_max_batch",
                     "chain_confirmations", "chain_fee_bump_seconds", "chain_index_batch_blocks",
                     "serving_device_adapters", "serving_host_adapters", "serving_default_max_tokens",
                     "serving_requests_per_minute", "serving_max_concurrent", "serving_claim_lease_seconds",
                     "serving_max_lora_rank", "training_jobs_per_developer", "training_jobs_queued",
                     "training_jobs_per_developer_per_hour", "training_jobs_per_hour",
                     "attribution_dim"):
            if not isinstance(getattr(config, name), int) or getattr(config, name) <= 0:
                raise ConfigError(f"{self.config_path}: {name} must be a positive integer", field=name)
        if not isinstance(config.torch_threads, int) or config.torch_threads < 0:
            raise ConfigError(f"{self.config_path}: torch_threads must be 0 (half the cores) or a "
                              "positive integer", field="torch_threads")
        for name in ("epoch_seconds", "faucet_max_tokens", "faucet_max_eth_wei", "chain_max_fee_bumps",
                     "chain_index_seconds", "attribution_feature_epochs", "attribution_last_blocks"):
            if not isinstance(getattr(config, name), int) or getattr(config, name) < 0:
                raise ConfigError(f"{self.config_path}: {name} must be a non-negative integer", field=name)
        for name in ("serving_attribution", "attribution_per_token"):
            if not isinstance(getattr(config, name), bool):
                raise ConfigError(f"{self.config_path}: {name} must be true or false", field=name)
        if config.blobs:
            from ledgerlm.store import BlobError, S3Location

            try:
                S3Location.parse(config.blobs)
            except BlobError as exc:
                raise ConfigError(f"{self.config_path}: {exc.message}", field="blobs") from exc
        if config.serving_engine not in ("builtin", "vllm", "auto"):
            raise ConfigError(f"{self.config_path}: serving_engine must be builtin, vllm or auto, not "
                              f"{config.serving_engine!r}", field="serving_engine")
        if config.chain_index_finality not in ("", "safe", "finalized"):
            raise ConfigError(f"{self.config_path}: chain_index_finality must be \"\", \"safe\" or \"finalized\"",
                              field="chain_index_finality")
        if not (config.serving_base_price.isascii() and config.serving_base_price.isdigit()):  # '²'.isdigit()
            raise ConfigError(f"{self.config_path}: serving_base_price must be a whole number of base units",
                              field="serving_base_price")
        return config

    def save_config(self, config: NodeConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(config.to_toml())
        os.replace(tmp, self.config_path)


__all__ = ["Home", "NodeConfig", "ConfigError", "EMBEDDED", "asdict"]


def write_private(path: Path, text: str) -> None:
    """Write a secret file whole or not at all (a temporary file, synced, renamed over it), readable by its owner
    only: a crash mid-write leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
