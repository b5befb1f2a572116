"""Fee policy changes of published models, each in force from the epoch after the one it was signed in."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fee_policy_changes",
        sa.Column("model_id", sa.String(64), sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("from_epoch", sa.Integer, primary_key=True),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fee_policy_changes")
