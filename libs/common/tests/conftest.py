from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import pytest
from sqlalchemy import Column, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shardz_common.db import make_engine, make_sessionmaker, new_metadata
from shardz_common.outbox import NOTIFY_TRIGGER_SQL, inbox_table, outbox_table
from shardz_common.testing.db import fresh_database

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass
class EventsDb:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    metadata: MetaData
    outbox: Table
    inbox: Table
    applied: Table


@pytest.fixture
async def events_db() -> AsyncIterator[EventsDb]:
    async with fresh_database("shardz_t_events") as url:
        md = new_metadata()
        outbox, inbox = outbox_table(md), inbox_table(md)
        # what a handler changes; no unique key, so a double application would show
        applied = Table("applied", md, Column("event_id", String(64), nullable=False))
        engine = make_engine(url, pool_size=10, max_overflow=10)
        async with engine.begin() as conn:
            await conn.run_sync(md.create_all)
            for stmt in NOTIFY_TRIGGER_SQL:
                await conn.exec_driver_sql(stmt)
        yield EventsDb(engine, make_sessionmaker(engine), md, outbox, inbox, applied)
        await engine.dispose()


@dataclass
class Broker:
    url: str
    exchange: str
    dlx: str
    prefix: str


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    """Exchanges and queues named for this test alone, removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    b = Broker(AMQP_URL, f"test.events.{tag}", f"test.dlx.{tag}", f"test-{tag}")
    yield b
    conn = await aio_pika.connect(AMQP_URL)
    ch = await conn.channel()
    for name in (b.exchange, b.dlx):
        await ch.exchange_delete(name)
    for suffix in ("consumer", "consumer.dead", "failing", "failing.dead"):
        ch = await conn.channel()
        with contextlib.suppress(Exception):
            await ch.queue_delete(f"{b.prefix}.{suffix}")
    await conn.close()
