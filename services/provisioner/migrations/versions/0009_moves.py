"""moves: a database's move between tenant clusters, recorded before anything runs

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "moves",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("database_id", UUID(as_uuid=True), sa.ForeignKey("databases.id"), nullable=False),
        sa.Column("from_cluster", sa.String(63), sa.ForeignKey("clusters.name"), nullable=False),
        sa.Column("to_cluster", sa.String(63), sa.ForeignKey("clusters.name"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("prior_status", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(20), nullable=True),
        sa.Column("step", sa.String(40), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("freeze_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("freeze_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drop_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.create_index("ix_moves_database", "moves", ["database_id", "created_at"])
    op.create_index(
        "uq_moves_one_active",
        "moves",
        ["database_id"],
        unique=True,
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )
    op.create_index(
        "ix_moves_open",
        "moves",
        ["state", "created_at"],
        postgresql_where=sa.text("state IN ('queued', 'running', 'switched')"),
    )


def downgrade() -> None:
    op.drop_table("moves")
