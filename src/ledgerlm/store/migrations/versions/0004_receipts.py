"""Serving: one receipt per completion, read by the economy at epoch close."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("consumer", sa.String(42), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("adapter_sha256", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("price_per_1k", sa.String(80), nullable=False),
        sa.Column("fee", sa.String(80), nullable=False),
        sa.Column("fee_policy", sa.JSON, nullable=False),
        sa.Column("payouts", sa.JSON, nullable=False),
        sa.Column("datanet_roots", sa.JSON, nullable=False),
        sa.Column("attribution", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("signature", sa.String(140), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("finalized_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_receipts_epoch_state", "receipts", ["epoch", "state"])
    op.create_index("ix_receipts_consumer", "receipts", ["consumer"])


def downgrade() -> None:
    op.drop_table("receipts")
