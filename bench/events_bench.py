"""(b) Events: outbox commit -> consumer handled (real OutboxRelay + ConsumerRunner) vs raw
aio-pika publish-with-confirm -> consume on a quorum queue, in the same run.

Production topology, one process each (bench/events_procs.py runs the children):
  platform: writer = this process (a service's API), its own engine; OutboxRelay = a child
            process (that service's worker), its own loop and engine; ConsumerRunner =
            another child (another service's worker), its own loop and engine.
  floor:    publisher = this process; consumer = a child process.
Times are time.time() (one machine, one clock). Start: the writer's, right after its
transaction committed (platform), or just before publish (floor). End: the consumer
child's, right after the consumer transaction (inbox row + handler) committed, from
ConsumerRunner.after_commit, before the ack (platform); right after message.ack() (floor).
Throughput: N / (last end - time before the first write/publish)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from common import Row, percentile, print_table

AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672/"
RATE = 200  # events/s for the latency run
LATENCY_SECONDS = 5
THROUGHPUT_N = 10_000
TXN_SIZE = 100
CHILD = Path(__file__).resolve().parent / "events_procs.py"


@dataclass
class Figures:
    p50_ms: float
    p99_ms: float
    events_per_s: float
    n_latency: int


class Tracker:
    """Start and end times (time.time()) by id; wakes a waiter when `target` ids ended."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.target = 0
        self.reached = asyncio.Event()

    def done(self, key: str, ts: float) -> None:
        self.end[key] = ts
        if len(self.end) >= self.target:
            self.reached.set()

    def expect(self, n: int) -> None:
        self.end.clear()
        self.start.clear()
        self.target = n
        self.reached.clear()

    def latencies_ms(self) -> list[float]:
        return [(self.end[k] - t) * 1000 for k, t in self.start.items() if k in self.end]


class Child:
    """A child of bench/events_procs.py; its report pipe feeds the tracker."""

    def __init__(self, role: str, tracker: Tracker, *args: str) -> None:
        self.role = role
        self.tracker = tracker
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        r, w = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CHILD),
                self.role,
                "--report-fd",
                str(w),
                *self.args,
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(w,),
            )
        finally:
            os.close(w)
        reader = asyncio.StreamReader(limit=1 << 24)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", buffering=0)
        )
        line = await asyncio.wait_for(reader.readline(), 60)
        if line != b"ready\n":
            raise RuntimeError(f"{self.role} child failed to start (exit {self.proc.returncode})")
        self.pump = asyncio.create_task(self._pump(reader))

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        done = self.tracker.done
        while line := await reader.readline():
            ts, *ids = line.split()
            t = float(ts)
            for i in ids:
                done(i.decode(), t)

    async def stop(self) -> None:
        """Close its stdin (it shuts down cleanly); terminate, then kill, if it lingers."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        finally:
            if self.pump is not None:
                self.pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.pump


async def paced(n: int, rate: float, send: Callable[[], Awaitable[None]]) -> None:
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send()


# bench/profile_events.py's hooks: with the children's pids as the throughput burst starts;
# with the writer's engine and the outbox table once the platform run is measured
on_burst: Callable[[dict[str, int]], Awaitable[None]] | None = None
after_platform: Callable[[Any, Any], Awaitable[None]] | None = None


async def measure(
    tracker: Tracker,
    send_one: Callable[[], Awaitable[None]],
    send_burst: Callable[[int], Awaitable[None]],
    pids: dict[str, int] | None = None,
    throughput_n: int = THROUGHPUT_N,
) -> Figures:
    # warm-up: connections, pools, statement caches, in every process
    tracker.expect(50)
    await paced(50, RATE, send_one)
    await asyncio.wait_for(tracker.reached.wait(), 30)

    n = RATE * LATENCY_SECONDS
    tracker.expect(n)
    await paced(n, RATE, send_one)
    await asyncio.wait_for(tracker.reached.wait(), 30)
    lat = tracker.latencies_ms()

    tracker.expect(throughput_n)
    if on_burst is not None and pids:
        await on_burst(pids)
    t0 = time.time()
    await send_burst(throughput_n)
    await asyncio.wait_for(tracker.reached.wait(), 120)
    elapsed = max(tracker.end.values()) - t0
    return Figures(percentile(lat, 50), percentile(lat, 99), throughput_n / elapsed, len(lat))


# ---------------------------------------------------------------- the platform pipeline


async def platform(amqp_url: str, tag: str, throughput_n: int = THROUGHPUT_N) -> Figures:
    from shardz_common.db import make_engine, make_sessionmaker, new_metadata
    from shardz_common.events import UserCreated
    from shardz_common.outbox import NOTIFY_TRIGGER_SQL, add_event, inbox_table, outbox_table
    from shardz_common.testing.db import fresh_database

    tracker = Tracker()
    async with fresh_database("shardz_bench_events") as url:
        md = new_metadata()
        outbox, _ = outbox_table(md), inbox_table(md)
        writer_engine = make_engine(url)  # the API process's pool; the workers have theirs
        children: list[Child] = []
        try:
            async with writer_engine.begin() as conn:
                await conn.run_sync(md.create_all)
                for stmt in NOTIFY_TRIGGER_SQL:
                    await conn.exec_driver_sql(stmt)
            writer = make_sessionmaker(writer_engine)
            common = ("--amqp", amqp_url, "--tag", tag, "--db", url)
            # the consumer first: its queue must be bound before the relay publishes
            for role in ("consumer", "relay"):
                child = Child(role, tracker, *common)
                children.append(child)
                await child.start()

            def event() -> Any:
                uid = uuid.uuid4()
                return UserCreated(user_id=uid, email=f"{uid.hex[:12]}@example.com")

            async def send_one() -> None:
                async with writer() as s:
                    async with s.begin():
                        eid = add_event(s, outbox, event(), source="bench")
                    tracker.start[str(eid)] = time.time()  # right after the commit

            async def send_burst(n: int) -> None:
                for _ in range(0, n, TXN_SIZE):
                    async with writer() as s:
                        async with s.begin():
                            ids = [
                                add_event(s, outbox, event(), source="bench")
                                for _ in range(TXN_SIZE)
                            ]
                        now = time.time()
                        tracker.start.update((str(i), now) for i in ids)

            pids = {c.role: c.pid for c in children}
            figures = await measure(tracker, send_one, send_burst, pids, throughput_n)
            if after_platform is not None:
                await after_platform(writer_engine, outbox)
            return figures
        finally:
            for child in reversed(children):  # the relay first, then the consumer
                await child.stop()
            await _delete_queues(amqp_url, [f"bench-{tag}.consumer", f"bench-{tag}.consumer.dead"])
            await writer_engine.dispose()


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
    sub = Child("floor-consumer", tracker, "--amqp", amqp_url, "--tag", tag)
    pub_conn = await aio_pika.connect_robust(amqp_url)
    try:
        await sub.start()  # declares the exchange and binds its quorum queue
        pub = await pub_conn.channel(publisher_confirms=True)
        exchange = await pub.declare_exchange(
            f"floor.events.{tag}", aio_pika.ExchangeType.TOPIC, durable=True
        )

        def message() -> tuple[str, aio_pika.Message]:
            mid = str(uuid.uuid4())
            body = b'{"specversion":"1.0","type":"user.created","data":{"email":"x@example.com"}}'
            return mid, aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=mid
            )

        async def send_one() -> None:
            mid, msg = message()
            tracker.start[mid] = time.time()
            await exchange.publish(msg, routing_key="user.created", mandatory=True)

        async def send_burst(n: int) -> None:
            msgs = [message() for _ in range(n)]
            now = time.time()
            tracker.start.update((mid, now) for mid, _ in msgs)
            await asyncio.gather(
                *(exchange.publish(m, routing_key="user.created", mandatory=True) for _, m in msgs)
            )

        return await measure(tracker, send_one, send_burst)
    finally:
        await sub.stop()
        await pub_conn.close()
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
            ("platform (3 procs): writer commit -> relay proc -> consumer proc committed", ours),
            ("floor (2 procs): publish+confirm -> consumer proc acked (quorum)", fl),
        )
    ]
    print_table(
        f"events: latency at {RATE}/s for {LATENCY_SECONDS}s (single-event txns); "
        f"throughput {THROUGHPUT_N:,} events in txns of {TXN_SIZE}; "
        "one process per role, time.time() from each",
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
