"""Removes dumps from the dumps bucket once nobody may need them: exports past their
retention (or of a database that is gone), the bodies of finished imports, and uploads whose
API process died before the job was queued. The row is the intent: its object is deleted
first, then `store_key` cleared, so a crash in between only repeats an idempotent delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Database, DumpJob
from shardz_provisioner.services.dumpstore import DumpStore, StoreUnavailable

log = structlog.get_logger(__name__)


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    settings: ProvisionerSettings,
    store: DumpStore,
    batch: int = 100,
) -> int:
    now = datetime.now(UTC)
    stale_upload = now - timedelta(seconds=settings.import_receive_timeout_seconds)
    async with sessions() as s, s.begin():
        rows = (
            await s.execute(
                select(DumpJob)
                .join(Database, Database.id == DumpJob.database_id)
                .where(
                    DumpJob.store_key.is_not(None),
                    or_(
                        DumpJob.expires_at < now,
                        Database.status.in_(("deleting", "deleted")),
                        (DumpJob.kind == "import") & DumpJob.status.in_(("done", "failed")),
                        (DumpJob.kind == "export") & (DumpJob.status == "failed"),
                        (DumpJob.status == "receiving") & (DumpJob.created_at < stale_upload),
                    ),
                )
                .order_by(DumpJob.created_at)
                .limit(batch)
                .with_for_update(of=DumpJob, skip_locked=True)
            )
        ).scalars()
        removed = 0
        for job in rows:
            if job.status == "running":
                continue  # its worker still reads it; next time
            assert job.store_key is not None
            try:
                await asyncio.to_thread(store.delete, job.store_key)
            except StoreUnavailable:
                log.warning("dump removal deferred", job=str(job.id))
                continue
            job.store_key = None
            if job.status == "receiving":
                job.status, job.error = "failed", "the upload did not complete"
                job.finished_at = now
            if job.kind == "export" and (job.expires_at is None or job.expires_at > now):
                job.expires_at = now  # its database is gone: so is the export
            removed += 1
    return removed
