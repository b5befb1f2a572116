"""Reputation history: every change of an address's reputation, for charts over time."""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reputation_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("round_id", sa.Integer, nullable=True),
        sa.Column("bps", sa.Integer, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_reputation_history_address_role", "reputation_history", ["address", "role"])


def downgrade() -> None:
    op.drop_index("ix_reputation_history_address_role", table_name="reputation_history")
    op.drop_table("reputation_history")
