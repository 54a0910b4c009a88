"""Administrators register, drain and list tenant clusters. Admin DSNs are never shown."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from shardz_common.auth import AdminUser
from shardz_common.db import SessionDep
from shardz_common.errors import NotFound
from shardz_provisioner.db.tables import Cluster, Database
from shardz_provisioner.deps import RegistryDep, SessionsDep
from shardz_provisioner.domain.models import ClusterIn, ClusterList, ClusterOut, Orphans
from shardz_provisioner.services.reconciler import find_orphans

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])


async def _out(session: SessionDep, registry: RegistryDep, cluster: Cluster) -> ClusterOut:
    used = (
        await session.execute(
            select(func.count())
            .select_from(Database)
            .where(Database.cluster == cluster.name, Database.status != "deleted")
        )
    ).scalar_one()
    return ClusterOut(
        name=cluster.name,
        host=cluster.host,
        port=cluster.port,
        capacity=cluster.capacity,
        status=cluster.status,
        databases=used,
        up=registry.is_up(cluster.name),
    )


@router.get("", response_model=ClusterList)
async def list_clusters(
    session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterList:
    clusters = (await session.execute(select(Cluster).order_by(Cluster.name))).scalars().all()
    return ClusterList(items=[await _out(session, registry, c) for c in clusters])


@router.post("", status_code=201, response_model=ClusterOut)
async def register_cluster(
    body: ClusterIn, session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterOut:
    cluster = await registry.register(session, body)
    return await _out(session, registry, cluster)


async def _set_status(session: SessionDep, name: str, status: str) -> Cluster:
    cluster = await session.get(Cluster, name)
    if cluster is None:
        raise NotFound("no such cluster")
    cluster.status = status
    return cluster


@router.post("/{name}/drain", response_model=ClusterOut)
async def drain(
    name: str, session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterOut:
    """A draining cluster keeps its databases but receives no new ones."""
    return await _out(session, registry, await _set_status(session, name, "draining"))


@router.post("/{name}/activate", response_model=ClusterOut)
async def activate(
    name: str, session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterOut:
    return await _out(session, registry, await _set_status(session, name, "active"))


@router.get("/orphans", response_model=list[Orphans])
async def orphans(sessions: SessionsDep, registry: RegistryDep, admin: AdminUser) -> list[Orphans]:
    return await find_orphans(sessions, registry)
