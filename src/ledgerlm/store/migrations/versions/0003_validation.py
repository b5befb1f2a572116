"""Validation: gate reports, validator rounds with commit-reveal votes, reputation."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datanets") as batch:
        batch.add_column(sa.Column("gate_policy", sa.JSON, nullable=True))
    op.create_table(
        "gate_reports",
        sa.Column("contribution_id", sa.Integer, sa.ForeignKey("contributions.id"), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "validation_rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("datanet_id", sa.Integer, sa.ForeignKey("datanets.id"), nullable=False),
        sa.Column("seed", sa.String(66), nullable=False),
        sa.Column("commit_deadline", sa.BigInteger, nullable=False),
        sa.Column("reveal_deadline", sa.BigInteger, nullable=False),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("stakes", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tally", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "round_assignments",
        sa.Column("round_id", sa.Integer, sa.ForeignKey("validation_rounds.id"), primary_key=True),
        sa.Column("contribution_id", sa.Integer, sa.ForeignKey("contributions.id"), primary_key=True),
        sa.Column("validator", sa.String(42), primary_key=True),
    )
    op.create_table(
        "round_votes",
        sa.Column("round_id", sa.Integer, sa.ForeignKey("validation_rounds.id"), primary_key=True),
        sa.Column("validator", sa.String(42), primary_key=True),
        sa.Column("commit", sa.String(66), nullable=False),
        sa.Column("votes", sa.JSON, nullable=True),
        sa.Column("salt", sa.String(66), nullable=True),
        sa.Column("committed_at", sa.BigInteger, nullable=False),
        sa.Column("revealed_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "reputation",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("bps", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for name in ("reputation", "round_votes", "round_assignments", "validation_rounds", "gate_reports"):
        op.drop_table(name)
    with op.batch_alter_table("datanets") as batch:
        batch.drop_column("gate_policy")
