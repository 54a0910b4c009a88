"""job_runs: billing's periodic jobs run once per interval across worker replicas;
ix_invoices_overdue_user: the suspension sweep finds overdue invoices without a scan;
payments.refund_id: a second charge of a paid invoice is refunded through Paystack

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(120), primary_key=True),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index(
        "ix_invoices_overdue_user",
        "invoices",
        ["user_id"],
        postgresql_where=sa.text("status = 'overdue'"),
    )
    op.add_column("payments", sa.Column("refund_id", sa.String(40), nullable=True))
    op.create_index(
        "ix_payments_needs_refund",
        "payments",
        ["reference"],
        postgresql_where=sa.text("status = 'needs_refund'"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_needs_refund", table_name="payments")
    op.drop_column("payments", "refund_id")
    op.drop_index("ix_invoices_overdue_user", table_name="invoices")
    op.drop_table("job_runs")
