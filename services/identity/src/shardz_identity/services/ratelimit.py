"""Sliding-window limits on sign-in failures and sign-ups, kept in the database so every
replica sees the same counts.

Each attempt is checked and reserved in one short transaction of its own, serialised per key
by advisory locks and committed before any password is hashed: N parallel attempts cannot all
pass a check that only one of them should pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.errors import RateLimited
from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import LoginFailure, SignupAttempt


async def _lock(session: AsyncSession, *keys: str) -> None:
    # Callers pass keys in one fixed order of kinds (account before address): no deadlock.
    for key in keys:
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def _refuse_if_full(
    session: AsyncSession,
    table: Any,
    where: ColumnElement[bool],
    limit: int,
    window: timedelta,
    what: str,
) -> None:
    since = datetime.now(UTC) - window
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(table.at)).where(where, table.at > since)
        )
    ).one()
    if count >= limit:
        retry = (oldest + window - datetime.now(UTC)).total_seconds()
        raise RateLimited(what, retry_after=max(1, int(retry) + 1))


class LoginLimiter:
    def __init__(
        self, settings: IdentitySettings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.sessions = sessions
        self.window = timedelta(seconds=settings.login_window_seconds)
        self.per_account = settings.login_max_failures_per_account
        self.per_account_all = settings.login_max_failures_per_account_all_addresses
        self.per_address = settings.login_max_failures_per_address

    async def reserve(self, email_key: str, address: str) -> int:
        """Count this attempt as a failure in advance (429 when a limit is full); a successful
        sign-in takes it back with `succeeded`."""
        e, a = LoginFailure.email_key == email_key, LoginFailure.address == address
        what = "too many failed sign-in attempts"
        async with self.sessions.begin() as s:
            await _lock(s, f"login:account:{email_key}", f"login:address:{address}")
            for where, limit in (
                (and_(e, a), self.per_account),
                (e, self.per_account_all),
                (a, self.per_address),
            ):
                await _refuse_if_full(s, LoginFailure, where, limit, self.window, what)
            row = await s.execute(
                insert(LoginFailure)
                .values(email_key=email_key, address=address)
                .returning(LoginFailure.id)
            )
            return int(row.scalar_one())

    async def succeeded(
        self, session: AsyncSession, reservation: int, email_key: str, address: str
    ) -> None:
        """Forget this attempt and this address's earlier failures on the account."""
        await session.execute(
            delete(LoginFailure).where(
                or_(
                    LoginFailure.id == reservation,
                    and_(LoginFailure.email_key == email_key, LoginFailure.address == address),
                )
            )
        )


class SignupLimiter:
    WINDOW = timedelta(hours=1)

    def __init__(
        self, settings: IdentitySettings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.sessions = sessions
        self.limit = settings.signup_max_per_address_per_hour

    async def reserve(self, address: str) -> None:
        async with self.sessions.begin() as s:
            await _lock(s, f"signup:address:{address}")
            await _refuse_if_full(
                s,
                SignupAttempt,
                SignupAttempt.address == address,
                self.limit,
                self.WINDOW,
                "too many sign-ups from this address",
            )
            await s.execute(insert(SignupAttempt).values(address=address))


async def prune(session: AsyncSession, settings: IdentitySettings) -> None:
    """Drop records older than any window that counts them."""
    now = datetime.now(UTC)
    login_cutoff = now - timedelta(seconds=settings.login_window_seconds)
    await session.execute(delete(LoginFailure).where(LoginFailure.at < login_cutoff))
    await session.execute(
        delete(SignupAttempt).where(SignupAttempt.at < now - SignupLimiter.WINDOW)
    )
