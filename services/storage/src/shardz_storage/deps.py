from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_storage.config import StorageSettings
from shardz_storage.services.backend import Backend

# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its
# thread pool, a thread hop per dependency per request (a tenth of a small PUT's time).


async def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


async def _pool(request: Request) -> AsyncConnectionPool[AsyncConnection]:
    """The plain psycopg pool in autocommit mode, for the one-statement steps of uploads."""
    pool: AsyncConnectionPool[AsyncConnection] = request.app.state.read_pool
    return pool


async def _settings(request: Request) -> StorageSettings:
    settings: StorageSettings = request.app.state.settings
    return settings


BackendDep = Annotated[Backend, Depends(_backend)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
SettingsDep = Annotated[StorageSettings, Depends(_settings)]
PoolDep = Annotated[AsyncConnectionPool[AsyncConnection], Depends(_pool)]
