"""A service's worker process: consumers, the outbox relay and periodic jobs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from sqlalchemy import Table, delete, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shardz_common.consumers import Consumer, ConsumerRunner, declare_queues
from shardz_common.db import make_engine, make_sessionmaker
from shardz_common.jobs import claim_run
from shardz_common.logging import configure_logging
from shardz_common.relay import OutboxRelay
from shardz_common.settings import ServiceSettings
from shardz_common.telemetry import configure_tracing
from shardz_common.unroutable import declare_unroutable

log = structlog.get_logger(__name__)

Job = Callable[[async_sessionmaker[AsyncSession]], Awaitable[None]]
DELIVERY_LIMIT = 5  # a queue's arguments: `migrate` and the worker must declare the same


@dataclass
class Periodic:
    name: str
    every_seconds: float
    job: Job
    # once per interval across every replica of the worker (needs WorkerSpec.job_runs)
    singleton: bool = False


@dataclass
class WorkerSpec:
    settings: ServiceSettings
    outbox: Table
    inbox: Table
    consumers: Sequence[Consumer[Any]] = ()
    jobs: Sequence[Periodic] = field(default_factory=list)
    on_shutdown: Callable[[], Awaitable[None]] | None = None
    # runs once before any consumer or job starts (e.g. load what handlers need)
    on_start: Job | None = None
    # the service's `job_runs` table (shardz_common.jobs.job_runs_table), for singleton jobs
    job_runs: Table | None = None
    # further tables or views shaped like the outbox (id, type, body, traceparent,
    # created_at, sent_at, attempts) whose rows are events too, each with its own relay
    extra_outboxes: Sequence[Table] = ()


async def _every(
    spec: Periodic, sessions: async_sessionmaker[AsyncSession], job_runs: Table | None
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            if not spec.singleton:
                await spec.job(sessions)
            elif job_runs is None:
                raise RuntimeError(f"{spec.name} is a singleton job but the spec has no job_runs")
            elif await claim_run(sessions, job_runs, spec.name, spec.every_seconds):
                await spec.job(sessions)
        except Exception:
            log.exception("periodic job failed", job=spec.name)
        # a fixed rate, not a fixed pause: "hourly" stays hourly however long the job ran
        await asyncio.sleep(max(0.0, spec.every_seconds - (loop.time() - started)))


def _cleanup_job(outbox: Table, inbox: Table) -> Periodic:
    async def cleanup(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as s, s.begin():
            await s.execute(
                delete(outbox).where(outbox.c.sent_at < text("now() - interval '3 days'"))
            )
            await s.execute(
                delete(inbox).where(inbox.c.received_at < text("now() - interval '14 days'"))
            )

    return Periodic("outbox-inbox-cleanup", 3600, cleanup)


async def declare_topology(spec: WorkerSpec) -> None:
    """The exchanges, the unroutable-events queue and this service's queues and bindings (the
    `migrate` step), so events sent before a worker first runs wait for it."""
    p = spec.settings.platform
    connection = await aio_pika.connect(p.amqp_url, timeout=30)
    try:
        channel = await connection.channel()
        await declare_unroutable(channel)
        await declare_queues(
            channel, spec.consumers, p.events_exchange, p.dead_letter_exchange, DELIVERY_LIMIT
        )
    finally:
        await connection.close()


async def run_worker(spec: WorkerSpec) -> None:
    s = spec.settings
    configure_logging(f"{s.service_name}-worker", s.platform.log_level)
    configure_tracing(f"{s.service_name}-worker", s.platform.otlp_endpoint)
    engine: AsyncEngine = make_engine(s.database_url, s.db_pool_size, s.db_max_overflow)
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(engine, spec.outbox, s.platform.amqp_url, s.platform.events_exchange)
    runner = ConsumerRunner(
        spec.consumers,
        sessions,
        spec.inbox,
        amqp_url=s.platform.amqp_url,
        exchange=s.platform.events_exchange,
        dead_letter_exchange=s.platform.dead_letter_exchange,
        delivery_limit=DELIVERY_LIMIT,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if spec.on_start is not None:
        await spec.on_start(sessions)
    tasks = [asyncio.create_task(relay.run(), name="outbox-relay")]
    for extra in spec.extra_outboxes:
        extra_relay = OutboxRelay(engine, extra, s.platform.amqp_url, s.platform.events_exchange)
        tasks.append(asyncio.create_task(extra_relay.run(), name=f"relay-{extra.name}"))
    # waits for the broker if it is not up yet, while the relay and the jobs already run
    starting = asyncio.create_task(runner.start(), name="consumers") if spec.consumers else None
    for job in [*spec.jobs, _cleanup_job(spec.outbox, spec.inbox)]:
        tasks.append(asyncio.create_task(_every(job, sessions, spec.job_runs), name=job.name))
    log.info("worker started", consumers=[c.name for c in spec.consumers])
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not stopper and t.exception():
            log.error("worker task died", task=t.get_name(), error=repr(t.exception()))
    for t in tasks:
        t.cancel()
    if starting is not None:
        starting.cancel()
    # Everything a worker holds is in the database or the broker, so a shutdown that hangs
    # (a broker connection that will not close) is cut short rather than waited for.
    try:
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.close()
            if spec.on_shutdown is not None:
                await spec.on_shutdown()
            await engine.dispose()
    except TimeoutError:
        log.warning("worker shutdown timed out; exiting anyway")
    log.info("worker stopped")
