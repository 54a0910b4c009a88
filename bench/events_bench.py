"""(b) Events: outbox commit -> consumer handled (real OutboxRelay + ConsumerRunner) vs raw
aio-pika publish-with-confirm -> consume on a quorum queue, in the same run.

Writer, relay and consumer share this process (as the floor's publisher and consumer do);
times are time.perf_counter() in one process. "handled" is when the consumer's transaction
(inbox row + handler) has committed, just before the ack."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from common import Row, percentile, print_table

AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672/"
RATE = 200  # events/s for the latency run
LATENCY_SECONDS = 5
THROUGHPUT_N = 10_000
TXN_SIZE = 100


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    events_per_s: float
    n_latency: int


class Tracker:
    """Start and end times by id; wakes a waiter when `target` ends were recorded."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.target = 0
        self.reached = asyncio.Event()

    def done(self, key: str) -> None:
        self.end[key] = time.perf_counter()
        if len(self.end) >= self.target:
            self.reached.set()

    def expect(self, n: int) -> None:
        self.end.clear()
        self.start.clear()
        self.target = n
        self.reached.clear()

    def latencies_ms(self) -> list[float]:
        return [(self.end[k] - t) * 1000 for k, t in self.start.items() if k in self.end]


async def paced(n: int, rate: float, send: Callable[[], Awaitable[None]]) -> None:
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send()


async def measure(
    tracker: Tracker,
    send_one: Callable[[], Awaitable[None]],
    send_burst: Callable[[int], Awaitable[None]],
) -> Figures:
    # warm-up: connections, pools, statement caches
    tracker.expect(50)
    await paced(50, RATE, send_one)
    await asyncio.wait_for(tracker.reached.wait(), 30)

    n = RATE * LATENCY_SECONDS
    tracker.expect(n)
    await paced(n, RATE, send_one)
    await asyncio.wait_for(tracker.reached.wait(), 30)
    lat = tracker.latencies_ms()

    tracker.expect(THROUGHPUT_N)
    t0 = time.perf_counter()
    await send_burst(THROUGHPUT_N)
    await asyncio.wait_for(tracker.reached.wait(), 120)
    elapsed = time.perf_counter() - t0
    return Figures(percentile(lat, 50), percentile(lat, 99), THROUGHPUT_N / elapsed, len(lat))


# ---------------------------------------------------------------- the platform pipeline


async def platform(amqp_url: str, tag: str) -> Figures:
    from sqlalchemy import Column, String, Table
    from sqlalchemy.ext.asyncio import AsyncSession

    from shardz_common.consumers import ConsumerRunner, consumer
    from shardz_common.db import make_engine, make_sessionmaker, new_metadata
    from shardz_common.events import UserCreated
    from shardz_common.outbox import NOTIFY_TRIGGER_SQL, add_event, inbox_table, outbox_table
    from shardz_common.relay import OutboxRelay
    from shardz_common.testing.db import fresh_database

    tracker = Tracker()

    class TimedRunner(ConsumerRunner):
        def after_commit(self, event_ids: list[str]) -> None:
            for eid in event_ids:
                tracker.done(eid)

    async with fresh_database("shardz_bench_events") as url:
        md = new_metadata()
        outbox, inbox = outbox_table(md), inbox_table(md)
        Table("applied", md, Column("event_id", String(64), nullable=False))
        # the API process and the worker process would each have their own pool
        writer_engine = make_engine(url)
        worker_engine = make_engine(url)
        async with writer_engine.begin() as conn:
            await conn.run_sync(md.create_all)
            for stmt in NOTIFY_TRIGGER_SQL:
                await conn.exec_driver_sql(stmt)
        writer = make_sessionmaker(writer_engine)

        @consumer(f"bench-{tag}.consumer", UserCreated)
        async def handle(event: UserCreated, session: AsyncSession) -> None:
            return None  # the pipeline's own cost: parse, inbox row, transaction, ack

        runner = TimedRunner(
            [handle],
            make_sessionmaker(worker_engine),
            inbox,
            amqp_url=amqp_url,
            exchange=f"bench.events.{tag}",
            dead_letter_exchange=f"bench.dlx.{tag}",
        )
        await runner.start()
        relay = OutboxRelay(worker_engine, outbox, amqp_url, f"bench.events.{tag}")
        relay_task = asyncio.create_task(relay.run())

        def event() -> Any:
            uid = uuid.uuid4()
            return UserCreated(user_id=uid, email=f"{uid.hex[:12]}@example.com")

        async def send_one() -> None:
            async with writer() as s, s.begin():
                eid = add_event(s, outbox, event(), source="bench")
            tracker.start[str(eid)] = time.perf_counter()

        async def send_burst(n: int) -> None:
            for _ in range(0, n, TXN_SIZE):
                async with writer() as s, s.begin():
                    ids = [add_event(s, outbox, event(), source="bench") for _ in range(TXN_SIZE)]
                now = time.perf_counter()
                tracker.start.update((str(i), now) for i in ids)

        try:
            return await measure(tracker, send_one, send_burst)
        finally:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay_task
            await runner.close()
            await _delete_queues(amqp_url, [f"bench-{tag}.consumer", f"bench-{tag}.consumer.dead"])
            await writer_engine.dispose()
            await worker_engine.dispose()


async def _delete_queues(amqp_url: str, names: list[str]) -> None:
    """A left-over bound queue would keep taking copies of the next run's events."""
    conn = await aio_pika.connect(amqp_url)
    try:
        for name in names:
            with contextlib.suppress(Exception):
                await (await conn.channel()).queue_delete(name)
    finally:
        await conn.close()


# ---------------------------------------------------------------- the raw floor


async def floor(amqp_url: str, tag: str) -> Figures:
    tracker = Tracker()
    pub_conn = await aio_pika.connect_robust(amqp_url)
    sub_conn = await aio_pika.connect_robust(amqp_url)
    try:
        pub = await pub_conn.channel(publisher_confirms=True)
        exchange = await pub.declare_exchange(
            f"floor.events.{tag}", aio_pika.ExchangeType.TOPIC, durable=True
        )
        sub = await sub_conn.channel()
        await sub.set_qos(prefetch_count=64)
        queue = await sub.declare_queue(
            f"floor-{tag}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(f"floor.events.{tag}", routing_key="user.created")

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            tracker.done(message.message_id or "")

        await queue.consume(on_message)

        def message() -> tuple[str, aio_pika.Message]:
            mid = str(uuid.uuid4())
            body = b'{"specversion":"1.0","type":"user.created","data":{"email":"x@example.com"}}'
            return mid, aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=mid
            )

        async def send_one() -> None:
            mid, msg = message()
            tracker.start[mid] = time.perf_counter()
            await exchange.publish(msg, routing_key="user.created", mandatory=True)

        async def send_burst(n: int) -> None:
            msgs = [message() for _ in range(n)]
            now = time.perf_counter()
            tracker.start.update((mid, now) for mid, _ in msgs)
            await asyncio.gather(
                *(exchange.publish(m, routing_key="user.created", mandatory=True) for _, m in msgs)
            )

        return await measure(tracker, send_one, send_burst)
    finally:
        await pub_conn.close()
        await sub_conn.close()
        await _delete_queues(amqp_url, [f"floor-{tag}"])


# ---------------------------------------------------------------- entry


async def _run() -> tuple[Figures, Figures]:
    from shardz_devstack import rabbit

    tag = uuid.uuid4().hex[:8]
    vhost = f"shardz-bench-{tag}"
    await asyncio.to_thread(rabbit.add_vhost, vhost)  # all queues/exchanges go with it
    amqp_url = rabbit.amqp_url("127.0.0.1", 5672, vhost)
    try:
        fl = await floor(amqp_url, tag)
        ours = await platform(amqp_url, f"{tag}a")
    finally:
        await asyncio.to_thread(rabbit.delete_vhost, vhost)
    return ours, fl


def run() -> list[Row]:
    import uvloop  # as the services run

    ours, fl = uvloop.run(_run())
    rows = [
        [name, f"{f.p50_ms:.2f}", f"{f.p99_ms:.2f}", f"{f.events_per_s:,.0f}", str(f.n_latency)]
        for name, f in (
            ("platform: outbox commit -> relay -> consumer committed", ours),
            ("floor: aio-pika publish+confirm -> consume (quorum)", fl),
        )
    ]
    print_table(
        f"events: latency at {RATE}/s for {LATENCY_SECONDS}s (single-event txns); "
        f"throughput {THROUGHPUT_N:,} events in txns of {TXN_SIZE}",
        ["", "p50 ms", "p99 ms", "events/s", "latency samples"],
        rows,
    )
    print(
        f"ratios: p50 floor/ours {fl.p50_ms / ours.p50_ms:.2f}, p99 floor/ours "
        f"{fl.p99_ms / ours.p99_ms:.2f}, "
        f"throughput ours/floor {ours.events_per_s / fl.events_per_s:.2f}"
    )
    print(
        f"goals: p50 <= 5 ms {'OK' if ours.p50_ms <= 5 else 'MISSED'}; "
        f">= 2,000 events/s {'OK' if ours.events_per_s >= 2000 else 'MISSED'}"
    )
    return [
        Row("event commit -> handled p50", ours.p50_ms, fl.p50_ms, "ms", "<= 5 ms", False),
        Row("event commit -> handled p99", ours.p99_ms, fl.p99_ms, "ms", "-", False),
        Row(
            "events/s (10k in txns of 100)",
            ours.events_per_s,
            fl.events_per_s,
            "events/s",
            ">= 2,000/s",
        ),
    ]
