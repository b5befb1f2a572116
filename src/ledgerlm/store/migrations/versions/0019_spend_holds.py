"""What calls in flight hold of a consumer's budget, in the database, so several nodes admit calls against one total."""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_holds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("consumer", sa.String(42), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_spend_holds_consumer", "spend_holds", ["consumer"])


def downgrade() -> None:
    op.drop_index("ix_spend_holds_consumer", table_name="spend_holds")
    op.drop_table("spend_holds")
