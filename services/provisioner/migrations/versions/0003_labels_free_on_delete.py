"""a label is free again as soon as its database is being deleted

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("uq_databases_user_name_live", table_name="databases")
    op.create_index(
        "uq_databases_user_label", "databases", ["user_id", "name"], unique=True,
        postgresql_where=sa.text("status NOT IN ('deleted', 'deleting')"),
    )


def downgrade() -> None:
    op.drop_index("uq_databases_user_label", table_name="databases")
    op.create_index(
        "uq_databases_user_name_live", "databases", ["user_id", "name"], unique=True,
        postgresql_where=sa.text("status <> 'deleted'"),
    )
