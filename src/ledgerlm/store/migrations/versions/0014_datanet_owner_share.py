"""A Datanet's policy names the owner's share of its revenue shares (basis points; 0 before there was one)."""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datanets") as batch:
        batch.add_column(sa.Column("owner_share_bps", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("datanets") as batch:
        batch.drop_column("owner_share_bps")
