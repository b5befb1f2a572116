"""Economy: spending caps, epoch debits, chunks and payouts, faucet grants; receipts and rounds learn
which epoch paid them."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("receipts") as batch:
        batch.add_column(sa.Column("settled_epoch", sa.Integer, nullable=True))
        batch.create_index("ix_receipts_settled_epoch", ["settled_epoch"])
    with op.batch_alter_table("validation_rounds") as batch:
        batch.add_column(sa.Column("rewarded_epoch", sa.Integer, nullable=True))
    with op.batch_alter_table("epochs") as batch:
        batch.add_column(sa.Column("root", sa.String(66), nullable=True))
        batch.add_column(sa.Column("total", sa.String(80), nullable=True))
    op.create_table(
        "spending_caps",
        sa.Column("consumer", sa.String(42), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("settler", sa.String(42), nullable=False),
        sa.Column("cap", sa.String(80), nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "epoch_debits",
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("consumer", sa.String(42), primary_key=True),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("chunk", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "epoch_chunks",
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("chunk", sa.Integer, primary_key=True),
        sa.Column("total", sa.String(80), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tx", sa.String(66), nullable=True),
    )
    op.create_table(
        "epoch_payouts",
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("proof", sa.JSON, nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
    )
    op.create_table(
        "faucet_grants",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("eth_wei", sa.String(80), nullable=False),
        sa.Column("tokens", sa.String(80), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("faucet_grants", "epoch_payouts", "epoch_chunks", "epoch_debits", "spending_caps"):
        op.drop_table(table)
    with op.batch_alter_table("epochs") as batch:
        batch.drop_column("total")
        batch.drop_column("root")
    with op.batch_alter_table("validation_rounds") as batch:
        batch.drop_column("rewarded_epoch")
    with op.batch_alter_table("receipts") as batch:
        batch.drop_index("ix_receipts_settled_epoch")
        batch.drop_column("settled_epoch")
