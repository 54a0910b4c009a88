"""databases.access_pending: suspensions are recorded first and applied per cluster after;
databases.pending_password: a rotation records its new credential before the server has it

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "databases",
        sa.Column("access_pending", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("databases", sa.Column("pending_password", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_databases_access_pending",
        "databases",
        ["id"],
        postgresql_where=sa.text("access_pending"),
    )


def downgrade() -> None:
    op.drop_index("ix_databases_access_pending", table_name="databases")
    op.drop_column("databases", "pending_password")
    op.drop_column("databases", "access_pending")
