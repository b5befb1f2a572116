"""Share issues keep the owner's ShareIssue signature and its deadline, which the factory needs to create the token."""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("share_assets") as batch:
        batch.add_column(sa.Column("issue_signature", sa.Text, nullable=True))
        batch.add_column(sa.Column("issue_deadline", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("share_assets") as batch:
        batch.drop_column("issue_deadline")
        batch.drop_column("issue_signature")
