"""Administrators register, drain and list tenant clusters. Admin DSNs are never shown."""

from __future__ import annotations

from fastapi import APIRouter, Request

from shardz_common.auth import AdminUser
from shardz_common.db import SessionDep
from shardz_common.errors import NotFound
from shardz_provisioner.db.tables import Cluster
from shardz_provisioner.deps import RegistryDep, SessionsDep, SettingsDep
from shardz_provisioner.domain.models import (
    ClusterDrained,
    ClusterIn,
    ClusterList,
    ClusterOut,
    Orphans,
)
from shardz_provisioner.services import moves
from shardz_provisioner.services.clusters import cluster_loads
from shardz_provisioner.services.reconciler import find_orphans

router = APIRouter(prefix="/v1/clusters", tags=["clusters"])


def _out(registry: RegistryDep, cluster: Cluster, used: int) -> ClusterOut:
    return ClusterOut(
        name=cluster.name,
        host=cluster.host,
        port=cluster.port,
        capacity=cluster.capacity,
        status=cluster.status,
        databases=used,
        up=registry.is_up(cluster.name),
        disk_bytes=cluster.disk_bytes,
        used_bytes=cluster.used_bytes,
    )


async def _one(session: SessionDep, registry: RegistryDep, name: str) -> ClusterOut:
    [(cluster, used)] = await cluster_loads(session, name)
    return _out(registry, cluster, used)


@router.get("", response_model=ClusterList)
async def list_clusters(
    session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterList:
    loads = await cluster_loads(session)
    return ClusterList(items=[_out(registry, c, used) for c, used in loads])


@router.post("", status_code=201, response_model=ClusterOut)
async def register_cluster(
    body: ClusterIn, session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterOut:
    cluster = await registry.register(session, body)
    return await _one(session, registry, cluster.name)


async def _set_status(
    session: SessionDep, registry: RegistryDep, name: str, status: str
) -> ClusterOut:
    cluster = await session.get(Cluster, name)
    if cluster is None:
        raise NotFound("no such cluster")
    cluster.status = status
    await session.flush()
    return await _one(session, registry, name)


@router.post("/{name}/drain", response_model=ClusterDrained)
async def drain(
    name: str,
    session: SessionDep,
    registry: RegistryDep,
    settings: SettingsDep,
    admin: AdminUser,
    request: Request,
    move: bool = False,
) -> ClusterDrained:
    """A draining cluster keeps its databases but receives no new ones; with `?move=true`
    each of them is also moved to another cluster, `moves_per_cluster` (2) at a time."""
    out = await _set_status(session, registry, name, "draining")
    queued = await moves.drain(session, registry, settings, name) if move else 0
    await session.commit()
    if queued:
        await request.app.state.moves.kick()
    return ClusterDrained(**out.model_dump(), moves_queued=queued)


@router.post("/{name}/activate", response_model=ClusterOut)
async def activate(
    name: str, session: SessionDep, registry: RegistryDep, admin: AdminUser
) -> ClusterOut:
    return await _set_status(session, registry, name, "active")


@router.get("/orphans", response_model=list[Orphans])
async def orphans(sessions: SessionsDep, registry: RegistryDep, admin: AdminUser) -> list[Orphans]:
    return await find_orphans(sessions, registry)
