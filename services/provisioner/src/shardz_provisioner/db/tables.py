"""Provisioner's tables: its read model of accounts and the tenant databases it manages."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shardz_common.db import new_metadata
from shardz_common.outbox import inbox_table, outbox_table

metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata


class Account(Base):
    """What the provisioner knows of a user, from identity's and billing's events."""

    __tablename__ = "accounts"
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="active")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Database(Base):
    __tablename__ = "databases"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    engine: Mapped[str] = mapped_column(String(20), nullable=False, server_default="postgres")
    plan: Mapped[str] = mapped_column(String(40), nullable=False, server_default="free")
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    cluster: Mapped[str | None] = mapped_column(String(63))
    db_name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    role_name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_databases_user_name"),)


outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
