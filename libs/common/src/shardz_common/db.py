"""Async SQLAlchemy on psycopg 3: one engine per process, one transaction per unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shardz_common.errors import ProblemError

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING)


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=False,
        pool_recycle=1800,
        # errors and logs never carry bound values (password hashes, e-mails, verifiers)
        hide_parameters=True,
        connect_args={"connect_timeout": 5},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


def make_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same pool in autocommit mode (a client-side psycopg switch)."""
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(autocommit, expire_on_commit=False, autoflush=False)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work. Scope "function": it commits before the response is sent,
    so a 2xx never hides a failed commit; an error rolls back unless it asks to commit."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        except ProblemError as exc:
            if exc.commit:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For read-only requests: an autocommit session, so a read costs one round trip
    (no BEGIN/COMMIT); each statement sees committed data."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with maker() as session:
        yield session


def make_read_pool(url: str, size: int) -> AsyncConnectionPool[AsyncConnection]:
    """A plain psycopg pool in autocommit mode for the hottest single-row reads, where the
    ORM session and SQLAlchemy's pool cost more than the query (see README, Performance)."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        open=False,
        kwargs={"autocommit": True, "connect_timeout": 5},
    )


def read_connection(request: Request) -> AbstractAsyncContextManager[AsyncConnection]:
    """`async with read_connection(request) as conn:` (a plain context manager rather than a
    generator dependency, which costs about a tenth of a hot read)."""
    pool: AsyncConnectionPool[AsyncConnection] = request.app.state.read_pool
    return pool.connection(timeout=5)


SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]

ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]
