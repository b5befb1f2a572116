"""The chain event index: indexed blocks with their hashes, the decoded events in them, recovered re-orgs."""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_blocks",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(66), nullable=False),
        sa.Column("parent_hash", sa.String(66), nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "chain_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("block_number", sa.BigInteger, sa.ForeignKey("chain_blocks.number"), nullable=False),
        sa.Column("log_index", sa.Integer, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("contract", sa.String(64), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.UniqueConstraint("block_number", "log_index", name="uq_chain_events_block_log"),
    )
    op.create_index("ix_chain_events_event", "chain_events", ["event", "block_number"])
    op.create_table(
        "chain_reorgs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("detected_at_block", sa.BigInteger, nullable=False),
        sa.Column("ancestor", sa.BigInteger, nullable=False),
        sa.Column("blocks_undone", sa.Integer, nullable=False),
        sa.Column("events_undone", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chain_reorgs")
    op.drop_index("ix_chain_events_event", table_name="chain_events")
    op.drop_table("chain_events")
    op.drop_table("chain_blocks")
