"""Read models of the API: a user's subscriptions and invoices (with their lines)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_billing.api.schemas import (
    InvoiceLineOut,
    InvoiceOut,
    SubscriptionOut,
)
from shardz_billing.db.tables import Invoice, InvoiceLine, Subscription
from shardz_billing.domain.periods import period_containing
from shardz_common.errors import NotFound


def subscription_out(sub: Subscription, now: datetime) -> SubscriptionOut:
    at = min(now, sub.cancelled_at) if sub.cancelled_at else now
    start, end = period_containing(sub.started_at, at)
    if sub.cancelled_at is not None:
        end = min(end, sub.cancelled_at)
    return SubscriptionOut(
        id=sub.id,
        resource_type=sub.resource_type,
        resource_id=sub.resource_id,
        plan=sub.plan,
        status="active" if sub.status == "active" else "cancelled",
        current_period_start=start,
        current_period_end=end,
        started_at=sub.started_at,
        cancelled_at=sub.cancelled_at,
    )


async def subscriptions(session: AsyncSession, user_id: uuid.UUID) -> list[SubscriptionOut]:
    rows = await session.execute(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.started_at, Subscription.created_at)
    )
    now = datetime.now(UTC)
    return [subscription_out(s, now) for s in rows.scalars()]


async def invoices(
    session: AsyncSession, user_id: uuid.UUID, invoice_id: uuid.UUID | None = None
) -> list[InvoiceOut]:
    query = select(Invoice).where(Invoice.user_id == user_id)
    if invoice_id is not None:
        query = query.where(Invoice.id == invoice_id)
    found = list(
        (
            await session.execute(
                query.order_by(Invoice.issued_at.desc(), Invoice.created_at.desc())
            )
        ).scalars()
    )
    # one invoice per user and run: a line of one of the user's subscriptions belongs to
    # the invoice of its run
    lines: dict[int, list[InvoiceLineOut]] = defaultdict(list)
    if found:
        rows = await session.execute(
            select(InvoiceLine)
            .where(
                # through the primary key: lines have no index on their run
                InvoiceLine.subscription_id.in_(
                    select(Subscription.id).where(Subscription.user_id == user_id)
                ),
                InvoiceLine.run_id.in_([i.run_id for i in found]),
            )
            .order_by(InvoiceLine.period_start, InvoiceLine.subscription_id)
        )
        for line in rows.scalars():
            lines[line.run_id].append(
                InvoiceLineOut(
                    subscription_id=line.subscription_id,
                    description=line.description,
                    period_start=line.period_start,
                    period_end=line.period_end,
                    amount_minor=line.amount_minor,
                )
            )
    return [
        InvoiceOut(
            id=i.id,
            status=i.status,
            amount_minor=i.amount_minor,
            currency=i.currency,
            period_start=i.period_start,
            period_end=i.period_end,
            issued_at=i.issued_at,
            due_at=i.due_at,
            paid_at=i.paid_at,
            lines=lines[i.run_id],
        )
        for i in found
    ]


async def invoice(session: AsyncSession, user_id: uuid.UUID, invoice_id: uuid.UUID) -> InvoiceOut:
    found = await invoices(session, user_id, invoice_id)
    if not found:
        raise NotFound("no such invoice")
    return found[0]
