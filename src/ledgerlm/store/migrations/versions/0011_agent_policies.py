"""Agents: the policy each agent's owner signed, which the node enforces before the agent acts."""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_policies",
        sa.Column("agent", sa.String(42), primary_key=True),
        sa.Column("owner", sa.String(42), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("bind_action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_agent_policies_owner", "agent_policies", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_agent_policies_owner", table_name="agent_policies")
    op.drop_table("agent_policies")
