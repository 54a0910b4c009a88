from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.worker import Periodic, WorkerSpec
from shardz_storage.config import StorageSettings
from shardz_storage.db.tables import inbox, outbox
from shardz_storage.events.handlers import consumers
from shardz_storage.services import sweeper
from shardz_storage.services.backend import Backend


def spec(settings: StorageSettings | None = None) -> WorkerSpec:
    settings = settings or StorageSettings()
    backend = Backend(settings)

    async def sweep(sessions: async_sessionmaker[AsyncSession]) -> None:
        await sweeper.sweep(sessions, backend, settings)

    async def orphans(sessions: async_sessionmaker[AsyncSession]) -> None:
        await sweeper.sweep_orphans(sessions, backend, settings)

    async def usage(sessions: async_sessionmaker[AsyncSession]) -> None:
        await sweeper.report_usage(sessions)

    return WorkerSpec(
        settings=settings,
        outbox=outbox,
        inbox=inbox,
        consumers=consumers(settings),
        on_shutdown=backend.close,
        jobs=[
            Periodic("sweep", settings.sweep_interval_seconds, sweep),
            Periodic("orphans", settings.orphan_scan_interval_seconds, orphans),
            Periodic("report-usage", settings.usage_report_interval_seconds, usage),
        ],
    )
