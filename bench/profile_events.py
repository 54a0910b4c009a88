"""Where the platform pipeline's time goes: each stage alone, on a backlog of N events.

`uv run python bench/profile_events.py [--profile DIR] [--prefetch N]`
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


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--profile", default=None)
    p.add_argument("--prefetch", type=int, default=64)
    a = p.parse_args()
    if a.profile:
        Path(a.profile).mkdir(parents=True, exist_ok=True)
    import uvloop

    uvloop.run(main(a.profile, a.prefetch))
