"""The worker's side of exports and imports: claim a job, run it, record the outcome.

Jobs are claimed with SKIP LOCKED, one running job per database (the database row is locked
while claiming, then checked again). A running job holds a lease its worker renews; a worker
that dies loses it and another worker runs the job again: an export is simply made again,
an import applies in one transaction, so a crash left nothing of it behind."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Cluster, Database, DumpJob
from shardz_provisioner.domain import names
from shardz_provisioner.services import pgtools
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable
from shardz_provisioner.services.dump_work import Failed, Retry, Work, run_export, run_import
from shardz_provisioner.services.dumpstore import DumpStore, StoreUnavailable
from shardz_provisioner.services.provisioning import ensure_terminal_login

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    kind: str
    attempt: int
    database: Database
    cluster: Cluster
    store_key: str | None
    source_key: str | None


def export_key(database_id: uuid.UUID, job_id: uuid.UUID) -> str:
    return f"exports/{database_id}/{job_id}.dump"


def _fail(job: DumpJob, reason: str) -> None:
    job.status, job.error, job.lease_until = "failed", reason, None
    job.finished_at = datetime.now(UTC)


async def claim(
    sessions: async_sessionmaker[AsyncSession], settings: ProvisionerSettings
) -> Claimed | None:
    async with sessions() as s, s.begin():
        ids = (
            await s.execute(
                text(
                    "SELECT id FROM dump_jobs WHERE status = 'queued'"
                    " OR (status = 'running' AND lease_until < now())"
                    " ORDER BY created_at LIMIT 20 FOR UPDATE SKIP LOCKED"
                )
            )
        ).scalars()
        for job_id in list(ids):
            job = await s.get(DumpJob, job_id)
            assert job is not None
            # waits for a claim of the same database in flight, then sees what it did
            db = (
                await s.execute(
                    select(Database)
                    .where(Database.id == job.database_id)
                    .with_for_update(key_share=True)
                )
            ).scalar_one()
            busy = (
                await s.execute(
                    select(DumpJob.id).where(
                        DumpJob.database_id == job.database_id,
                        DumpJob.id != job.id,
                        DumpJob.status == "running",
                        DumpJob.lease_until >= func.now(),
                    )
                )
            ).first()
            if busy is not None or db.status in ("provisioning", "moving"):
                continue
            if db.status in ("deleting", "deleted"):
                _fail(job, "the database was deleted")
                continue
            if db.status == "suspended":
                _fail(job, "the database is suspended")
                continue
            if job.attempts >= settings.dump_max_attempts:
                _fail(job, f"interrupted {job.attempts} times; start it again")
                continue
            job.status, job.attempts = "running", job.attempts + 1
            if job.kind == "export":  # recorded before it is written: the sweeper finds it
                job.store_key = export_key(db.id, job.id)
            job.lease_until = datetime.now(UTC) + timedelta(seconds=settings.dump_lease_seconds)
            job.started_at = job.started_at or datetime.now(UTC)
            cluster = await s.get(Cluster, db.cluster)
            assert cluster is not None
            s.expunge(db)
            s.expunge(cluster)
            return Claimed(
                job.id, job.kind, job.attempts, db, cluster, job.store_key, job.source_key
            )
    return None


async def _login(
    registry: ClusterRegistry, settings: ProvisionerSettings, claimed: Claimed
) -> pgtools.Login:
    db, cluster = claimed.database, claimed.cluster
    async with registry.admin(cluster.name) as conn:
        password = await ensure_terminal_login(conn, settings, db)
        major = await pgtools.server_major(conn)
        host, port = conn.info.host, conn.info.port
    if host.startswith("/"):
        host, port = cluster.host, cluster.port
    return pgtools.Login(
        host=host,
        port=port,
        database=db.db_name,
        user=names.terminal_role_name(db.id),
        password=password,
        role=db.role_name,
        major=major,
    )


async def _renew(
    sessions: async_sessionmaker[AsyncSession],
    settings: ProvisionerSettings,
    claimed: Claimed,
    work: Work,
) -> None:
    """Keep the lease while the work runs; stop the work if it was lost or ran out of time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.dump_timeout_seconds
    while True:
        await asyncio.sleep(settings.dump_lease_seconds / 4)
        async with sessions() as s, s.begin():
            kept = (
                await s.execute(
                    update(DumpJob)
                    .where(
                        DumpJob.id == claimed.id,
                        DumpJob.status == "running",
                        DumpJob.attempts == claimed.attempt,
                    )
                    .values(
                        lease_until=func.now() + timedelta(seconds=settings.dump_lease_seconds),
                        applied=work.progress(),
                    )
                    .returning(DumpJob.id)
                )
            ).first()
        if kept is None:
            work.stop("the job was taken over by another worker")
            return
        if loop.time() > deadline:
            work.stop(f"stopped after {settings.dump_timeout_seconds:.0f} seconds")
            return


async def _finish(
    sessions: async_sessionmaker[AsyncSession], claimed: Claimed, **values: Any
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            update(DumpJob)
            .where(
                DumpJob.id == claimed.id,
                DumpJob.status == "running",
                DumpJob.attempts == claimed.attempt,
            )
            .values(lease_until=None, **values)
        )


async def run_next(
    sessions: async_sessionmaker[AsyncSession],
    registry: ClusterRegistry,
    settings: ProvisionerSettings,
    store: DumpStore,
) -> bool:
    claimed = await claim(sessions, settings)
    if claimed is None:
        return False
    log.info("dump job", job=str(claimed.id), kind=claimed.kind, attempt=claimed.attempt)
    work = Work(settings, store)
    renewer: asyncio.Task[None] | None = None
    try:
        login = await _login(registry, settings, claimed)
        renewer = asyncio.create_task(_renew(sessions, settings, claimed, work))
        now = datetime.now(UTC)
        if claimed.kind == "export":
            key = export_key(claimed.database.id, claimed.id)
            size = await asyncio.to_thread(run_export, work, login, key)
            await _finish(
                sessions,
                claimed,
                status="done",
                store_key=key,
                size_bytes=size,
                finished_at=now,
                expires_at=datetime.now(UTC) + timedelta(seconds=settings.export_retention_seconds),
            )
        else:
            report, fmt = await asyncio.to_thread(
                run_import,
                work,
                login,
                claimed.database.user_id,
                claimed.store_key,
                claimed.source_key,
            )
            await _finish(
                sessions,
                claimed,
                status="done",
                format=fmt,
                applied=report.applied,
                refused=report.refused,
                refused_count=report.refused_count,
                finished_at=datetime.now(UTC),
            )
    except Failed as exc:
        log.info("dump job failed", job=str(claimed.id), reason=str(exc))
        await _finish(
            sessions, claimed, status="failed", error=str(exc), finished_at=datetime.now(UTC)
        )
    except (ClusterUnavailable, StoreUnavailable, Retry, OSError) as exc:
        # back in the queue for another attempt (attempts are counted at each claim)
        log.warning("dump job interrupted; will retry", job=str(claimed.id), error=repr(exc))
        await _finish(sessions, claimed, status="queued")
    finally:
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
    return True
