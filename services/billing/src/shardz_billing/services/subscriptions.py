"""Subscriptions follow resources: opened when one appears, closed (pro rata) when it goes or
changes plan. Every function is idempotent, so a redelivered or reconciled fact changes
nothing twice, and takes the resource's lock first, so an event and the reconciliation that
race over one resource apply it once."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_billing.db.tables import Account, ResourceTombstone, Subscription
from shardz_billing.services.events import emit
from shardz_common.events import SubscriptionCancelled, SubscriptionCreated
from shardz_common.plans import get_plan

STORAGE_DEFAULT_PLAN = "storage-free"


async def lock_resource(session: AsyncSession, resource_type: str, resource_id: str) -> None:
    """Serialise every change to one resource's subscriptions until the transaction ends
    (a resource that has no row yet has nothing else to lock)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"billing-subscription:{resource_type}:{resource_id}"},
    )


async def ensure_account(
    session: AsyncSession, user_id: uuid.UUID, email: str | None = None
) -> None:
    stmt = insert(Account).values(user_id=user_id, email=email)
    if email is not None:
        stmt = stmt.on_conflict_do_update(index_elements=[Account.user_id], set_={"email": email})
    else:
        stmt = stmt.on_conflict_do_nothing()
    await session.execute(stmt)


async def open_subscription(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    resource_type: str,
    resource_id: str,
    plan_id: str,
    started_at: datetime,
    cancelled_at: datetime | None = None,
    only_if_new_resource: bool = False,
) -> uuid.UUID | None:
    """Open (or, for a resource already gone, open and close) a subscription. Nothing when
    the resource already has an active one, or with `only_if_new_resource` any at all (so a
    database is never billed twice from two sources of the same fact)."""
    plan = get_plan(plan_id, resource_type)
    if plan is None:
        raise ValueError(f"unknown {resource_type} plan {plan_id!r}")
    await ensure_account(session, user_id)
    await lock_resource(session, resource_type, resource_id)
    if only_if_new_resource:
        known = await session.execute(
            select(Subscription.id)
            .where(
                Subscription.resource_type == resource_type,
                Subscription.resource_id == resource_id,
            )
            .limit(1)
        )
        if known.first() is not None:
            return None
    tomb = await session.get(ResourceTombstone, (resource_type, resource_id))
    if tomb is not None and cancelled_at is None:
        cancelled_at = max(tomb.deleted_at, started_at)
    sub_id = uuid.uuid4()
    created = await session.execute(
        insert(Subscription)
        .values(
            id=sub_id,
            user_id=user_id,
            resource_type=resource_type,
            resource_id=resource_id,
            plan=plan.id,
            price_minor=plan.price_minor,
            currency=plan.currency,
            status="cancelled" if cancelled_at else "active",
            started_at=started_at,
            cancelled_at=cancelled_at,
        )
        .on_conflict_do_nothing(
            index_elements=[Subscription.resource_type, Subscription.resource_id],
            index_where=Subscription.status == "active",
        )
        .returning(Subscription.id)
    )
    if created.first() is None:
        return None
    fields = {
        "subscription_id": sub_id,
        "user_id": user_id,
        "resource_type": resource_type,
        "resource_id": resource_id,
    }
    emit(session, SubscriptionCreated(**fields), sub_id)
    if cancelled_at:
        emit(session, SubscriptionCancelled(**fields), sub_id)
    return sub_id


async def cancel_subscription(
    session: AsyncSession, resource_type: str, resource_id: str, at: datetime
) -> Subscription | None:
    """Close the resource's active subscription at `at` (never before it began)."""
    await lock_resource(session, resource_type, resource_id)
    stopped_at = func.greatest(at, Subscription.started_at)
    row = (
        await session.execute(
            update(Subscription)
            .where(
                Subscription.resource_type == resource_type,
                Subscription.resource_id == resource_id,
                Subscription.status == "active",
            )
            .values(status="cancelled", cancelled_at=stopped_at)
            .returning(Subscription)
        )
    ).scalar_one_or_none()
    if row is not None:
        emit(
            session,
            SubscriptionCancelled(
                subscription_id=row.id,
                user_id=row.user_id,
                resource_type=resource_type,
                resource_id=resource_id,
            ),
            row.id,
        )
    return row


async def resource_deleted(
    session: AsyncSession, resource_type: str, resource_id: str, at: datetime
) -> None:
    if await cancel_subscription(session, resource_type, resource_id, at) is not None:
        return
    known = await session.execute(
        select(Subscription.id)
        .where(Subscription.resource_type == resource_type, Subscription.resource_id == resource_id)
        .limit(1)
    )
    if known.first() is None:  # the creation has not arrived yet: remember the deletion
        await session.execute(
            insert(ResourceTombstone)
            .values(resource_type=resource_type, resource_id=resource_id, deleted_at=at)
            .on_conflict_do_nothing()
        )


async def change_plan(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    resource_type: str,
    resource_id: str,
    plan_id: str,
    at: datetime,
) -> bool:
    """Close the old subscription pro rata at `at` and open one on the new plan from `at`;
    False when that is already so (or a later change is already applied)."""
    await lock_resource(session, resource_type, resource_id)
    current = (
        await session.execute(
            select(Subscription)
            .where(
                Subscription.resource_type == resource_type,
                Subscription.resource_id == resource_id,
                Subscription.status == "active",
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if current is not None:
        if current.plan == plan_id:
            return False
        if current.started_at >= at:  # an older change arriving late
            return False
        await cancel_subscription(session, resource_type, resource_id, at)
    opened = await open_subscription(
        session,
        user_id=user_id,
        resource_type=resource_type,
        resource_id=resource_id,
        plan_id=plan_id,
        started_at=at,
    )
    return opened is not None


async def cancel_all_for(session: AsyncSession, user_id: uuid.UUID, at: datetime) -> None:
    rows = (
        await session.execute(
            select(Subscription.resource_type, Subscription.resource_id).where(
                Subscription.user_id == user_id, Subscription.status == "active"
            )
        )
    ).all()
    for resource_type, resource_id in rows:
        await cancel_subscription(session, resource_type, resource_id, at)


async def ensure_storage_subscription(
    session: AsyncSession, user_id: uuid.UUID, at: datetime
) -> None:
    """A user's storage space exists from the first request: so does its subscription."""
    await open_subscription(
        session,
        user_id=user_id,
        resource_type="storage",
        resource_id=str(user_id),
        plan_id=STORAGE_DEFAULT_PLAN,
        started_at=at,
        only_if_new_resource=True,
    )
