"""Failed-login limits per account and per client address, kept in the database so every
replica sees the same counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.errors import RateLimited
from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import LoginFailure


class LoginLimiter:
    def __init__(self, settings: IdentitySettings) -> None:
        self.window = timedelta(seconds=settings.login_window_seconds)
        self.per_account = settings.login_max_failures_per_account
        self.per_address = settings.login_max_failures_per_address

    async def check(self, session: AsyncSession, email_key: str, address: str) -> None:
        since = datetime.now(UTC) - self.window
        for column, value, limit in (
            (LoginFailure.email_key, email_key, self.per_account),
            (LoginFailure.address, address, self.per_address),
        ):
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(LoginFailure.at)).where(
                        column == value, LoginFailure.at > since
                    )
                )
            ).one()
            if count >= limit:
                retry = (oldest + self.window - datetime.now(UTC)).total_seconds()
                raise RateLimited("too many failed sign-in attempts", retry_after=int(retry) + 1)

    def record_failure(self, session: AsyncSession, email_key: str, address: str) -> None:
        session.add(LoginFailure(email_key=email_key, address=address))

    async def clear(self, session: AsyncSession, email_key: str) -> None:
        await session.execute(delete(LoginFailure).where(LoginFailure.email_key == email_key))

    async def prune(self, session: AsyncSession) -> None:
        cutoff = datetime.now(UTC) - self.window
        await session.execute(delete(LoginFailure).where(LoginFailure.at < cutoff))
