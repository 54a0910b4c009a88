"""Where the platform pipeline's time goes.

`uv run python bench/profile_events.py live [--n 20000] [--duration 5] [--out DIR]`
  The events bench's platform pipeline in its production topology (writer here, relay and
  consumer in child processes), with `py-spy record -f raw` attached to the relay and the
  consumer while the throughput burst runs; then a per-process summary (on-CPU share,
  self time by function, time under key frames) and each stage's finish time from the
  outbox/inbox timestamps.

`uv run python bench/profile_events.py stages [--profile DIR] [--prefetch N]`
  Each stage alone, in this one process, on a backlog of N events:
 1. writer: N events in transactions of 100 (no relay running)
 2. relay: drain the N-row outbox to a bound quorum queue (no consumer running)
 3. consumer: drain the N-message queue through ConsumerRunner
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

N = 10_000


@contextlib.contextmanager
def stage(name: str, prof_dir: str | None):  # type: ignore[no-untyped-def]
    prof = cProfile.Profile() if prof_dir else None
    t0 = time.perf_counter()
    c0 = time.process_time()
    if prof:
        prof.enable()
    yield
    if prof:
        prof.disable()
        path = Path(prof_dir) / f"{name}.prof"
        prof.dump_stats(path)
        print(f"--- {name}: top cumulative")
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(
        f"{name:10s} {N / dt:8,.0f} events/s  ({dt:.2f}s for {N:,}; this process on CPU "
        f"{cpu:.2f}s = {cpu / dt:.0%}, {cpu / N * 1e6:.0f} us/event)",
        flush=True,
    )


async def main(prof_dir: str | None, prefetch: int) -> None:
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import AsyncSession

    from shardz_common.consumers import ConsumerRunner, consumer
    from shardz_common.db import make_engine, make_sessionmaker, new_metadata
    from shardz_common.events import UserCreated
    from shardz_common.outbox import NOTIFY_TRIGGER_SQL, add_event, inbox_table, outbox_table
    from shardz_common.relay import OutboxRelay
    from shardz_common.testing.db import fresh_database
    from shardz_devstack import rabbit

    tag = uuid.uuid4().hex[:8]
    vhost = f"shardz-bench-{tag}"
    await asyncio.to_thread(rabbit.add_vhost, vhost)
    amqp = rabbit.amqp_url("127.0.0.1", 5672, vhost)
    try:
        async with fresh_database("shardz_bench_prof") as url:
            md = new_metadata()
            outbox, inbox = outbox_table(md), inbox_table(md)
            engine = make_engine(url)
            async with engine.begin() as conn:
                await conn.run_sync(md.create_all)
                for stmt in NOTIFY_TRIGGER_SQL:
                    await conn.exec_driver_sql(stmt)
            sessions = make_sessionmaker(engine)
            handled = 0
            finished = asyncio.Event()

            @consumer(f"bench-{tag}.consumer", UserCreated)
            async def handle(event: UserCreated, session: AsyncSession) -> None:
                nonlocal handled
                handled += 1
                if handled >= N:
                    finished.set()

            def runner() -> Any:
                return ConsumerRunner(
                    [handle],
                    sessions,
                    inbox,
                    amqp_url=amqp,
                    exchange=f"bench.events.{tag}",
                    dead_letter_exchange=f"bench.dlx.{tag}",
                    prefetch=prefetch,
                )

            r = runner()  # declare and bind the queue, then stop consuming
            await r.start()
            await r.close()

            with stage("writer", prof_dir):
                for _ in range(0, N, 100):
                    async with sessions() as s, s.begin():
                        for _ in range(100):
                            uid = uuid.uuid4()
                            add_event(
                                s,
                                outbox,
                                UserCreated(user_id=uid, email=f"{uid.hex}@x.io"),
                                source="bench",
                            )

            relay = OutboxRelay(engine, outbox, amqp, f"bench.events.{tag}")

            async def unsent() -> int:
                async with sessions() as s:
                    q = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                    return int((await s.execute(q)).scalar_one())

            with stage("relay", prof_dir):
                task = asyncio.create_task(relay.run())
                while await unsent():
                    await asyncio.sleep(0.02)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

            with stage("consumer", prof_dir):
                r = runner()
                await r.start()
                await asyncio.wait_for(finished.wait(), 120)
            await r.close()
            await engine.dispose()
    finally:
        await asyncio.to_thread(rabbit.delete_vhost, vhost)


# ---------------------------------------------------------------- live, py-spy per process

# time under these frames (inclusive), by substring of "function (file)"
KEY_FRAMES = [
    "handle_batch (shardz_common/consumers.py",
    "handle (shardz_common/consumers.py",
    "publish_batch (shardz_common/relay.py",
    "_publish (shardz_common/relay.py",
    "model_validate_json",
    "model_validate (",
    "start_as_current_span",
    "extract_context",
    "ack (aio_pika/message.py",
    "publish (aio_pika/exchange.py",
    "(aiormq/",
    "(pamqp/",
    "execute (sqlalchemy/ext/asyncio",
    "(sqlalchemy/orm/",
    "(sqlalchemy/sql/",
    "(sqlalchemy/engine/",
    "_compiler",
    "(psycopg/",
    "(prometheus_client/",
    "(structlog/",
    "_run_once",
]


def summarize(path: Path, seconds: float, rate: int) -> None:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if head:
            stacks.append((head.split(";"), int(count)))
    total = sum(c for _, c in stacks)
    print(
        f"\n=== {path.stem}: {total} samples in {seconds:.0f}s at {rate} Hz "
        f"= on CPU ~{total / (seconds * rate):.0%} of one core"
    )
    if not total:
        return
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    for frames, c in stacks:
        own[_short(frames[-1])] += c
        joined = ";".join(frames)
        for key in KEY_FRAMES:
            if key in joined:
                under[key] += c
    print("self time, top 25:")
    for name, c in own.most_common(25):
        print(f"  {c / total:6.1%}  {name}")
    print("time under (inclusive):")
    for key in KEY_FRAMES:
        print(f"  {under[key] / total:6.1%}  {key}")


def _short(frame: str) -> str:
    return frame.replace(str(Path(sys.prefix)), "").replace("/lib/python3.11/site-packages/", "")


async def live(n: int, seconds: float, out: Path, rate: int) -> None:
    import events_bench
    from sqlalchemy import text

    from shardz_devstack import rabbit

    spies: list[asyncio.subprocess.Process] = []

    async def on_burst(pids: dict[str, int]) -> None:
        for role, pid in pids.items():
            spies.append(
                await asyncio.create_subprocess_exec(
                    "py-spy",
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(int(seconds)),
                    "-r",
                    str(rate),
                    "-f",
                    "raw",
                    "-o",
                    str(out / f"{role}.txt"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        await asyncio.sleep(0.3)  # py-spy attaches

    async def after(engine: Any, _outbox: Any) -> None:
        async with engine.connect() as c:
            r = (
                await c.execute(
                    text(
                        "with b as (select created_at, sent_at from outbox"
                        " order by created_at desc limit :n)"
                        " select count(*), min(created_at), max(created_at), max(sent_at) from b"
                    ),
                    {"n": n},
                )
            ).one()
            inbox = (await c.execute(text("select max(received_at) from inbox"))).scalar_one()
        count, first, last_written, last_sent = r
        print(
            f"\nstages (db clock, from the first outbox row): writer done +"
            f"{(last_written - first).total_seconds():.2f}s, relay done (last sent_at = its "
            f"txn start) +{(last_sent - first).total_seconds():.2f}s, consumer's last txn "
            f"started +{(inbox - first).total_seconds():.2f}s; {count} rows"
        )

    events_bench.on_burst = on_burst
    events_bench.after_platform = after
    tag = uuid.uuid4().hex[:8]
    vhost = f"shardz-bench-{tag}"
    await asyncio.to_thread(rabbit.add_vhost, vhost)
    try:
        f = await events_bench.platform(rabbit.amqp_url("127.0.0.1", 5672, vhost), tag, n)
    finally:
        await asyncio.to_thread(rabbit.delete_vhost, vhost)
        for spy in spies:
            try:
                await asyncio.wait_for(spy.wait(), seconds + 10)
            except TimeoutError:
                spy.terminate()
                await spy.wait()
    print(
        f"platform: p50 {f.p50_ms:.2f} ms, p99 {f.p99_ms:.2f} ms, "
        f"{f.events_per_s:,.0f} events/s ({n:,} events, py-spy attached for {seconds:.0f}s)"
    )
    for role in ("relay", "consumer"):
        path = out / f"{role}.txt"
        if path.exists():
            summarize(path, seconds, rate)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    st = sub.add_parser("stages")
    st.add_argument("--profile", default=None)
    st.add_argument("--prefetch", type=int, default=64)
    lv = sub.add_parser("live")
    lv.add_argument("--n", type=int, default=20_000)
    lv.add_argument("--duration", type=float, default=5)
    lv.add_argument("--rate", type=int, default=100)
    lv.add_argument("--out", default="/tmp/shardz-events-profile")
    a = p.parse_args()
    import uvloop

    if a.mode == "stages":
        if a.profile:
            Path(a.profile).mkdir(parents=True, exist_ok=True)
        uvloop.run(main(a.profile, a.prefetch))
    else:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        uvloop.run(live(a.n, a.duration, Path(a.out), a.rate))
