"""databases.size_state / size_at_limit: databases over their plan's size turn read-only

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("databases", sa.Column("size_state", sa.String(20), nullable=True))
    op.add_column("databases", sa.Column("size_at_limit", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("databases", "size_at_limit")
    op.drop_column("databases", "size_state")
