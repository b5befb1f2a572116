"""Gate reports say whether the contribution predates the gate policy that judged it (no bond or reputation at stake)."""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gate_reports") as batch:
        batch.add_column(sa.Column("predates_policy", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("gate_reports") as batch:
        batch.drop_column("predates_policy")
