"""Arrears: the part of a receipt's fee a close could not debit, still owed and charged at a later close."""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arrears",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.Column("consumer", sa.String(42), nullable=False),
        sa.Column("from_epoch", sa.Integer, nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("payouts", sa.JSON, nullable=False),
        sa.Column("settled_epoch", sa.Integer, nullable=True),
    )
    for column in ("consumer", "from_epoch", "settled_epoch"):
        op.create_index(f"ix_arrears_{column}", "arrears", [column])


def downgrade() -> None:
    for column in ("consumer", "from_epoch", "settled_epoch"):
        op.drop_index(f"ix_arrears_{column}", table_name="arrears")
    op.drop_table("arrears")
