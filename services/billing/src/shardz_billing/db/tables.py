"""Billing's tables. Money is an integer of minor units (kobo) everywhere: BigInteger, never a
float or Numeric that a driver could hand back as one."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
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


def _ts(nullable: bool = False) -> Mapped[Any]:
    if nullable:
        return mapped_column(DateTime(timezone=True))
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Account(Base):
    """What billing knows of a user (from identity's events) and whether it is suspended."""

    __tablename__ = "accounts"
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # active | suspended | deleted
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="active")
    status_at: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts()


class Subscription(Base):
    """One resource on one plan for one stretch of time. A plan change closes one and opens
    the next; periods are monthly from `started_at`."""

    __tablename__ = "subscriptions"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, index=True)
    resource_type: Mapped[str] = mapped_column(String(20), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(64), nullable=False)
    plan: Mapped[str] = mapped_column(String(40), nullable=False)
    # the plan's price when the subscription began: a later price change is a new contract
    price_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="active")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    cancelled_at: Mapped[datetime | None] = _ts(nullable=True)
    # set once a cancelled subscription's last period is invoiced: the run skips it from then
    billing_done: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    created_at: Mapped[datetime] = _ts()
    __table_args__ = (
        Index(
            "uq_subscriptions_active_resource",
            "resource_type",
            "resource_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_subscriptions_resource", "resource_type", "resource_id"),
        # room on each page, so the run's one update (billing_done) stays a HOT update
        {"postgresql_with": {"fillfactor": 90}},
    )


class ResourceTombstone(Base):
    """A deletion that arrived before its creation (queues keep no order across types)."""

    __tablename__ = "resource_tombstones"
    resource_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class BillingRun(Base):
    __tablename__ = "billing_runs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    trigger: Mapped[str] = mapped_column(String(20), nullable=False)  # schedule | admin
    invoices_created: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    invoices_overdue: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    started_at: Mapped[datetime] = _ts()
    __table_args__ = (Index("ix_billing_runs_trigger_as_of", "trigger", "as_of"),)


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # No foreign keys from invoices and lines: the run writes them together with the rows
    # they point at, in one statement, and nothing is ever deleted; per-row FK triggers
    # were most of the run's time (see README, Performance).
    run_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # open | paid | overdue | void
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="open")
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    paid_at: Mapped[datetime | None] = _ts(nullable=True)
    created_at: Mapped[datetime] = _ts()
    # the invoice is its own `invoice.due` record: relayed (see `invoice_due_events`) until
    # this is set
    due_event_sent_at: Mapped[datetime | None] = _ts(nullable=True)
    due_event_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    __table_args__ = (
        Index(
            "ix_invoices_due_event_unsent",
            "created_at",
            postgresql_where=text("due_event_sent_at IS NULL"),
        ),
        # one invoice per user and run; also the index of a user's invoices
        UniqueConstraint("user_id", "run_id", name="uq_invoices_user_run"),
        Index("ix_invoices_open_due", "due_at", postgresql_where=text("status = 'open'")),
        # the suspension sweep and reactivation look for a user's overdue invoices
        Index("ix_invoices_overdue_user", "user_id", postgresql_where=text("status = 'overdue'")),
    )


class InvoiceLine(Base):
    """Exactly once per (subscription, period), whatever runs, retries or races happen: the
    primary key. The run also finds each subscription's next unbilled period through it."""

    __tablename__ = "invoice_lines"
    # A line belongs to the invoice of its subscription's user in its run: (user, run) is
    # unique among invoices, so the run writes lines without knowing invoice ids. Found
    # through the primary key (a user's subscriptions), so no index of its own.
    run_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    subscription_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # the subscription's period n (0 = its first month)
    period_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    __table_args__ = (
        PrimaryKeyConstraint("subscription_id", "period_no", name="uq_invoice_lines_period"),
    )


class UsageRecord(Base):
    """The usage ledger: metered quantities as reported, ready for usage-based lines."""

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(20), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(64), nullable=False)
    metric: Mapped[str] = mapped_column(String(40), nullable=False)
    quantity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = _ts()
    __table_args__ = (
        UniqueConstraint(
            "resource_type", "resource_id", "metric", "measured_at", name="uq_usage_records_sample"
        ),
    )


class Payment(Base):
    """One attempt to pay an invoice through Paystack, recorded before Paystack is called."""

    __tablename__ = "payments"
    reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    # initializing | pending | succeeded | failed, or for a charge of an invoice that another
    # payment had already settled: needs_refund, then refunded once Paystack took the refund
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    authorization_url: Mapped[str | None] = mapped_column(Text)
    access_code: Mapped[str | None] = mapped_column(String(100))
    refund_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()
    __table_args__ = (
        UniqueConstraint("invoice_id", "attempt", name="uq_payments_attempt"),
        Index(
            "ix_payments_needs_refund",
            "reference",
            postgresql_where=text("status = 'needs_refund'"),
        ),
    )


class PaystackEvent(Base):
    """Every verified webhook delivery, once (by the SHA-256 of its body); settled later."""

    __tablename__ = "paystack_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    body_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    event: Mapped[str] = mapped_column(String(80), nullable=False)
    reference: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    received_at: Mapped[datetime] = _ts()
    processed_at: Mapped[datetime | None] = _ts(nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(80))
    __table_args__ = (
        Index("ix_paystack_events_pending", "id", postgresql_where=text("processed_at IS NULL")),
    )


outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
job_runs = job_runs_table(metadata)

# A view over the invoices shaped like the outbox (migration 0003), so the same relay
# publishes each new invoice's `invoice.due`: the run writes no outbox row per invoice. Kept
# out of `metadata`, which describes tables only.
invoice_due_events = Table(
    "invoice_due_events",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("type", String(120)),
    Column("body", Text),
    Column("traceparent", String(128)),
    Column("created_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("attempts", Integer),
)
