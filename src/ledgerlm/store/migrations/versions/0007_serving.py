"""Serving: model prices, the text behind each receipt (so attribution can resume), consumer API keys."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("price_per_1k", sa.String(80), nullable=True))
    op.add_column("receipts", sa.Column("request", sa.JSON, nullable=True))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("consumer", sa.String(42), nullable=False),
        sa.Column("settler", sa.String(42), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("cap", sa.String(80), nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_api_keys_consumer_epoch", "api_keys", ["consumer", "epoch"])
    op.create_index("ix_receipts_model", "receipts", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_receipts_model", "receipts")
    op.drop_index("ix_api_keys_consumer_epoch", "api_keys")
    op.drop_table("api_keys")
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("request")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("price_per_1k")
