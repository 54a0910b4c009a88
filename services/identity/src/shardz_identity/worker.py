from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.worker import Periodic, WorkerSpec
from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import inbox, outbox
from shardz_identity.events.handlers import CONSUMERS
from shardz_identity.services.ratelimit import LoginLimiter


def spec(settings: IdentitySettings | None = None) -> WorkerSpec:
    settings = settings or IdentitySettings()
    limiter = LoginLimiter(settings)

    async def prune_login_failures(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as s, s.begin():
            await limiter.prune(s)

    return WorkerSpec(
        settings=settings,
        outbox=outbox,
        inbox=inbox,
        consumers=CONSUMERS,
        jobs=[Periodic("prune-login-failures", 600, prune_login_failures)],
    )
