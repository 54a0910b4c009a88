from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select

from shardz_common.auth import CurrentUser
from shardz_common.db import ReadSessionDep, SessionDep
from shardz_common.openapi import problems
from shardz_provisioner.db.tables import Cluster, Database, UsageSample
from shardz_provisioner.deps import RegistryDep, SessionsDep, SettingsDep
from shardz_provisioner.domain.models import (
    DatabaseCreate,
    DatabaseList,
    DatabaseOut,
    DatabasePlanChange,
    DatabaseWithPassword,
    Usage,
    UsageHistory,
)
from shardz_provisioner.services import lifecycle, plans, provisioning
from shardz_provisioner.services.views import to_out

router = APIRouter(prefix="/v1/databases", tags=["databases"])


@router.post("", status_code=201, response_model=DatabaseWithPassword, responses=problems(409))
async def create_database(
    body: DatabaseCreate,
    user: CurrentUser,
    sessions: SessionsDep,
    registry: RegistryDep,
    settings: SettingsDep,
) -> DatabaseWithPassword:
    return await provisioning.create(sessions, registry, settings, user, body)


@router.get("", response_model=DatabaseList)
async def list_databases(
    session: ReadSessionDep, user: CurrentUser, settings: SettingsDep
) -> DatabaseList:
    rows = await session.execute(
        select(Database, Cluster)
        .join(Cluster, Cluster.name == Database.cluster)
        .where(Database.user_id == user.id, Database.status.not_in(("deleted", "deleting")))
        .order_by(Database.created_at)
    )
    free_size = settings.platform.free_plan_database_size_bytes
    return DatabaseList(items=[to_out(db, c, free_size) for db, c in rows.tuples()])


@router.get("/{database_id}", response_model=DatabaseOut)
async def get_database(
    database_id: UUID, session: ReadSessionDep, user: CurrentUser, settings: SettingsDep
) -> DatabaseOut:
    db = await provisioning.get_owned(session, user, database_id)
    cluster = await session.get(Cluster, db.cluster)
    assert cluster is not None
    return to_out(db, cluster, settings.platform.free_plan_database_size_bytes)


@router.patch("/{database_id}", response_model=DatabaseOut, responses=problems(409))
async def change_plan(
    database_id: UUID,
    body: DatabasePlanChange,
    session: SessionDep,
    user: CurrentUser,
    registry: RegistryDep,
    settings: SettingsDep,
) -> DatabaseOut:
    return await plans.change_plan(session, registry, settings, user, database_id, body.plan)


@router.post(
    "/{database_id}/rotate-credentials",
    response_model=DatabaseWithPassword,
    responses=problems(409),
)
async def rotate_credentials(
    database_id: UUID,
    sessions: SessionsDep,
    user: CurrentUser,
    registry: RegistryDep,
    settings: SettingsDep,
) -> DatabaseWithPassword:
    return await lifecycle.rotate(sessions, registry, settings, user, database_id)


@router.get("/{database_id}/usage", response_model=Usage, responses=problems(409))
async def usage(
    database_id: UUID, session: SessionDep, user: CurrentUser, registry: RegistryDep
) -> Usage:
    return await lifecycle.usage(session, registry, user, database_id)


@router.get("/{database_id}/usage/history", response_model=UsageHistory)
async def usage_history(
    database_id: UUID,
    session: ReadSessionDep,
    user: CurrentUser,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
) -> UsageHistory:
    """Size and connections as metered (hourly, and at creation), oldest first."""
    await provisioning.get_owned(session, user, database_id)
    rows = await session.execute(
        select(UsageSample.size_bytes, UsageSample.connections, UsageSample.measured_at)
        .where(
            UsageSample.database_id == database_id,
            UsageSample.measured_at >= func.now() - func.make_interval(0, 0, 0, days),
        )
        .order_by(UsageSample.measured_at)
        .limit(24 * 90 * 2)
    )
    return UsageHistory(
        items=[Usage(size_bytes=s, connections=c, measured_at=at) for s, c, at in rows.tuples()]
    )


@router.delete("/{database_id}", status_code=202, responses=problems(409))
async def delete_database(database_id: UUID, session: SessionDep, user: CurrentUser) -> Response:
    await lifecycle.delete(session, user, database_id)
    return Response(status_code=202)
