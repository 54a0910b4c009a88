"""Storage's tables: spaces (quota and usage), the object index, reservations and deletions."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from shardz_common.db import new_metadata
from shardz_common.outbox import inbox_table, outbox_table

metadata = new_metadata()


def _now(name: str) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


# One per user. `used + reserved <= quota` is a constraint: no code path can break it.
spaces = Table(
    "spaces",
    metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("plan", String(40), nullable=False),
    Column("quota_bytes", BigInteger, nullable=False),
    Column("used_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("reserved_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("object_count", Integer, nullable=False, server_default=text("0")),
    # active | suspended (read-only) | deleted (a tombstone: the user is gone)
    Column("status", String(20), nullable=False, server_default="active"),
    # when the event that set `status` happened: an older event never overrides it
    Column("status_at", DateTime(timezone=True)),
    # set by a change of usage, cleared when storage.usage.reported is written
    Column("usage_changed_at", DateTime(timezone=True)),
    _now("created_at"),
    _now("updated_at"),
    CheckConstraint("used_bytes >= 0 AND reserved_bytes >= 0", name="usage_positive"),
    CheckConstraint("used_bytes + reserved_bytes <= quota_bytes", name="within_quota"),
    Index(
        "ix_spaces_usage_changed",
        "usage_changed_at",
        postgresql_where=text("usage_changed_at IS NOT NULL"),
    ),
)

# The index of what users stored; `backend_key` is the opaque name in the bucket.
objects = Table(
    "objects",
    metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("key", Text(collation="C"), primary_key=True),
    Column("backend_key", Text, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(80), nullable=False),
    Column("content_type", String(255), nullable=False),
    # a new version on every write: presigned links name the version they were made for
    Column("version", UUID(as_uuid=True), nullable=False),
    _now("created_at"),
    _now("updated_at"),
)

# Quota held by an upload in flight, and the store object it writes (recorded before a byte
# goes out, so the sweeper can remove whatever a crashed upload left).
reservations = Table(
    "reservations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("backend_key", Text, nullable=False, unique=True),
    Column("upload_id", Text),
    Column("bytes", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    _now("created_at"),
)

# Intent to remove a store object (or abort a multipart upload); the sweeper converges them.
deletions = Table(
    "deletions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("backend_key", Text, nullable=False, index=True),
    Column("upload_id", Text),
    Column("not_before", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    _now("created_at"),
    Index("ix_deletions_due", "not_before"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
