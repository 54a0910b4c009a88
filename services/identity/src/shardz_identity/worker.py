from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.worker import Periodic, WorkerSpec
from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import inbox, outbox
from shardz_identity.events.handlers import CONSUMERS
from shardz_identity.services import oauth, ratelimit


def spec(settings: IdentitySettings | None = None) -> WorkerSpec:
    settings = settings or IdentitySettings()

    async def prune_abuse_records(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as s, s.begin():
            await ratelimit.prune(s, settings)
            await oauth.prune_states(s, settings)

    return WorkerSpec(
        settings=settings,
        outbox=outbox,
        inbox=inbox,
        consumers=CONSUMERS,
        jobs=[Periodic("prune-abuse-records", 600, prune_abuse_records)],
    )
