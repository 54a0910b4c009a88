"""The outbox relay: publishes committed outbox rows with publisher confirms.

Rows are claimed with FOR UPDATE SKIP LOCKED (several relays may run), published
persistent and mandatory, and marked sent only after the broker confirmed them. A broker
outage leaves rows unsent; they go out when it is back. Duplicates are possible after a
crash between confirm and commit; consumers de-duplicate on the CloudEvent id."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import psycopg
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq import spec
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from prometheus_client import Counter
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shardz_common.events.base import CONTENT_TYPE
from shardz_common.outbox import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)
PUBLISHED = Counter("outbox_published_total", "Outbox events published", ["type"])


def libpq_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        amqp_url: str,
        exchange: str,
        *,
        batch_size: int = 500,
        idle_poll_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self._wake = asyncio.Event()

    async def run(self) -> None:
        connection = await _connect(self.amqp_url)
        listener = asyncio.create_task(self._listen())
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            backoff = 0.2
            while True:
                self._wake.clear()
                try:
                    sent = await self.publish_batch(channel, exchange)
                    backoff = 0.2
                except Exception as exc:  # broker or database away: keep rows, retry
                    log.warning("outbox relay retrying", error=repr(exc), backoff=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if sent >= self.batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll_seconds)
        finally:
            listener.cancel()
            await connection.close()

    async def publish_batch(self, channel: AbstractChannel, exchange: AbstractExchange) -> int:
        o = self.outbox
        async with self.engine.connect() as conn, conn.begin():
            rows = (
                await conn.execute(
                    select(o.c.id, o.c.type, o.c.body, o.c.traceparent)
                    .where(o.c.sent_at.is_(None))
                    .order_by(o.c.created_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            # Frames are queued without waiting for each drain, so the batch is pipelined;
            # one deadline covers all the confirms.
            underlay = await channel.get_underlay_channel()
            async with asyncio.timeout(10):
                results = await asyncio.gather(
                    *(self._publish(underlay, exchange.name, row) for row in rows),
                    return_exceptions=True,
                )
            done = {row.id for row, res in zip(rows, results, strict=True) if res is True}
            failed = [row.id for row, res in zip(rows, results, strict=True) if res is not True]
            if done:
                await conn.execute(update(o).where(o.c.id.in_(done)).values(sent_at=func.now()))
            if failed:
                await conn.execute(
                    update(o).where(o.c.id.in_(failed)).values(attempts=o.c.attempts + 1)
                )
        for row in rows:
            if row.id in done:
                PUBLISHED.labels(row.type).inc()
        if failed:
            first = next(r for r in results if r is not True)
            raise RuntimeError(f"{len(failed)} events not confirmed: {first!r}")
        return len(rows)

    async def _publish(self, channel: Any, exchange: str, row: Any) -> bool:
        headers = {"traceparent": row.traceparent} if row.traceparent else {}
        properties = spec.Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=2,  # persistent
            message_id=str(row.id),
            message_type=row.type,
            headers=headers,
        )
        result = await channel.basic_publish(
            row.body.encode(),
            exchange=exchange,
            routing_key=row.type,
            properties=properties,
            mandatory=True,
            wait=False,
        )
        if isinstance(result, DeliveredMessage):
            # Returned: no queue is bound for this type yet. The broker confirmed it;
            # nobody is subscribed, which is not the relay's failure to fix.
            log.info("event unroutable", type=row.type, id=str(row.id))
            return True
        return not isinstance(result, Basic.Nack | Basic.Reject)

    async def _listen(self) -> None:
        """Wake the publish loop when an outbox insert commits (NOTIFY from a trigger)."""
        dsn = libpq_dsn(self.engine.url.render_as_string(hide_password=False))
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # catch up on anything committed while not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox listener reconnecting", error=repr(exc))
                await asyncio.sleep(1)


async def _connect(url: str) -> AbstractRobustConnection:
    delay = 0.5
    while True:
        try:
            return await aio_pika.connect_robust(url, reconnect_interval=1)
        except Exception as exc:
            log.warning("broker unreachable, retrying", error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)
