"""Prototype of a batched ConsumerRunner (a proposed change to shardz_common.consumers).

Messages that are already delivered (up to the prefetch) are handled in ONE transaction:
one multi-row inbox INSERT ... ON CONFLICT DO NOTHING RETURNING, then each fresh event's
handler, then the acks. Nothing waits to fill a batch, so at a low rate a batch is one
message and latency is unchanged. If any handler fails, the batch is rolled back and its
messages are replayed one by one through the unchanged per-message path (requeue, delivery
limit, dead letters behave as before)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert

from shardz_common.consumers import HANDLED, Consumer, consumer, log  # noqa: F401
from shardz_common.consumers import ConsumerRunner as _Base
from shardz_common.events.base import CloudEvent
from shardz_common.relay import OutboxRelay  # noqa: F401  (unchanged)
from shardz_common.telemetry import extract_context, tracer

FLUSHERS = 4  # transactions in flight per queue, so commits (fsync) overlap
MAX_BATCH = 100


class ConsumerRunner(_Base):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: list[asyncio.Task[None]] = []

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await super().close()

    def after_commit(self, event_ids: list[str]) -> None:
        """Hook for the benchmark."""

    def _callback(self, c: Consumer[Any]) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        buffer: list[AbstractIncomingMessage] = []
        ready = asyncio.Event()

        async def flusher() -> None:
            while True:
                await ready.wait()
                while buffer:
                    batch = buffer[:MAX_BATCH]
                    del buffer[: len(batch)]
                    await self.handle_batch(c, batch)
                ready.clear()

        self._tasks += [asyncio.create_task(flusher()) for _ in range(FLUSHERS)]

        async def on_message(message: AbstractIncomingMessage) -> None:
            buffer.append(message)
            ready.set()

        return on_message

    async def handle_batch(self, c: Consumer[Any], batch: list[AbstractIncomingMessage]) -> None:
        parsed = []
        for message in batch:
            try:
                ce = CloudEvent.model_validate_json(message.body)
                parsed.append((message, ce, c.model.model_validate(ce.data)))
            except ValidationError as exc:
                log.error("malformed event dead-lettered", queue=c.name, errors=exc.error_count())
                HANDLED.labels(c.name, "malformed").inc()
                await message.reject(requeue=False)
        if not parsed:
            return
        applied = 0
        try:
            async with self.sessionmaker() as session, session.begin():
                rows = await session.execute(
                    insert(self.inbox)
                    .values([{"consumer": c.name, "event_id": ce.id} for _, ce, _ in parsed])
                    .on_conflict_do_nothing()
                    .returning(self.inbox.c.event_id)
                )
                fresh = set(rows.scalars().all())
                for message, ce, event in parsed:
                    if ce.id not in fresh:
                        continue
                    fresh.discard(ce.id)  # the same id twice in one batch runs once
                    ctx = extract_context(message.headers or {})
                    with tracer.start_as_current_span(
                        f"{c.name} process", context=ctx, kind=trace.SpanKind.CONSUMER
                    ) as span:
                        span.set_attribute("messaging.message.id", ce.id)
                        await c.handler(event, session)
                    applied += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("batch failed; replaying one by one", queue=c.name, size=len(parsed))
            for message, _, _ in parsed:
                await self.handle(c, message)
            return
        self.after_commit([ce.id for _, ce, _ in parsed])
        HANDLED.labels(c.name, "applied").inc(applied)
        if len(parsed) > applied:
            HANDLED.labels(c.name, "duplicate").inc(len(parsed) - applied)
        for message, _, _ in parsed:
            await message.ack()
