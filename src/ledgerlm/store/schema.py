"""The relational schema every room reads and writes (SQLAlchemy Core tables)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

# Every state-changing action an actor signed, kept with its signature; (signer, nonce) is unique,
# which is what rejects a replayed message even across restarts.
signed_actions = Table(
    "signed_actions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("action", String(64), nullable=False),
    Column("signer", String(42), nullable=False),
    Column("nonce", String(80), nullable=False),
    Column("deadline", BigInteger, nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("message", JSON, nullable=False),
    Column("signature", String(140), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("signer", "nonce", name="uq_signed_actions_signer_nonce"),
)

datanets = Table(
    "datanets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("owner", String(42), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("licence", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # "records" | "documents"
    Column("schema", JSON, nullable=True),
    Column("visibility", String(16), nullable=False),
    Column("spec_hash", String(66), nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("chain_tx", String(66), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("gate_policy", JSON, nullable=True),  # the owner's gate settings; NULL: defaults
    # the owner's share (basis points) of the supply when the Datanet's revenue shares are issued
    Column("owner_share_bps", Integer, nullable=False, server_default="0"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("datanet_id", Integer, ForeignKey("datanets.id"), nullable=False),
    Column("contributor", String(42), nullable=False),
    Column("manifest_hash", String(66), nullable=False),
    Column("files", JSON, nullable=False),
    Column("contribution_count", Integer, nullable=False),
    Column("byte_count", BigInteger, nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("receipt", JSON, nullable=False),
    Column("receipt_signature", String(140), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

Index("ix_uploads_contributor", uploads.c.contributor)

# Who besides the owner may read, export, train on and contribute to a private Datanet.
datanet_members = Table(
    "datanet_members",
    metadata,
    Column("datanet_id", Integer, ForeignKey("datanets.id"), primary_key=True),
    Column("member", String(42), primary_key=True),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

contributions = Table(
    "contributions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("datanet_id", Integer, ForeignKey("datanets.id"), nullable=False),
    Column("upload_id", Integer, ForeignKey("uploads.id"), nullable=False),
    Column("contributor", String(42), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("source", String(300), nullable=False),  # "file.jsonl line 3": where it came from
    Column("blob", String(64), nullable=False),  # sha256 of the uploaded file holding it
    Column("payload", Text, nullable=True),  # canonical record JSON or document text; NULL once withdrawn
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
# Live content is unique per Datanet; withdrawn or rejected content may come back in a new upload.
Index(
    "uq_contributions_live_content",
    contributions.c.datanet_id,
    contributions.c.content_hash,
    unique=True,
    sqlite_where=text("state IN ('pending', 'accepted')"),
    postgresql_where=text("state IN ('pending', 'accepted')"),
)
Index("ix_contributions_datanet_state", contributions.c.datanet_id, contributions.c.state)

# Every state change of a contribution, with who caused it: the explanation behind its state.
contribution_events = Table(
    "contribution_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("contribution_id", Integer, ForeignKey("contributions.id"), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("actor", String(42), nullable=True),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=True),
    Column("details", JSON, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("datanet_id", Integer, ForeignKey("datanets.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("root", String(66), nullable=False),
    Column("contribution_count", Integer, nullable=False),
    Column("contributor_count", Integer, nullable=False),
    Column("manifest_blob", String(64), nullable=False),
    Column("manifest_hash", String(66), nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("chain_tx", String(66), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("datanet_id", "number", name="uq_versions_datanet_number"),
)

version_members = Table(
    "version_members",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("contribution_id", Integer, ForeignKey("contributions.id"), primary_key=True),
)

# Fine-tuning jobs a model developer asked the node to run (one at a time on one machine).
training_jobs = Table(
    "training_jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", String(64), nullable=False),
    Column("developer", String(42), nullable=False),
    Column("datanet", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("base_model", String(64), nullable=False),
    Column("config", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | stopped | failed | done
    Column("progress", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("licence", JSON, nullable=True),  # the access paid for a priced private Datanet version
    # the node process training a running job, renewed while it lives; cancel is a flag any node can set
    Column("owner", String(32), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
)

# Fine-tuned models with their lineage; the adapter files live in <home>/models/trained/<id>.
models = Table(
    "models",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("developer", String(42), nullable=False),
    Column("base_model", String(64), nullable=False),
    Column("datanet", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("version_root", String(66), nullable=False),
    Column("card", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("path", Text, nullable=False),
    Column("job_id", Integer, ForeignKey("training_jobs.id"), nullable=True),
    Column("fee_policy", JSON, nullable=True),
    Column("chain_tx", String(66), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("price_per_1k", String(80), nullable=True),  # base units per 1,000 tokens, set at publish
)

# What the automatic gates said about each contribution (and its measured value).
gate_reports = Table(
    "gate_reports",
    metadata,
    Column("contribution_id", Integer, ForeignKey("contributions.id"), primary_key=True),
    Column("decision", String(16), nullable=False),  # pass | flag | reject
    Column("findings", JSON, nullable=False),
    Column("value", JSON, nullable=True),  # data valuation score, when computed
    Column("created_at", BigInteger, nullable=False),
    # uploaded before the owner set the gate policy that judged it: a rejection costs no bond or reputation
    Column("predates_policy", Boolean, nullable=False, server_default=false()),
)

# A staked validator round over one Datanet's pending contributions: commit, reveal, tally.
validation_rounds = Table(
    "validation_rounds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("datanet_id", Integer, ForeignKey("datanets.id"), nullable=False),
    Column("seed", String(66), nullable=False),
    Column("commit_deadline", BigInteger, nullable=False),
    Column("reveal_deadline", BigInteger, nullable=False),
    Column("rules", JSON, nullable=False),
    Column("stakes", JSON, nullable=False),  # validator -> stake (decimal string), at opening
    Column("state", String(16), nullable=False),  # open | tallied
    Column("tally", JSON, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("rewarded_epoch", Integer, nullable=True),  # the epoch close that paid its validators
)

round_assignments = Table(
    "round_assignments",
    metadata,
    Column("round_id", Integer, ForeignKey("validation_rounds.id"), primary_key=True),
    Column("contribution_id", Integer, ForeignKey("contributions.id"), primary_key=True),
    Column("validator", String(42), primary_key=True),
)

round_votes = Table(
    "round_votes",
    metadata,
    Column("round_id", Integer, ForeignKey("validation_rounds.id"), primary_key=True),
    Column("validator", String(42), primary_key=True),
    Column("commit", String(66), nullable=False),
    Column("votes", JSON, nullable=True),  # filled at reveal
    Column("salt", String(66), nullable=True),
    Column("committed_at", BigInteger, nullable=False),
    Column("revealed_at", BigInteger, nullable=True),
)

# Exponential moving averages of outcomes, in basis points, per address and role.
reputation = Table(
    "reputation",
    metadata,
    Column("address", String(42), primary_key=True),
    Column("role", String(16), primary_key=True),  # contributor | validator
    Column("bps", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Every reputation change, so validators and contributors can see theirs over time.
reputation_history = Table(
    "reputation_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(42), nullable=False),
    Column("role", String(16), nullable=False),
    Column("round_id", Integer, nullable=True),  # NULL for a gate rejection, which no round decided
    Column("bps", Integer, nullable=False),  # the reputation after this change
    Column("at", BigInteger, nullable=False),
)
Index("ix_reputation_history_address_role", reputation_history.c.address, reputation_history.c.role)

# One row per paid (or free) completion: what was served, what it cost, and who is owed what.
# Written by serving before the response completes; read by the economy at epoch close.
# Amounts are decimal strings of integer base units (they overflow 64-bit integers).
receipts = Table(
    "receipts",
    metadata,
    Column("id", String(64), primary_key=True),  # the request id returned to the client
    Column("epoch", Integer, nullable=False),  # the settlement epoch the fee belongs to
    Column("consumer", String(42), nullable=True),  # the paying account; NULL for a free call
    Column("model_id", String(64), nullable=False),
    Column("adapter_sha256", String(64), nullable=True),  # NULL for a base model
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("price_per_1k", String(80), nullable=False),
    Column("fee", String(80), nullable=False),
    Column("fee_policy", JSON, nullable=False),  # the bps split in force: node, developer, contributors, validators
    # [{"role": node|developer|contributor|data_pool|validators, "account": address|null,
    #   "datanet": name|null, "amount": "123"}]; amounts sum exactly to `fee`.
    Column("payouts", JSON, nullable=False),
    Column("datanet_roots", JSON, nullable=False),  # [{"datanet", "version", "root"}] the model was trained on
    Column("attribution", JSON, nullable=True),  # the attribution result the contributor part was split by
    Column("state", String(16), nullable=False),  # attributing | final
    Column("body", JSON, nullable=False),  # the canonical receipt the node signed
    Column("signature", String(140), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("finalized_at", BigInteger, nullable=True),
    Column("settled_epoch", Integer, nullable=True),  # the epoch close that paid it; NULL: not yet
    # {"prompt" | "messages", "completion", "params"}: what attribution reads, also after a restart
    Column("request", JSON, nullable=True),
)
Index("ix_receipts_epoch_state", receipts.c.epoch, receipts.c.state)
Index("ix_receipts_consumer", receipts.c.consumer)
Index("ix_receipts_model", receipts.c.model_id)
Index("ix_receipts_created", receipts.c.created_at, receipts.c.id)  # the listing's order, and its pages

# Every account a receipt names, its consumer and each account it pays, written with the receipt (and again when
# attribution adds contributors): listing an account's receipts reads its own rows here, newest first, instead
# of every receipt's payouts.
receipt_accounts = Table(
    "receipt_accounts",
    metadata,
    Column("account", String(42), primary_key=True),
    Column("receipt_id", String(64), ForeignKey("receipts.id"), primary_key=True),
    Column("created_at", BigInteger, nullable=False),  # the receipt's, so a page is read in index order
)
Index("ix_receipt_accounts_listing", receipt_accounts.c.account, receipt_accounts.c.created_at,
      receipt_accounts.c.receipt_id)

# One row per idempotency key a serving call carried: which serving process holds it (renewing its
# lease while the call runs) and, once written, the one receipt it produced. Nodes sharing this
# database therefore write at most one receipt per key, however often a gateway or client retries.
serving_claims = Table(
    "serving_claims",
    metadata,
    Column("key_sha256", String(64), primary_key=True),  # sha256 of (consumer, Idempotency-Key)
    Column("request_sha256", String(64), nullable=False),  # the call it was first used for
    Column("instance", String(64), nullable=False),  # the serving process holding the claim
    Column("receipt_id", String(64), nullable=True, unique=True),  # NULL while the call runs
    Column("lease_until", BigInteger, nullable=False),  # after this, a claim without receipt may be taken over
    Column("created_at", BigInteger, nullable=False),
)

# Consumer API keys: bearer tokens (`sk-lgr-...`, stored as sha256) bound to an account and to the
# standing escrow spending cap it signed with the key (settler, cap, nonce, deadline, signature; `epoch`
# is the epoch open when the key was made); the node relays the cap to PaymentEscrow.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),  # the key's first characters, to tell keys apart
    Column("consumer", String(42), nullable=False),
    Column("settler", String(42), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("cap", String(80), nullable=False),
    Column("deadline", BigInteger, nullable=False),
    Column("signature", String(140), nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("nonce", BigInteger, nullable=False, server_default="0"),
)
Index("ix_api_keys_consumer_epoch", api_keys.c.consumer, api_keys.c.epoch)

# Settlement epochs. Exactly one is open at a time: receipts written now belong to it. Closing
# freezes its receipts, builds the payout tree and settles it on chain, step by step (`state`
# records how far a close got, so a rerun after a crash resumes instead of paying twice).
epochs = Table(
    "epochs",
    metadata,
    Column("number", Integer, primary_key=True),
    Column("state", String(16), nullable=False),  # open | planned | settled | posted | published
    Column("opened_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger, nullable=True),
    Column("details", JSON, nullable=True),
    Column("root", String(66), nullable=True),  # the payout tree's root, once planned
    Column("total", String(80), nullable=True),  # what the tree pays out in all
)
Index("ix_receipts_settled_epoch", receipts.c.settled_epoch)

# A developer's change to a published model's fee split, in force from `from_epoch` (the epoch after
# the one it was signed in), so receipts already written in an epoch and the rest of that epoch keep
# the split they were priced under.
fee_policy_changes = Table(
    "fee_policy_changes",
    metadata,
    Column("model_id", String(64), ForeignKey("models.id"), primary_key=True),
    Column("from_epoch", Integer, primary_key=True),
    Column("policy", JSON, nullable=False),  # node_bps, developer_bps, contributors_bps, validators_bps
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# The latest standing spending cap a consumer signed for a settler (EIP-712 SpendingCap of the
# PaymentEscrow: at most `cap` per cap period, from `nonce` on), as the node relayed it in `tx`.
# The chain holds the cap in force (a consumer may lower or revoke it there); this is the record.
spending_caps = Table(
    "spending_caps",
    metadata,
    Column("consumer", String(42), primary_key=True),
    Column("settler", String(42), primary_key=True),
    Column("cap", String(80), nullable=False),
    Column("nonce", BigInteger, nullable=False),
    Column("deadline", BigInteger, nullable=False),
    Column("signature", String(140), nullable=False),
    Column("tx", String(66), nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# What an epoch close charges each consumer, in which settlement chunk; `unpaid` consumers (no
# valid cap, too little in escrow) are charged nothing and their receipts wait for a later epoch.
epoch_debits = Table(
    "epoch_debits",
    metadata,
    Column("epoch", Integer, primary_key=True),
    Column("consumer", String(42), primary_key=True),
    Column("amount", String(80), nullable=False),
    Column("chunk", Integer, nullable=True),
    Column("state", String(16), nullable=False),  # planned | unpaid
    Column("reason", Text, nullable=True),
)

# What a close could not debit of a receipt (the consumer's cap in force or escrow fell short at settlement): still
# owed, and charged to its payees at a later close the consumer's cap allows.
arrears = Table(
    "arrears",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receipt_id", String(64), nullable=False),
    Column("consumer", String(42), nullable=False, index=True),
    Column("from_epoch", Integer, nullable=False, index=True),  # the epoch whose close cut it
    Column("amount", String(80), nullable=False),  # still owed
    Column("payouts", JSON, nullable=False),  # the receipt's payout lines, each less what was paid of it
    Column("settled_epoch", Integer, nullable=True, index=True),  # the epoch whose close charged it
)

# One settlement transaction of an epoch: its consumers are the epoch_debits rows with its number.
epoch_chunks = Table(
    "epoch_chunks",
    metadata,
    Column("epoch", Integer, primary_key=True),
    Column("chunk", Integer, primary_key=True),
    Column("total", String(80), nullable=False),
    Column("state", String(16), nullable=False),  # planned | settled
    Column("tx", String(66), nullable=True),
)

# An epoch's payout tree: one leaf per account, with its proof and where the amount came from.
epoch_payouts = Table(
    "epoch_payouts",
    metadata,
    Column("epoch", Integer, primary_key=True),
    Column("account", String(42), primary_key=True),
    Column("amount", String(80), nullable=False),
    Column("proof", JSON, nullable=False),
    Column("sources", JSON, nullable=False),
)

# What the embedded chain's development faucet has given each address, against its limits.
faucet_grants = Table(
    "faucet_grants",
    metadata,
    Column("address", String(42), primary_key=True),
    Column("eth_wei", String(80), nullable=False),
    Column("tokens", String(80), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Revenue shares: one RevenueShare ERC-20 per Datanet or model, issued once with a fixed supply and a
# Merkle allocation (account, amount, proof per leaf); `block` is where the token was created.
share_assets = Table(
    "share_assets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # datanet | model
    Column("asset", String(64), nullable=False),  # the Datanet's name or the model's id
    Column("asset_id", String(66), nullable=False),  # its Registry id
    Column("version", Integer, nullable=True),  # the Datanet version the allocation was valued at
    Column("token", String(42), nullable=True),
    Column("name", String(128), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("supply", String(80), nullable=False),
    Column("owner", String(42), nullable=False),  # who signed the issue
    Column("owner_bps", Integer, nullable=False),
    Column("allocation_root", String(66), nullable=False),
    Column("allocation", JSON, nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    # the owner's ShareIssue signature the factory checks, and its deadline, kept until the token is created
    Column("issue_signature", Text, nullable=True),
    Column("issue_deadline", BigInteger, nullable=True),
    Column("tx", String(66), nullable=True),
    Column("block", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("kind", "asset", name="uq_share_assets_kind_asset"),
)

# What a private Datanet's owner charges to train on a version (version 0: every version without its own).
access_prices = Table(
    "access_prices",
    metadata,
    Column("datanet_id", Integer, ForeignKey("datanets.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("price", String(80), nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# A developer's payment for access, debited from escrow into `epoch` of the distributor at once
# (pending until the chain confirms it; failed when it did not land); the close pays it to the Datanet.
access_payments = Table(
    "access_payments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("datanet", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("developer", String(42), nullable=False),
    Column("amount", String(80), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending | paid | failed
    Column("tx", String(66), nullable=True),
    Column("job_id", Integer, nullable=True),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # what the licence allows: "train" or "export"; one paid licence per (developer, Datanet, version, purpose)
    Column("purpose", String(16), nullable=False, server_default="train"),
)
Index("ix_access_payments_epoch", access_payments.c.epoch, access_payments.c.state)

# What the node lets each agent do: the policy its owner signed (SetAgentPolicy), bound once by the
# agent's own BindAgent. The node checks it before the agent's key spends, contributes or votes.
agent_policies = Table(
    "agent_policies",
    metadata,
    Column("agent", String(42), primary_key=True),
    Column("owner", String(42), nullable=False),
    Column("policy", JSON, nullable=False),  # budget (decimal string), per_epoch, allow_*, max_price_per_1k, actions
    Column("paused", Boolean, nullable=False),
    Column("bind_action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),  # the latest policy or pause
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_agent_policies_owner", agent_policies.c.owner)

# The chain as the event indexer last saw it: one row per indexed block (older blocks without events
# are pruned), so a block whose parent hash no longer matches reveals a re-org.
chain_blocks = Table(
    "chain_blocks",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(66), nullable=False),
    Column("parent_hash", String(66), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("event_count", Integer, nullable=False),
)

# Every log the settlement contracts emitted in an indexed block, decoded; integers are decimal
# strings (uint256 exceeds JSON numbers), bytes are 0x-hex. Removed with their block on a re-org.
chain_events = Table(
    "chain_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("block_number", BigInteger, ForeignKey("chain_blocks.number"), nullable=False),
    Column("log_index", Integer, nullable=False),
    Column("tx_hash", String(66), nullable=False),
    Column("contract", String(64), nullable=False),
    Column("address", String(42), nullable=False),
    Column("event", String(64), nullable=False),
    Column("args", JSON, nullable=False),
    UniqueConstraint("block_number", "log_index", name="uq_chain_events_block_log"),
)
Index("ix_chain_events_event", chain_events.c.event, chain_events.c.block_number)

# Each re-org the indexer recovered from: where the chains forked and how much it undid.
chain_reorgs = Table(
    "chain_reorgs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("detected_at_block", BigInteger, nullable=False),  # the indexed head when it was noticed
    Column("ancestor", BigInteger, nullable=False),  # the last block both chains share
    Column("blocks_undone", Integer, nullable=False),
    Column("events_undone", Integer, nullable=False),
    Column("at", BigInteger, nullable=False),
)

# What each account spent from its escrow on calls (receipt fees) and paid access (pending or paid), kept up
# to date in the transaction that records the spend, so a budget check reads one row: per settlement epoch,
# and under epoch 0 the account's total ever. Amounts are decimal strings, as everywhere money is stored.
account_spending = Table(
    "account_spending",
    metadata,
    Column("account", String(42), primary_key=True),
    Column("epoch", Integer, primary_key=True),  # 0: every epoch together
    Column("amount", String(80), nullable=False),
)

# Compute providers: a provider's signed offer of hardware for training or serving jobs at a price per job.
compute_offers = Table(
    "compute_offers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("provider", String(42), nullable=False),
    Column("kind", String(16), nullable=False),  # train | serve
    Column("hardware", String(200), nullable=False),
    Column("price", String(80), nullable=False),  # base units per job
    Column("base_model", String(200), nullable=False),
    Column("state", String(16), nullable=False),  # open | withdrawn
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_compute_offers_kind", compute_offers.c.kind, compute_offers.c.state)

# A job a requester matched to an offer and paid from escrow into the open epoch; its close pays the
# provider when the job passed its spot-check, and refunds the requester otherwise.
compute_jobs = Table(
    "compute_jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("offer_id", Integer, ForeignKey("compute_offers.id"), nullable=False),
    Column("provider", String(42), nullable=False),
    Column("requester", String(42), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("spec_hash", String(66), nullable=False),
    Column("amount", String(80), nullable=False),
    Column("epoch", Integer, nullable=False),  # the epoch the payment was debited into
    Column("payment_state", String(16), nullable=False),  # pending | paid | failed
    Column("payment_tx", String(66), nullable=True),
    # accepted -> verified | rejected (spot-check), or expired (its epoch closed first), or unpaid
    Column("state", String(16), nullable=False),
    Column("result", JSON, nullable=True),
    Column("result_hash", String(66), nullable=True),
    Column("spot_check", JSON, nullable=True),  # the spot-check's evidence
    Column("slash_tx", String(66), nullable=True),
    Column("slash_amount", String(80), nullable=True),
    Column("action_id", Integer, ForeignKey("signed_actions.id"), nullable=False),
    Column("report_action_id", Integer, ForeignKey("signed_actions.id"), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("reported_at", BigInteger, nullable=True),
)
Index("ix_compute_jobs_epoch", compute_jobs.c.epoch, compute_jobs.c.payment_state)
Index("ix_compute_jobs_provider", compute_jobs.c.provider)
# What each admitted call holds of its consumer's budget until its receipt is written (worst case: prompt +
# max_tokens at the model's price). Kept here rather than in one process's memory, so every node sharing the
# database admits calls against the same total; a hold a crashed node left behind lapses at `expires_at`.
spend_holds = Table(
    "spend_holds",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("consumer", String(42), nullable=False),
    Column("amount", String(80), nullable=False),  # base units, decimal string
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
Index("ix_spend_holds_consumer", spend_holds.c.consumer)
