"""Compute providers: offers of hardware at a price per job, and the jobs matched to them."""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_offers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("hardware", sa.String(200), nullable=False),
        sa.Column("price", sa.String(80), nullable=False),
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_compute_offers_kind", "compute_offers", ["kind", "state"])
    op.create_table(
        "compute_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("offer_id", sa.Integer, sa.ForeignKey("compute_offers.id"), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("requester", sa.String(42), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("spec_hash", sa.String(66), nullable=False),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("payment_state", sa.String(16), nullable=False),
        sa.Column("payment_tx", sa.String(66), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("result_hash", sa.String(66), nullable=True),
        sa.Column("spot_check", sa.JSON, nullable=True),
        sa.Column("slash_tx", sa.String(66), nullable=True),
        sa.Column("slash_amount", sa.String(80), nullable=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("report_action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("reported_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_compute_jobs_epoch", "compute_jobs", ["epoch", "payment_state"])
    op.create_index("ix_compute_jobs_provider", "compute_jobs", ["provider"])


def downgrade() -> None:
    op.drop_table("compute_jobs")
    op.drop_table("compute_offers")
