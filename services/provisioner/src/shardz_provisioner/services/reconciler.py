"""The worker's side of the saga: roll back crashed creations, finish deletions, report
orphans, meter usage. Every step is idempotent and safe to run from several workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import structlog
from prometheus_client import Gauge
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.events import DatabaseUsageReported
from shardz_provisioner.db.tables import Cluster, Database, Move, UsageSample
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import Orphans
from shardz_provisioner.services import ddl
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable
from shardz_provisioner.services.events import emit

log = structlog.get_logger(__name__)
ORPHANS = Gauge("provisioner_orphans", "Roles/databases on a cluster nothing owns", ["cluster"])


async def _claim(
    session: AsyncSession, status: str, older_than: timedelta, limit: int = 20
) -> list[Database]:
    cutoff = datetime.now(UTC) - older_than
    rows = await session.execute(
        select(Database)
        .where(Database.status == status, Database.updated_at < cutoff)
        .order_by(Database.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())


async def _drop(registry: ClusterRegistry, db: Database) -> bool:
    """Drop a database and its role; False (and the row goes to the back of the queue) when
    the cluster is away or the drop fails, so one stuck database never blocks the rest."""
    assert db.cluster is not None
    try:
        async with registry.admin(db.cluster) as conn:
            await ddl.drop(conn, db.db_name, db.role_name, names.terminal_role_name(db.id))
    except ClusterUnavailable:
        db.updated_at = datetime.now(UTC)
        return False
    except psycopg.Error as exc:
        log.error("drop failed; will retry", database_id=str(db.id), error=type(exc).__name__)
        db.updated_at = datetime.now(UTC)
        return False
    return True


async def rollback_stale_intents(
    sessions: async_sessionmaker[AsyncSession], registry: ClusterRegistry, timeout: float
) -> int:
    """An intent older than the timeout belongs to a crashed request: undo its DDL and
    forget it (the client never got a 201)."""
    done = 0
    async with sessions() as s, s.begin():
        for db in await _claim(s, "provisioning", timedelta(seconds=timeout)):
            if await _drop(registry, db):
                log.warning("rolled back a crashed provisioning", database_id=str(db.id))
                await s.delete(db)
                done += 1
    return done


async def settle_rotations(
    sessions: async_sessionmaker[AsyncSession], registry: ClusterRegistry, timeout: float
) -> int:
    """Rotations that never finished (a crash, a failed commit): the server may hold a new
    password nobody received. Put the stored one back, so it logs in again."""
    done = 0
    cutoff = datetime.now(UTC) - timedelta(seconds=timeout)
    async with sessions() as s, s.begin():
        rows = (
            await s.execute(
                select(Database)
                .where(Database.pending_password.is_not(None), Database.updated_at < cutoff)
                .limit(20)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
        for db in rows:
            if db.status in ("ready", "suspended") and db.password is not None:
                stored = registry.fernet.decrypt(db.password).decode()
                verifier = await names.scram_verifier_async(stored)
                assert db.cluster is not None
                try:
                    async with registry.admin(db.cluster) as conn:
                        await ddl.set_password(conn, db.role_name, verifier)
                except ClusterUnavailable:
                    continue
                log.warning(
                    "restored the credential of an unfinished rotation", database_id=str(db.id)
                )
            db.pending_password = None
            done += 1
    return done


async def finish_deletions(
    sessions: async_sessionmaker[AsyncSession], registry: ClusterRegistry
) -> int:
    done = 0
    async with sessions() as s, s.begin():
        for db in await _claim(s, "deleting", timedelta(0), limit=5):
            if await _drop(registry, db):
                db.status = "deleted"
                db.password = None
                db.deleted_at = db.updated_at = datetime.now(UTC)
                done += 1
    return done


async def find_orphans(
    sessions: async_sessionmaker[AsyncSession], registry: ClusterRegistry
) -> list[Orphans]:
    """Roles and databases with our generated prefix that no live record owns."""
    async with sessions() as s:
        clusters = await registry.load(s)
        known = list(
            (
                await s.execute(
                    select(
                        Database.id, Database.cluster, Database.db_name, Database.role_name
                    ).where(Database.status != "deleted")
                )
            ).all()
        )
        # a move in flight owns the copy on its other cluster (the target before the
        # switch, the source until its grace period ends)
        # (two queries, not a UNION: a compound select's rows do not carry the labels)
        for side, states in (
            (Move.to_cluster, ("queued", "running")),
            (Move.from_cluster, ("switched",)),
        ):
            known += (
                await s.execute(
                    select(
                        Database.id,
                        side.label("cluster"),
                        Database.db_name,
                        Database.role_name,
                    )
                    .join(Move, Move.database_id == Database.id)
                    .where(Move.state.in_(states))
                )
            ).all()
    report = []
    for cluster in clusters:
        try:
            async with registry.admin(cluster.name) as conn:
                roles, dbs = await ddl.platform_objects(conn)
        except ClusterUnavailable:
            continue
        mine = [k for k in known if k.cluster == cluster.name]
        owned = {k.role_name for k in mine} | {names.terminal_role_name(k.id) for k in mine}
        orphan_roles = sorted(roles - owned)
        orphan_dbs = sorted(dbs - {k.db_name for k in mine})
        ORPHANS.labels(cluster.name).set(len(orphan_roles) + len(orphan_dbs))
        if orphan_roles or orphan_dbs:
            log.warning(
                "orphans on cluster", cluster=cluster.name, roles=orphan_roles, databases=orphan_dbs
            )
        report.append(Orphans(cluster=cluster.name, roles=orphan_roles, databases=orphan_dbs))
    return report


async def meter(sessions: async_sessionmaker[AsyncSession], registry: ClusterRegistry) -> int:
    """Sample size and connections of every live database; `db.usage.reported` each."""
    count = 0
    async with sessions() as s:
        clusters: list[Cluster] = await registry.load(s)
    for cluster in clusters:
        try:
            async with registry.admin(cluster.name) as conn:
                sizes = await ddl.usage_all(conn)
        except ClusterUnavailable:
            continue
        now = datetime.now(UTC)
        async with sessions() as s, s.begin():
            rows = (
                await s.execute(
                    select(Database).where(
                        Database.cluster == cluster.name,
                        Database.status.in_(("ready", "suspended")),
                    )
                )
            ).scalars()
            for db in rows:
                if db.db_name not in sizes:
                    continue
                size, connections = sizes[db.db_name]
                s.add(
                    UsageSample(
                        database_id=db.id, size_bytes=size, connections=connections, measured_at=now
                    )
                )
                emit(
                    s,
                    DatabaseUsageReported(
                        database_id=db.id, user_id=db.user_id, size_bytes=size, measured_at=now
                    ),
                    db.id,
                )
                count += 1
    return count
