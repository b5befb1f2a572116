"""The accounts each receipt names (its consumer and everyone it pays), backfilled, and the listing order indexed."""

import json

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    table = op.create_table(
        "receipt_accounts",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("receipt_id", sa.String(64), sa.ForeignKey("receipts.id"), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_receipt_accounts_listing", "receipt_accounts", ["account", "created_at", "receipt_id"])
    op.create_index("ix_receipts_created", "receipts", ["created_at", "id"])
    bind = op.get_bind()
    last = ""
    while True:  # a page of receipts at a time, in id order, so a large table is never held in memory
        page = bind.execute(sa.text("SELECT id, consumer, payouts, created_at FROM receipts WHERE id > :last "
                                    "ORDER BY id LIMIT :n"), {"last": last, "n": BATCH}).all()
        if not page:
            return
        rows = []
        for receipt_id, consumer, payouts, created_at in page:
            payouts = json.loads(payouts) if isinstance(payouts, str) else payouts
            named = {consumer} | {p.get("account") for p in payouts or []}
            rows += [{"account": a, "receipt_id": receipt_id, "created_at": created_at}
                     for a in sorted(named - {None})]
        if rows:
            op.bulk_insert(table, rows)
        last = page[-1][0]


def downgrade() -> None:
    op.drop_index("ix_receipts_created", table_name="receipts")
    op.drop_index("ix_receipt_accounts_listing", table_name="receipt_accounts")
    op.drop_table("receipt_accounts")
