"""A user's storage space: created on demand, its plan and quota, suspension, deletion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.errors import AccountSuspended, Conflict, Unauthenticated, ValidationFailed
from shardz_common.events import StoragePlanChanged
from shardz_common.plans import get_plan
from shardz_storage.config import StorageSettings
from shardz_storage.services.events import emit

DEFAULT_PLAN = "storage-free"


def quota_for(plan_id: str, settings: StorageSettings) -> int:
    plan = get_plan(plan_id, "storage")
    if plan is None:
        raise ValidationFailed(f"unknown storage plan {plan_id!r}", field="plan")
    limit = plan.limits.get("bytes")
    return int(limit) if limit is not None else settings.platform.free_plan_storage_bytes


_ENSURE = text(
    "INSERT INTO spaces (user_id, plan, quota_bytes, usage_changed_at)"
    " VALUES (:u, :plan, :quota, now()) ON CONFLICT DO NOTHING"
)
_GET = text(
    "SELECT user_id, plan, quota_bytes, used_bytes, reserved_bytes, object_count, status"
    " FROM spaces WHERE user_id = :u"
)


async def ensure(session: AsyncSession, settings: StorageSettings, user_id: uuid.UUID) -> None:
    """Every user has a space from their first request, whether or not user.created came."""
    await session.execute(
        _ENSURE, {"u": user_id, "plan": DEFAULT_PLAN, "quota": quota_for(DEFAULT_PLAN, settings)}
    )


async def get(
    session: AsyncSession, settings: StorageSettings, user_id: uuid.UUID
) -> dict[str, Any]:
    row = (await session.execute(_GET, {"u": user_id})).mappings().first()
    if row is None:
        await ensure(session, settings, user_id)
        row = (await session.execute(_GET, {"u": user_id})).mappings().one()
    space = dict(row)
    if space["status"] == "deleted":
        raise Unauthenticated("the account was deleted")
    return space


def require_writable(space: dict[str, Any]) -> None:
    if space["status"] == "suspended":
        raise AccountSuspended(
            "the account is suspended for an unpaid invoice: storage is read-only"
        )
    if space["status"] == "deleted":
        raise Unauthenticated("the account was deleted")


async def change_plan(
    session: AsyncSession, settings: StorageSettings, user_id: uuid.UUID, plan_id: str
) -> dict[str, Any]:
    quota = quota_for(plan_id, settings)
    await ensure(session, settings, user_id)
    space = dict(
        (await session.execute(text(_GET.text + " FOR UPDATE"), {"u": user_id})).mappings().one()
    )
    require_writable(space)
    if space["used_bytes"] + space["reserved_bytes"] > quota:
        raise Conflict(
            f"the plan's quota ({quota} bytes) is smaller than what the space holds"
            f" ({space['used_bytes'] + space['reserved_bytes']} bytes, uploads included)"
        )
    await session.execute(
        text(
            "UPDATE spaces SET plan = :plan, quota_bytes = :quota, updated_at = now(),"
            " usage_changed_at = coalesce(usage_changed_at, now()) WHERE user_id = :u"
        ),
        {"u": user_id, "plan": plan_id, "quota": quota},
    )
    if space["plan"] != plan_id:  # billing closes the old subscription and opens the new
        emit(
            session,
            StoragePlanChanged(
                user_id=user_id,
                plan=plan_id,
                previous_plan=space["plan"],
                changed_at=datetime.now(UTC),
            ),
            user_id,
        )
    return {**space, "plan": plan_id, "quota_bytes": quota}


async def set_status(
    session: AsyncSession,
    settings: StorageSettings,
    user_id: uuid.UUID,
    status: str,
    at: datetime,
) -> None:
    """Suspend or reactivate; an event older than the one that set the status is ignored."""
    await ensure(session, settings, user_id)
    await session.execute(
        text(
            "UPDATE spaces SET status = :status, status_at = :at, updated_at = now()"
            " WHERE user_id = :u AND status <> 'deleted'"
            " AND (status_at IS NULL OR status_at <= :at)"
        ),
        {"u": user_id, "status": status, "at": at},
    )


async def delete_all_for(
    session: AsyncSession, settings: StorageSettings, user_id: uuid.UUID
) -> None:
    """The space becomes a tombstone; every store object it had, and any upload in flight,
    becomes a deletion intent in this transaction (the sweeper removes them)."""
    await ensure(session, settings, user_id)
    await session.execute(
        text("SELECT 1 FROM spaces WHERE user_id = :u FOR UPDATE"), {"u": user_id}
    )
    await session.execute(
        text(
            "WITH gone AS (DELETE FROM objects WHERE user_id = :u RETURNING backend_key)"
            " INSERT INTO deletions (backend_key) SELECT backend_key FROM gone"
        ),
        {"u": user_id},
    )
    await session.execute(
        text(
            "WITH gone AS (DELETE FROM reservations WHERE user_id = :u"
            " RETURNING backend_key, upload_id)"
            " INSERT INTO deletions (backend_key, upload_id)"
            " SELECT backend_key, upload_id FROM gone"
        ),
        {"u": user_id},
    )
    await session.execute(
        text(
            "UPDATE spaces SET status = 'deleted', used_bytes = 0, reserved_bytes = 0,"
            " object_count = 0, updated_at = now(), usage_changed_at = now() WHERE user_id = :u"
        ),
        {"u": user_id},
    )
