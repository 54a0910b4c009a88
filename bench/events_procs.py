"""The events bench's child processes: the outbox relay, the consumer, the floor's consumer.

`python bench/events_procs.py {relay|consumer|floor-consumer} --amqp URL --tag TAG
    --report-fd FD [--db URL]`

Each is its own process with its own uvloop loop (and, for the relay and the consumer, its
own SQLAlchemy engine), as a service's worker process is in production. A child writes
b"ready\\n" to the report pipe once it is relaying/consuming; a consumer then writes
"<time.time()> <id> <id> ...\\n" each time events are handled:
  - consumer: from `ConsumerRunner.after_commit`, i.e. right after the consumer's
    transaction (inbox rows + handler) committed, before the acks;
  - floor-consumer: right after `message.ack()` (a basic.ack is not confirmed; same point
    as the platform consumer's ack).
Lines are coalesced per loop iteration and written through a non-blocking pipe transport,
so reporting never blocks the consumer. A child exits when its stdin closes (the parent
finished, or died) or on SIGTERM/SIGINT, closing its connections on the way out."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any


class Reporter:
    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.lines: list[str] = []
        self.scheduled = False

    @classmethod
    async def open(cls, fd: int) -> Reporter:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "wb", buffering=0)
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        return cls(transport)  # type: ignore[arg-type]

    def ready(self) -> None:
        self.transport.write(b"ready\n")

    def add(self, ts: float, ids: list[str]) -> None:
        self.lines.append(f"{ts:.6f} {' '.join(ids)}\n")
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.lines:
            self.transport.write("".join(self.lines).encode())
            self.lines.clear()


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def relay(args: argparse.Namespace, reporter: Reporter, stop: asyncio.Event) -> None:
    from shardz_common.db import make_engine, new_metadata
    from shardz_common.outbox import outbox_table
    from shardz_common.relay import OutboxRelay

    engine = make_engine(args.db)
    outbox = outbox_table(new_metadata())
    task = asyncio.create_task(
        OutboxRelay(engine, outbox, args.amqp, f"bench.events.{args.tag}").run()
    )
    try:
        reporter.ready()
        await stop.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()


async def consumer(args: argparse.Namespace, reporter: Reporter, stop: asyncio.Event) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shardz_common.consumers import ConsumerRunner
    from shardz_common.consumers import consumer as declare
    from shardz_common.db import make_engine, make_sessionmaker, new_metadata
    from shardz_common.events import UserCreated
    from shardz_common.outbox import inbox_table

    engine = make_engine(args.db)
    inbox = inbox_table(new_metadata())

    @declare(f"bench-{args.tag}.consumer", UserCreated)
    async def handle(event: UserCreated, session: AsyncSession) -> None:
        return None  # the pipeline's own cost: parse, inbox row, transaction, ack

    class ReportingRunner(ConsumerRunner):
        def after_commit(self, event_ids: list[str]) -> None:
            reporter.add(time.time(), event_ids)

    runner = ReportingRunner(
        [handle],
        make_sessionmaker(engine),
        inbox,
        amqp_url=args.amqp,
        exchange=f"bench.events.{args.tag}",
        dead_letter_exchange=f"bench.dlx.{args.tag}",
    )
    try:
        await runner.start()
        reporter.ready()
        await stop.wait()
    finally:
        await runner.close()
        await engine.dispose()


async def floor_consumer(args: argparse.Namespace, reporter: Reporter, stop: asyncio.Event) -> None:
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    conn = await aio_pika.connect_robust(args.amqp)
    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=64)
        exchange = await channel.declare_exchange(
            f"floor.events.{args.tag}", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            f"floor-{args.tag}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="user.created")

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            reporter.add(time.time(), [message.message_id or ""])

        await queue.consume(on_message)
        reporter.ready()
        await stop.wait()
    finally:
        await conn.close()


ROLES: dict[str, Any] = {"relay": relay, "consumer": consumer, "floor-consumer": floor_consumer}


async def main(args: argparse.Namespace) -> None:
    from shardz_common.logging import configure_logging

    configure_logging(f"bench-{args.role}", "WARNING")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_stdin_closed())
    watcher.add_done_callback(lambda _: stop.set())
    reporter = await Reporter.open(args.report_fd)
    try:
        await ROLES[args.role](args, reporter, stop)
    finally:
        watcher.cancel()
        reporter.flush()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--amqp", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--report-fd", type=int, required=True)
    p.add_argument("--db", default=None)
    import uvloop  # as the services run

    uvloop.run(main(p.parse_args()))
