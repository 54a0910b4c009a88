"""dump_jobs: exports (pg_dump) and imports (restores) that the worker runs

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dump_jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column(
            "database_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("databases.id"),
            nullable=False,
        ),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("store_key", sa.Text()),
        sa.Column("source_key", sa.Text()),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.Column("format", sa.String(10)),
        sa.Column("applied", sa.Integer()),
        sa.Column(
            "refused", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("refused_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_dump_jobs_database", "dump_jobs", ["database_id", "kind", "created_at"])
    op.create_index(
        "ix_dump_jobs_open",
        "dump_jobs",
        ["status", "created_at"],
        postgresql_where=sa.text("status IN ('receiving', 'queued', 'running')"),
    )
    op.create_index(
        "ix_dump_jobs_stored",
        "dump_jobs",
        ["expires_at"],
        postgresql_where=sa.text("store_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("dump_jobs")
