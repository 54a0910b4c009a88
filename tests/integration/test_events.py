"""Events cross services: identity's outbox -> RabbitMQ -> the provisioner's consumer."""

from __future__ import annotations

import asyncio
import re
import time

import psycopg

from shardz_common.testing.events import EventProbe
from tests.integration.helpers import signup


async def test_user_created_reaches_the_provisioner_as_a_cloudevent(gateway, stack) -> None:
    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="user.*") as probe:
        user = await signup(gateway)
        uid = user["user"]["id"]
        event = await probe.wait_for("user.created", lambda e: e["data"]["user_id"] == uid)
    assert event["specversion"] == "1.0" and event["source"] == "identity"
    # every event starts or continues a W3C trace
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", event["traceparent"])
    assert event["data"]["email"] == user["user"]["email"] and event["id"] and event["time"]
    dsn = stack.config.database_dsn("provisioner")
    deadline = time.monotonic() + 10
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            row = await (
                await conn.execute(
                    "SELECT a.status, i.event_id FROM accounts a JOIN inbox i"
                    " ON i.consumer = 'provisioner.user-created' AND i.event_id = %s"
                    " WHERE a.user_id = %s",
                    (event["id"], uid),
                )
            ).fetchone()
            if row or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert row == ("active", event["id"])


async def test_a_callers_trace_continues_into_the_events_it_causes(gateway, stack) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="user.created") as probe:
        resp = await gateway.post(
            "/v1/auth/signup",
            json={
                "email": f"t-{trace_id[:8]}-{time.time_ns()}@example.com",
                "password": "correct horse battery",
            },
            headers={"traceparent": traceparent},
        )
        assert resp.status_code == 201
        uid = resp.json()["user"]["id"]
        event = await probe.wait_for("user.created", lambda e: e["data"]["user_id"] == uid)
    assert event["traceparent"].split("-")[1] == trace_id
