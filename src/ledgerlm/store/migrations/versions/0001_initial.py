"""Initial schema: signed actions, Datanets, uploads, contributions, versions."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signed_actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("signer", sa.String(42), nullable=False),
        sa.Column("nonce", sa.String(80), nullable=False),
        sa.Column("deadline", sa.BigInteger, nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("signature", sa.String(140), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("signer", "nonce", name="uq_signed_actions_signer_nonce"),
    )
    op.create_table(
        "datanets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.String(42), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("licence", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("schema", sa.JSON, nullable=True),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("spec_hash", sa.String(66), nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("chain_tx", sa.String(66), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("datanet_id", sa.Integer, sa.ForeignKey("datanets.id"), nullable=False),
        sa.Column("contributor", sa.String(42), nullable=False),
        sa.Column("manifest_hash", sa.String(66), nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("contribution_count", sa.Integer, nullable=False),
        sa.Column("byte_count", sa.BigInteger, nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("receipt", sa.JSON, nullable=False),
        sa.Column("receipt_signature", sa.String(140), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "contributions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("datanet_id", sa.Integer, sa.ForeignKey("datanets.id"), nullable=False),
        sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id"), nullable=False),
        sa.Column("contributor", sa.String(42), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("blob", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    live = sa.text("state IN ('pending', 'accepted')")
    op.create_index(
        "uq_contributions_live_content",
        "contributions",
        ["datanet_id", "content_hash"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_index("ix_contributions_datanet_state", "contributions", ["datanet_id", "state"])
    op.create_table(
        "contribution_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contribution_id", sa.Integer, sa.ForeignKey("contributions.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("actor", sa.String(42), nullable=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_contribution_events_contribution_id", "contribution_events", ["contribution_id"]
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("datanet_id", sa.Integer, sa.ForeignKey("datanets.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("root", sa.String(66), nullable=False),
        sa.Column("contribution_count", sa.Integer, nullable=False),
        sa.Column("contributor_count", sa.Integer, nullable=False),
        sa.Column("manifest_blob", sa.String(64), nullable=False),
        sa.Column("manifest_hash", sa.String(66), nullable=False),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("signed_actions.id"), nullable=False),
        sa.Column("chain_tx", sa.String(66), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("datanet_id", "number", name="uq_versions_datanet_number"),
    )
    op.create_table(
        "version_members",
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("contribution_id", sa.Integer, sa.ForeignKey("contributions.id"), primary_key=True),
    )


def downgrade() -> None:
    for name in (
        "version_members",
        "versions",
        "contribution_events",
        "contributions",
        "uploads",
        "datanets",
        "signed_actions",
    ):
        op.drop_table(name)
