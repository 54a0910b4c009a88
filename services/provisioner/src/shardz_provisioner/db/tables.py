"""Provisioner's tables: accounts (read model), tenant clusters, databases, usage samples."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shardz_common.db import new_metadata
from shardz_common.jobs import job_runs_table
from shardz_common.outbox import inbox_table, outbox_table

metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata


def _ts(nullable: bool = False) -> Mapped[datetime]:
    if nullable:
        return mapped_column(DateTime(timezone=True))
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Account(Base):
    """What the provisioner knows of a user, from identity's and billing's events."""

    __tablename__ = "accounts"
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="active")
    # when the event that set `status` happened: an older event never overrides it
    status_at: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class Cluster(Base):
    """A Postgres server that holds tenant databases."""

    __tablename__ = "clusters"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    admin_dsn: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # Fernet-encrypted
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="active")
    # connections tenants may use (max_connections less the superuser-reserved slots) and how
    # many they held at the last check (services/sizes.py); None until first checked
    connection_budget: Mapped[int | None] = mapped_column(Integer)
    live_connections: Mapped[int | None] = mapped_column(Integer)
    # the disk its data may fill (declared at registration; None: not watched) and how much
    # its databases took at the last check
    disk_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _ts()


class Database(Base):
    __tablename__ = "databases"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    engine: Mapped[str] = mapped_column(String(20), nullable=False, server_default="postgres")
    plan: Mapped[str] = mapped_column(String(40), nullable=False, server_default="free")
    # provisioning -> ready <-> suspended; ready|suspended -> deleting -> deleted;
    # ready|suspended -> moving -> the status it had (services/moves.py)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    cluster: Mapped[str | None] = mapped_column(ForeignKey("clusters.name"))
    db_name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    role_name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    password: Mapped[bytes | None] = mapped_column(LargeBinary)  # Fernet-encrypted
    # a rotation in flight: the new password, Fernet-encrypted, until the server has it
    pending_password: Mapped[bytes | None] = mapped_column(LargeBinary)
    # over its plan's size: "read_only", or "over_grown" (kept writing past read-only: no
    # logins until it is under the limit again); None when within it (services/sizes.py)
    size_state: Mapped[str | None] = mapped_column(String(20))
    size_at_limit: Mapped[int | None] = mapped_column(BigInteger)  # when it turned read-only
    # the account's state changed and logins on the server must follow (lifecycle.apply_access)
    access_pending: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()
    deleted_at: Mapped[datetime | None] = _ts(nullable=True)
    # when the current plan took effect (None: since creation); billing's reconciliation
    # switches a subscription from this moment when it missed the `db.plan_changed` event
    plan_changed_at: Mapped[datetime | None] = _ts(nullable=True)
    __table_args__ = (
        Index(
            "uq_databases_user_label",
            "user_id",
            "name",
            unique=True,
            postgresql_where=text("status NOT IN ('deleted', 'deleting')"),
        ),
        Index("ix_databases_cluster_status", "cluster", "status"),
        Index("ix_databases_access_pending", "id", postgresql_where=text("access_pending")),
        Index(
            "ix_databases_pending",
            "status",
            "updated_at",
            postgresql_where=text("status IN ('provisioning', 'deleting')"),
        ),
    )


class UsageSample(Base):
    __tablename__ = "usage_samples"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    database_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    connections: Mapped[int] = mapped_column(Integer, nullable=False)
    measured_at: Mapped[datetime] = _ts()
    __table_args__ = (Index("ix_usage_samples_db_at", "database_id", "measured_at"),)


class Move(Base):
    """A database's move to another cluster (services/moves.py): queued -> running ->
    switched (the record points at the target; the source copy waits out its grace period)
    -> done; or running -> failed/rolled_back, the database back as it was on the source."""

    __tablename__ = "moves"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    database_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("databases.id"), nullable=False)
    from_cluster: Mapped[str] = mapped_column(ForeignKey("clusters.name"), nullable=False)
    to_cluster: Mapped[str] = mapped_column(ForeignKey("clusters.name"), nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False)
    prior_status: Mapped[str] = mapped_column(String(20), nullable=False)
    mode: Mapped[str | None] = mapped_column(String(20))  # "dump" or "logical"
    step: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(String(500))
    freeze_started_at: Mapped[datetime | None] = _ts(nullable=True)
    freeze_ended_at: Mapped[datetime | None] = _ts(nullable=True)
    # the mover's pulse: a running move whose pulse stopped belongs to a dead process
    heartbeat_at: Mapped[datetime | None] = _ts(nullable=True)
    drop_after: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()
    __table_args__ = (
        Index("ix_moves_database", "database_id", "created_at"),
        Index(
            "uq_moves_one_active",
            "database_id",
            unique=True,
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
        Index(
            "ix_moves_open",
            "state",
            "created_at",
            postgresql_where=text("state IN ('queued', 'running', 'switched')"),
        ),
    )


class DumpJob(Base):
    """An export (pg_dump of a database) or an import (a dump restored into it), run by the
    worker: receiving (import body arriving) -> queued -> running -> done | failed."""

    __tablename__ = "dump_jobs"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), nullable=False)  # export | import
    database_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("databases.id"), nullable=False
    )
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # a running job belongs to the worker that renews this; past it, another takes over
    lease_until: Mapped[datetime | None] = _ts(nullable=True)
    # the dump in the platform's dumps bucket: the export, or an import's uploaded body
    store_key: Mapped[str | None] = mapped_column(Text)
    # an import from the user's storage: the object's key there
    source_key: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(String(10))  # custom | plain
    applied: Mapped[int | None] = mapped_column(Integer)  # statements an import applied
    refused: Mapped[list[dict[str, str]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    refused_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)  # why it failed, in words for the user
    created_at: Mapped[datetime] = _ts()
    started_at: Mapped[datetime | None] = _ts(nullable=True)
    finished_at: Mapped[datetime | None] = _ts(nullable=True)
    expires_at: Mapped[datetime | None] = _ts(nullable=True)  # an export's removal
    __table_args__ = (
        Index("ix_dump_jobs_database", "database_id", "kind", "created_at"),
        Index(
            "ix_dump_jobs_open",
            "status",
            "created_at",
            postgresql_where=text("status IN ('receiving', 'queued', 'running')"),
        ),
        Index("ix_dump_jobs_stored", "expires_at", postgresql_where=text("store_key IS NOT NULL")),
    )


outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
job_runs = job_runs_table(metadata)
