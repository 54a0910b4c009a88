"""The sweeper's lease on real PostgreSQL: one holder at a time, freed when it ends."""

from __future__ import annotations

import asyncio

from shardz_common.db import make_engine, make_sessionmaker
from shardz_common.testing.db import fresh_database
from shardz_storage.services.sweeper import SWEEP_LOCK, lease


async def test_one_sweeper_holds_the_lease_and_the_other_skips() -> None:
    async with fresh_database("shardz_t_storage") as url:
        engine_a, engine_b = make_engine(url), make_engine(url)  # two worker processes
        try:
            a, b = make_sessionmaker(engine_a), make_sessionmaker(engine_b)
            async with lease(a, SWEEP_LOCK) as first:
                assert first
                async with lease(b, SWEEP_LOCK) as second:
                    assert not second
            async with lease(b, SWEEP_LOCK) as after:
                assert after
            results = []

            async def take(maker) -> None:  # type: ignore[no-untyped-def]
                async with lease(maker, SWEEP_LOCK) as mine:
                    results.append(mine)
                    await asyncio.sleep(0.2)

            await asyncio.gather(take(a), take(b))
            assert sorted(results) == [False, True]
        finally:
            await engine_a.dispose()
            await engine_b.dispose()
