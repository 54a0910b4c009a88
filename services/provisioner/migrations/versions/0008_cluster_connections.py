"""clusters.connection_budget / live_connections: placement weighs connections too

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clusters", sa.Column("connection_budget", sa.Integer(), nullable=True))
    op.add_column("clusters", sa.Column("live_connections", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("clusters", "live_connections")
    op.drop_column("clusters", "connection_budget")
