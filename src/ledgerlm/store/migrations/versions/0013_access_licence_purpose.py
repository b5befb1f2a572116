"""Paid access licences name their purpose (train or export); payments made before were for training."""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_payments") as batch:
        batch.add_column(sa.Column("purpose", sa.String(16), nullable=False, server_default="train"))


def downgrade() -> None:
    with op.batch_alter_table("access_payments") as batch:
        batch.drop_column("purpose")
