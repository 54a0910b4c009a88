"""The terminal's own tables: live sessions (the cross-process cap) and statement history."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from shardz_common.db import new_metadata
from shardz_common.outbox import inbox_table, outbox_table

metadata = new_metadata()

# One row per open WebSocket session, in whichever API process holds it. Its process
# refreshes `heartbeat_at`; a row left by a killed process stops counting after the lease.
sessions = Table(
    "sessions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("database_id", UUID(as_uuid=True), nullable=False),
    Column("key_id", UUID(as_uuid=True)),
    Column("process", String(120), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_sessions_user_id", "user_id"),
)

# Every statement run in a terminal (first KiB of its text), kept for the retention period.
statements = Table(
    "statements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("database_id", UUID(as_uuid=True), nullable=False),
    Column("sql", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("elapsed_ms", Float, nullable=False),
    Column("row_count", BigInteger),
    Column("sqlstate", String(5)),
    Index("ix_statements_user_started", "user_id", "started_at", "id"),
    Index("ix_statements_started", "started_at"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
