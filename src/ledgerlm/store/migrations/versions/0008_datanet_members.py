"""Private Datanets: the members an owner added by signed action; uploads indexed by contributor for quotas."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datanet_members",
        sa.Column("datanet_id", sa.Integer, sa.ForeignKey("datanets.id"), primary_key=True),
        sa.Column("member", sa.String(42), primary_key=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_uploads_contributor", "uploads", ["contributor"])


def downgrade() -> None:
    op.drop_index("ix_uploads_contributor", table_name="uploads")
    op.drop_table("datanet_members")
