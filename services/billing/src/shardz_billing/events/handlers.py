"""Events billing consumes: identity's users, the provisioner's databases, storage's plans and
everyone's metered usage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_billing.db.tables import Account, UsageRecord
from shardz_billing.services import subscriptions
from shardz_common.consumers import Consumer, consumer, event_time
from shardz_common.events import (
    DatabaseDeleted,
    DatabasePlanChanged,
    DatabaseProvisioned,
    DatabaseUsageReported,
    StoragePlanChanged,
    StorageUsageReported,
    UserCreated,
    UserDeleted,
)


@consumer("billing.user-created", UserCreated)
async def on_user_created(event: UserCreated, session: AsyncSession) -> None:
    await subscriptions.ensure_account(session, event.user_id, event.email)
    await subscriptions.ensure_storage_subscription(session, event.user_id, event_time())


@consumer("billing.user-deleted", UserDeleted)
async def on_user_deleted(event: UserDeleted, session: AsyncSession) -> None:
    await subscriptions.ensure_account(session, event.user_id)
    await session.execute(
        update(Account)
        .where(Account.user_id == event.user_id)
        .values(status="deleted", status_at=func.now())
    )
    await subscriptions.cancel_all_for(session, event.user_id, event_time())


@consumer("billing.db-provisioned", DatabaseProvisioned)
async def on_db_provisioned(event: DatabaseProvisioned, session: AsyncSession) -> None:
    await subscriptions.open_subscription(
        session,
        user_id=event.user_id,
        resource_type="database",
        resource_id=str(event.database_id),
        plan_id=event.plan,
        started_at=event_time(),
        only_if_new_resource=True,
    )


@consumer("billing.db-deleted", DatabaseDeleted)
async def on_db_deleted(event: DatabaseDeleted, session: AsyncSession) -> None:
    await subscriptions.resource_deleted(session, "database", str(event.database_id), event_time())


@consumer("billing.db-plan-changed", DatabasePlanChanged)
async def on_db_plan_changed(event: DatabasePlanChanged, session: AsyncSession) -> None:
    await subscriptions.change_plan(
        session,
        user_id=event.user_id,
        resource_type="database",
        resource_id=str(event.database_id),
        plan_id=event.plan,
        at=event.changed_at,
    )


@consumer("billing.storage-plan-changed", StoragePlanChanged)
async def on_storage_plan_changed(event: StoragePlanChanged, session: AsyncSession) -> None:
    await subscriptions.change_plan(
        session,
        user_id=event.user_id,
        resource_type="storage",
        resource_id=str(event.user_id),
        plan_id=event.plan,
        at=event.changed_at,
    )


async def _record_usage(session: AsyncSession, **values: Any) -> None:
    await session.execute(insert(UsageRecord).values(**values).on_conflict_do_nothing())


@consumer("billing.db-usage", DatabaseUsageReported)
async def on_db_usage(event: DatabaseUsageReported, session: AsyncSession) -> None:
    await _record_usage(
        session,
        user_id=event.user_id,
        resource_type="database",
        resource_id=str(event.database_id),
        metric="size_bytes",
        quantity=event.size_bytes,
        measured_at=event.measured_at,
    )


@consumer("billing.storage-usage", StorageUsageReported)
async def on_storage_usage(event: StorageUsageReported, session: AsyncSession) -> None:
    await _record_usage(
        session,
        user_id=event.user_id,
        resource_type="storage",
        resource_id=str(event.user_id),
        metric="used_bytes",
        quantity=event.used_bytes,
        measured_at=event.measured_at,
    )


def consumers() -> list[Consumer[Any]]:
    return [
        on_user_created,
        on_user_deleted,
        on_db_provisioned,
        on_db_deleted,
        on_db_plan_changed,
        on_storage_plan_changed,
        on_db_usage,
        on_storage_usage,
    ]
