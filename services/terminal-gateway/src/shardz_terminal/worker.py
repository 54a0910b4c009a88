from __future__ import annotations

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.worker import Periodic, WorkerSpec
from shardz_terminal.config import TerminalSettings
from shardz_terminal.db.tables import inbox, outbox
from shardz_terminal.events.handlers import CONSUMERS
from shardz_terminal.services import history


def spec(settings: TerminalSettings | None = None) -> WorkerSpec:
    settings = settings or TerminalSettings()
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    async def purge_history(_: async_sessionmaker[AsyncSession]) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await history.purge(conn, settings.history_retention_days)
            # rows of sessions whose process died long ago (the cap ignores them already)
            await conn.execute(
                "DELETE FROM sessions WHERE heartbeat_at < now() - make_interval(secs => %s)",
                (settings.session_lease_seconds * 10,),
            )

    return WorkerSpec(
        settings=settings,
        outbox=outbox,
        inbox=inbox,
        consumers=CONSUMERS,
        jobs=[Periodic("purge-history", settings.history_purge_interval_seconds, purge_history)],
    )
