"""Transactional outbox: events are rows written with the change they describe.

A trigger NOTIFYs on insert, so the relay wakes when the writing transaction commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.events.base import Event, envelope
from shardz_common.telemetry import inject_headers

NOTIFY_CHANNEL = "shardz_outbox"


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("type", String(120), nullable=False),
        Column("body", Text, nullable=False),
        Column("traceparent", String(128)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Index("ix_outbox_unsent", "created_at", postgresql_where=text("sent_at IS NULL")),
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(120), primary_key=True),
        Column("event_id", String(200), primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


# DDL for migrations: the trigger that wakes relays when an outbox row commits.
NOTIFY_TRIGGER_SQL = [
    f"""
    CREATE OR REPLACE FUNCTION shardz_outbox_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION shardz_outbox_notify()
    """,
]


def add_event(
    session: AsyncSession,
    outbox: Table,
    event: Event,
    *,
    source: str,
    subject: str | None = None,
) -> uuid.UUID:
    """Stage an event in the caller's transaction; it is published only if that commits."""
    event_id = uuid.uuid4()
    headers = inject_headers()
    body = envelope(
        event,
        event_id=str(event_id),
        source=source,
        subject=subject,
        time=datetime.now(UTC),
        traceparent=headers.get("traceparent"),
    )
    row: dict[str, Any] = {
        "id": event_id,
        "type": event.event_type,
        "body": body,
        "traceparent": headers.get("traceparent"),
    }
    # Each row remembers the savepoint it was staged in (None: the outer transaction), so
    # rolling a savepoint back drops only what was staged inside it.
    pending: list[tuple[Any, dict[str, Any]]] = session.info.setdefault("outbox_rows", [])
    pending.append((session.sync_session.get_nested_transaction(), row))
    _install_flush_hook(session, outbox)
    return event_id


def _within(staged_in: Any, transaction: Any) -> bool:
    """Whether a row staged in savepoint `staged_in` belongs to `transaction` or below it."""
    while staged_in is not None:
        if staged_in is transaction:
            return True
        staged_in = staged_in.parent
    return False


def _install_flush_hook(session: AsyncSession, outbox: Table) -> None:
    """Write staged rows just before the commit, inside the same transaction as the change."""
    if session.info.get("outbox_hooked"):
        return
    session.info["outbox_hooked"] = True
    from sqlalchemy import event as sa_event

    sync = session.sync_session

    @sa_event.listens_for(sync, "before_commit")
    def _write(sess: Any) -> None:
        if sess.in_nested_transaction():
            return  # a savepoint's release: written at the real commit, outside any savepoint
        rows = [row for _, row in sess.info.pop("outbox_rows", [])]
        if rows:
            sess.execute(outbox.insert(), rows)

    # after_rollback would fire for a savepoint too and lose the whole transaction's events
    @sa_event.listens_for(sync, "after_soft_rollback")
    def _drop(sess: Any, previous: Any) -> None:
        if not previous.nested:
            sess.info.pop("outbox_rows", None)
            return
        kept = [
            (tx, row) for tx, row in sess.info.get("outbox_rows", []) if not _within(tx, previous)
        ]
        sess.info["outbox_rows"] = kept
