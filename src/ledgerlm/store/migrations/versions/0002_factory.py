"""ModelFactory: training jobs and fine-tuned models with lineage."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("developer", sa.String(42), nullable=False),
        sa.Column("datanet", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("base_model", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("developer", sa.String(42), nullable=False),
        sa.Column("base_model", sa.String(64), nullable=False),
        sa.Column("datanet", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("version_root", sa.String(66), nullable=False),
        sa.Column("card", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("training_jobs.id"), nullable=True),
        sa.Column("fee_policy", sa.JSON, nullable=True),
        sa.Column("chain_tx", sa.String(66), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("models")
    op.drop_table("training_jobs")
