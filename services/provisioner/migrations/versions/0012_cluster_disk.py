"""clusters.disk_bytes / used_bytes: placement keeps disk headroom

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clusters", sa.Column("disk_bytes", sa.BigInteger(), nullable=True))
    op.add_column("clusters", sa.Column("used_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("clusters", "used_bytes")
    op.drop_column("clusters", "disk_bytes")
