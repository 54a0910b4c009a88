"""Event consumers: one durable quorum queue each, inbox de-duplication, ack after commit.

A handler runs inside a transaction that also records the CloudEvent id in the inbox, so a
redelivered event changes nothing. A failing handler's message is requeued; after the
queue's delivery limit the broker dead-letters it to `<queue>.dead`. A message that cannot
be parsed goes to the dead-letter queue at once.

Messages already delivered (up to the prefetch) are applied together: one transaction with
one multi-row inbox insert, then each fresh event's handler, then the acks. Nothing waits
to fill a batch, so at a low rate a batch is one message. If any handler of a batch fails,
the batch rolls back and its messages are replayed one by one, so requeue, the delivery
limit and dead-lettering behave per message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from opentelemetry import trace
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy import Table, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.events.base import CloudEvent, Event
from shardz_common.telemetry import extract_context, tracer

log = structlog.get_logger(__name__)
HANDLED = Counter("events_handled_total", "Events handled", ["consumer", "outcome"])
current_event: ContextVar[CloudEvent | None] = ContextVar("current_event", default=None)
FLUSHERS = 2  # transactions in flight per queue, so commits overlap
MAX_BATCH = 100

E = TypeVar("E", bound=Event)
Handler = Callable[[E, AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class Consumer(Generic[E]):
    name: str
    model: type[E]
    handler: Handler[E]

    @property
    def routing_key(self) -> str:
        return self.model.event_type


def consumer(name: str, model: type[E]) -> Callable[[Handler[E]], Consumer[E]]:
    """Declare a handler of `model` events fed by the durable queue `name`."""

    def wrap(fn: Handler[E]) -> Consumer[E]:
        return Consumer(name=name, model=model, handler=fn)

    return wrap


async def _ack(message: AbstractIncomingMessage) -> None:
    """Queue the ack frame without waiting for the socket to drain (nothing to wait for:
    a lost ack only means a redelivery, which the inbox absorbs)."""
    tag = message.delivery_tag
    if tag is not None:
        await message.channel.basic_ack(delivery_tag=tag, wait=False)


def queue_arguments(name: str, dead_letter_exchange: str, delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": dead_letter_exchange,
        "x-dead-letter-routing-key": name,
        # at-least-once dead-lettering: a poison message is never silently dropped
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_queues(
    channel: Any,
    consumers: Sequence[Consumer[Any]],
    exchange_name: str,
    dead_letter_exchange: str,
    delivery_limit: int,
) -> list[Any]:
    """The exchanges, each consumer's queue and dead-letter queue, and their bindings. Run by
    `migrate` too, so events published before the first worker starts are kept."""
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(
        dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    queues = []
    for c in consumers:
        dead = await channel.declare_queue(
            f"{c.name}.dead", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(dlx, routing_key=c.name)
        queue = await channel.declare_queue(
            c.name,
            durable=True,
            arguments=queue_arguments(c.name, dead_letter_exchange, delivery_limit),
        )
        await queue.bind(exchange, routing_key=c.routing_key)
        queues.append(queue)
    return queues


class ConsumerRunner:
    def __init__(
        self,
        consumers: Sequence[Consumer[Any]],
        sessionmaker: async_sessionmaker[AsyncSession],
        inbox: Table,
        *,
        amqp_url: str,
        exchange: str,
        dead_letter_exchange: str,
        prefetch: int = 256,
        delivery_limit: int = 5,
    ) -> None:
        self.consumers = consumers
        self.sessionmaker = sessionmaker
        self.inbox = inbox
        self.amqp_url = amqp_url
        self.exchange = exchange
        self.dead_letter_exchange = dead_letter_exchange
        self.prefetch = prefetch
        self.delivery_limit = delivery_limit
        self.connection: AbstractRobustConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._batch_insert = text(
            f"INSERT INTO {inbox.name} (consumer, event_id)"
            " SELECT :consumer, unnest(CAST(:ids AS text[]))"
            " ON CONFLICT DO NOTHING RETURNING event_id"
        )

    async def start(self) -> None:
        """Connect (retrying until the broker answers: a worker may start before it), declare
        the queues and start consuming."""
        delay = 0.5
        while True:
            try:
                self.connection = await aio_pika.connect_robust(self.amqp_url, reconnect_interval=1)
                break
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                log.warning("broker not reachable yet; retrying", error=repr(exc), in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        queues = await declare_queues(
            channel, self.consumers, self.exchange, self.dead_letter_exchange, self.delivery_limit
        )
        for c, queue in zip(self.consumers, queues, strict=True):
            await queue.consume(self._callback(c))
            log.info("consuming", queue=c.name, routing_key=c.routing_key)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()

    def _callback(self, c: Consumer[Any]) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        buffer: list[AbstractIncomingMessage] = []
        ready = asyncio.Event()

        async def flusher() -> None:
            while True:
                await ready.wait()
                while buffer:
                    batch = buffer[:MAX_BATCH]
                    del buffer[: len(batch)]
                    try:
                        await self.handle_batch(c, batch)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # e.g. the channel closed under us: the
                        # broker redelivers whatever was not acked
                        log.warning("batch abandoned", queue=c.name, error=repr(exc))
                ready.clear()

        self._tasks += [asyncio.create_task(flusher()) for _ in range(FLUSHERS)]

        async def on_message(message: AbstractIncomingMessage) -> None:
            buffer.append(message)
            ready.set()

        return on_message

    async def handle_batch(self, c: Consumer[Any], batch: list[AbstractIncomingMessage]) -> None:
        if len(batch) == 1:
            await self.handle(c, batch[0])
            return
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
                # One constant statement whatever the batch size: compiled once, prepared
                # by psycopg.
                rows = await session.execute(
                    self._batch_insert, {"consumer": c.name, "ids": [ce.id for _, ce, _ in parsed]}
                )
                fresh = set(rows.scalars().all())
                for message, ce, event in parsed:
                    if ce.id not in fresh:
                        continue
                    fresh.discard(ce.id)  # the same id twice in one batch runs once
                    ctx = extract_context(message.headers or {})
                    token = current_event.set(ce)
                    try:
                        with tracer.start_as_current_span(
                            f"{c.name} process", context=ctx, kind=trace.SpanKind.CONSUMER
                        ):
                            await c.handler(event, session)
                    finally:
                        current_event.reset(token)
                    applied += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("batch failed; replaying one by one", queue=c.name, size=len(parsed))
            for message, _, _ in parsed:
                await self.handle(c, message)
            return
        HANDLED.labels(c.name, "applied").inc(applied)
        self.after_commit([ce.id for _, ce, _ in parsed])
        if len(parsed) > applied:
            HANDLED.labels(c.name, "duplicate").inc(len(parsed) - applied)
        for message, _, _ in parsed:
            await _ack(message)

    async def handle(self, c: Consumer[Any], message: AbstractIncomingMessage) -> None:
        try:
            ce = CloudEvent.model_validate_json(message.body)
            event = c.model.model_validate(ce.data)
        except ValidationError as exc:
            log.error("malformed event dead-lettered", queue=c.name, errors=exc.error_count())
            HANDLED.labels(c.name, "malformed").inc()
            await message.reject(requeue=False)
            return
        ctx = extract_context(message.headers or {})
        with tracer.start_as_current_span(
            f"{c.name} process", context=ctx, kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.message.id", ce.id)
            try:
                fresh = await self.apply(c, ce, event)
            except asyncio.CancelledError:
                raise
            except Exception:
                count = (message.headers or {}).get("x-delivery-count", 0)
                attempts = count if isinstance(count, int) else 0
                log.exception(
                    "handler failed; requeued", queue=c.name, event_id=ce.id, attempts=attempts
                )
                HANDLED.labels(c.name, "failed").inc()
                # back off before handing it back, so a short outage (a database restart)
                # does not burn through the delivery limit in milliseconds; the wait is its
                # own task, so the queue's flushers go on with the other messages meanwhile
                self._later(min(0.25 * 2**attempts, 8.0), lambda: message.nack(requeue=True))
                return
        HANDLED.labels(c.name, "applied" if fresh else "duplicate").inc()
        self.after_commit([ce.id])
        await message.ack()

    def _later(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await action()

        task = asyncio.create_task(run())
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            # e.g. the channel closed meanwhile: the broker redelivers the message anyway
            log.warning("delayed requeue failed", error=repr(task.exception()))

    def after_commit(self, event_ids: list[str]) -> None:
        """Called once the events' transaction committed (an observer hook, e.g. benches)."""

    async def apply(self, c: Consumer[Any], ce: CloudEvent, event: Event) -> bool:
        """Run the handler once per event id; returns False for a duplicate."""
        async with self.sessionmaker() as session, session.begin():
            first = await session.execute(
                insert(self.inbox)
                .values(consumer=c.name, event_id=ce.id)
                .on_conflict_do_nothing()
                .returning(self.inbox.c.event_id)
            )
            if first.first() is None:
                return False
            token = current_event.set(ce)
            try:
                await c.handler(event, session)
            finally:
                current_event.reset(token)
            return True


def event_time() -> datetime:
    """When the event being handled happened (its CloudEvent `time`), for handlers that must
    not let an older event undo a newer one: queues do not keep order across event types."""
    ce = current_event.get()
    if ce is None or ce.time is None:
        return datetime.now(UTC)
    return ce.time if ce.time.tzinfo else ce.time.replace(tzinfo=UTC)
