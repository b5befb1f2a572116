"""Running totals of what each account spent on calls and paid access, per epoch and ever, backfilled."""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "account_spending",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("epoch", sa.Integer, primary_key=True),
        sa.Column("amount", sa.String(80), nullable=False),
    )
    bind = op.get_bind()
    totals: dict[tuple[str, int], int] = {}
    spends = bind.execute(sa.text("SELECT consumer, epoch, fee FROM receipts WHERE consumer IS NOT NULL")).all()
    spends += bind.execute(sa.text(
        "SELECT developer, epoch, amount FROM access_payments WHERE state IN ('pending', 'paid')")).all()
    for account, epoch, amount in spends:
        for key in ((account, int(epoch)), (account, 0)):  # amounts exceed 64 bits: summed here, not in SQL
            totals[key] = totals.get(key, 0) + int(amount)
    rows = [{"account": a, "epoch": e, "amount": str(v)} for (a, e), v in sorted(totals.items()) if v]
    for start in range(0, len(rows), 1000):
        op.bulk_insert(table, rows[start:start + 1000])


def downgrade() -> None:
    op.drop_table("account_spending")
