"""Revenue shares (one ERC-20 per Datanet or model, with its Merkle allocation) and paid access to private
Datanets (the owner's price per version, and what each developer paid from escrow)."""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "share_assets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("asset", sa.String(64), nullable=False),
        sa.Column("asset_id", sa.String(66), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("token", sa.String(42), nullable=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("supply", sa.String(80), nullable=False),
        sa.Column("owner", sa.String(42), nullable=False),
        sa.Column("owner_bps", sa.Integer, nullable=False),
        sa.Column("allocation_root", sa.String(66), nullable=False),
        sa.Column("allocation", sa.JSON, nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("tx", sa.String(66), nullable=True),
        sa.Column("block", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("kind", "asset", name="uq_share_assets_kind_asset"),
    )
    op.create_table(
        "access_prices",
        sa.Column("datanet_id", sa.Integer, sa.ForeignKey("datanets.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "access_payments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("datanet", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("developer", sa.String(42), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tx", sa.String(66), nullable=True),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_access_payments_epoch", "access_payments", ["epoch", "state"])
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("licence", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("licence")
    op.drop_index("ix_access_payments_epoch", table_name="access_payments")
    op.drop_table("access_payments")
    op.drop_table("access_prices")
    op.drop_table("share_assets")
