"""Spending caps stand per (consumer, settler) with a nonce instead of one signature per epoch; API keys record
the nonce of the cap they were made under."""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # caps signed per epoch cannot be relayed to the standing-cap escrow: they are dropped, not converted
    op.drop_table("spending_caps")
    op.create_table(
        "spending_caps",
        sa.Column("consumer", sa.String(42), primary_key=True),
        sa.Column("settler", sa.String(42), primary_key=True),
        sa.Column("cap", sa.String(80), nullable=False),
        sa.Column("nonce", sa.BigInteger, nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("tx", sa.String(66), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("nonce", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("nonce")
    op.drop_table("spending_caps")
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
