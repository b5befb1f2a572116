"""Idempotency claims for serving calls: at most one receipt per key across every node sharing the database."""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_claims",
        sa.Column("key_sha256", sa.String(64), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("receipt_id", sa.String(64), nullable=True, unique=True),
        sa.Column("lease_until", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serving_claims")
