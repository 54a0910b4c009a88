from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response
from sqlalchemy import select

from shardz_common.auth import CurrentUser
from shardz_common.db import ReadSessionDep, SessionDep
from shardz_provisioner.db.tables import Cluster, Database
from shardz_provisioner.deps import RegistryDep, SessionsDep, SettingsDep
from shardz_provisioner.domain.models import (
    DatabaseCreate,
    DatabaseList,
    DatabaseOut,
    DatabaseWithPassword,
    Usage,
)
from shardz_provisioner.services import lifecycle, provisioning
from shardz_provisioner.services.views import to_out

router = APIRouter(prefix="/v1/databases", tags=["databases"])


@router.post("", status_code=201, response_model=DatabaseWithPassword)
async def create_database(
    body: DatabaseCreate,
    user: CurrentUser,
    sessions: SessionsDep,
    registry: RegistryDep,
    settings: SettingsDep,
) -> DatabaseWithPassword:
    return await provisioning.create(sessions, registry, settings, user, body)


@router.get("", response_model=DatabaseList)
async def list_databases(session: ReadSessionDep, user: CurrentUser) -> DatabaseList:
    rows = await session.execute(
        select(Database, Cluster)
        .join(Cluster, Cluster.name == Database.cluster)
        .where(Database.user_id == user.id, Database.status != "deleted")
        .order_by(Database.created_at)
    )
    return DatabaseList(items=[to_out(db, cluster) for db, cluster in rows.tuples()])


@router.get("/{database_id}", response_model=DatabaseOut)
async def get_database(
    database_id: UUID, session: ReadSessionDep, user: CurrentUser
) -> DatabaseOut:
    db = await provisioning.get_owned(session, user, database_id)
    cluster = await session.get(Cluster, db.cluster)
    assert cluster is not None
    return to_out(db, cluster)


@router.post("/{database_id}/rotate-credentials", response_model=DatabaseWithPassword)
async def rotate_credentials(
    database_id: UUID, sessions: SessionsDep, user: CurrentUser, registry: RegistryDep
) -> DatabaseWithPassword:
    return await lifecycle.rotate(sessions, registry, user, database_id)


@router.get("/{database_id}/usage", response_model=Usage)
async def usage(
    database_id: UUID, session: SessionDep, user: CurrentUser, registry: RegistryDep
) -> Usage:
    return await lifecycle.usage(session, registry, user, database_id)


@router.delete("/{database_id}", status_code=202)
async def delete_database(database_id: UUID, session: SessionDep, user: CurrentUser) -> Response:
    await lifecycle.delete(session, user, database_id)
    return Response(status_code=202)
