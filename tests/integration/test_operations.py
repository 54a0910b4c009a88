"""What operators rely on: each service's own ops endpoints, and metering by the worker."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from shardz_common.testing.events import EventProbe
from tests.integration.helpers import create_db, provisioner_process, signup, wait_for


async def test_every_service_serves_health_readiness_metrics_and_openapi(gateway, stack) -> None:
    await signup(gateway)  # so identity's request counter has something to count
    async with httpx.AsyncClient() as direct:
        for service, url in stack.internal_urls.items():
            assert (await direct.get(f"{url}/healthz")).json() == {"status": "ok"}
            ready = (await direct.get(f"{url}/readyz")).json()
            assert ready == {"status": "ready", "checks": {"database": True, "broker": True}}
            spec = (await direct.get(f"{url}/openapi.json")).json()
            assert spec["paths"], service
            assert not any(p.startswith("/internal") for p in spec["paths"])
            metrics = (await direct.get(f"{url}/metrics")).text
            assert "http_requests_total" in metrics
        identity = (await direct.get(f"{stack.internal_urls['identity']}/metrics")).text
        assert 'route="/v1/auth/signup",status="201"' in identity


async def test_the_worker_meters_every_database_it_holds(gateway, stack) -> None:
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    amqp = stack.env["PLATFORM_AMQP_URL"]
    async with EventProbe(amqp, keys="db.usage.reported") as probe:
        # a worker starting now meters at once, then every interval
        with provisioner_process(stack, "worker", PROVISIONER_METERING_INTERVAL_SECONDS="1"):
            for _ in range(2):
                event = await probe.wait_for(
                    "db.usage.reported", lambda e: e["data"]["database_id"] == db["id"]
                )
                probe.events.remove(event)
                assert event["data"]["size_bytes"] > 1_000_000
    dsn = stack.config.database_dsn("provisioner")

    async def sampled() -> bool:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM usage_samples WHERE database_id = %s", (db["id"],)
                )
            ).fetchone()
        return row[0] >= 3  # the sample taken at creation, and the worker's two

    await wait_for(sampled, timeout=10)


async def test_two_workers_meter_each_database_once_per_interval(gateway, stack) -> None:
    user = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    dsn = stack.config.database_dsn("provisioner")

    async def samples() -> int:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM usage_samples WHERE database_id = %s", (db["id"],)
                )
            ).fetchone()
        return int(row[0])

    env = {"PROVISIONER_METERING_INTERVAL_SECONDS": "2"}
    with provisioner_process(stack, "worker", **env), provisioner_process(stack, "worker", **env):
        # the sample taken at creation, then the first of these workers' metering
        await wait_for(lambda: _at_least(samples, 2), timeout=30)
        first = await samples()
        await asyncio.sleep(6.5)
        during = await samples() - first
    # three or four intervals passed: one sample each, not one per worker
    assert 2 <= during <= 4, during


async def _at_least(count, n: int) -> bool:
    return await count() >= n
