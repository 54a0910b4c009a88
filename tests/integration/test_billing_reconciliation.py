"""Billing's periodic reconciliation against the provisioner's listing, run by two worker
replicas: a plan change whose `db.plan_changed` never reached billing is applied from the
real change time, once, and each interval's pass runs on one replica only."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aio_pika

from shardz_common.plans import get_plan
from shardz_common.testing.events import EventProbe
from tests.integration.billing_helpers import (
    billing_process,
    invoices,
    run_billing,
    subscriptions,
    wait_subscription,
)
from tests.integration.helpers import bearer, create_db, publish_event, signup, wait_for

STARTER = get_plan("db-starter", "database")
assert STARTER is not None
INTERVAL = 2.0


@contextlib.asynccontextmanager
async def dropped_for_billing(amqp: str, queue: str, routing_key: str) -> AsyncIterator[None]:
    """Events of `routing_key` published meanwhile never reach billing's `queue` (as if lost:
    the queue is unbound, so the broker routes them elsewhere only)."""
    conn = await aio_pika.connect(amqp)
    try:
        channel = await conn.channel()
        q = await channel.get_queue(queue, ensure=True)
        await q.unbind("platform.events", routing_key=routing_key)
        try:
            yield
        finally:
            await q.bind("platform.events", routing_key=routing_key)
    finally:
        await conn.close()


async def active_on(gateway, token: str, resource_id: str, plan: str) -> dict | None:
    for sub in await subscriptions(gateway, token):
        if (sub["resource_id"], sub["plan"], sub["status"]) == (resource_id, plan, "active"):
            return sub
    return None


def passes(log: Path) -> list[datetime]:
    """When each reconciliation pass of a worker began, from its JSON log."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("msg") == "reconciliation pass":
                found.append(datetime.fromisoformat(entry["started"]))
    return found


async def test_two_workers_apply_a_missed_plan_change_once_from_its_real_time(
    gateway, stack
) -> None:
    amqp = stack.env["PLATFORM_AMQP_URL"]
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    free = await wait_subscription(gateway, token, db["id"], plan="free", status="active")

    async with (
        dropped_for_billing(amqp, "billing.db-plan-changed", "db.plan_changed"),
        EventProbe(amqp, keys="db.plan_changed") as probe,
    ):
        resp = await gateway.patch(
            f"/v1/databases/{db['id']}", json={"plan": "db-starter"}, headers=bearer(token)
        )
        assert resp.status_code == 200, resp.text
        event = await probe.wait_for("db.plan_changed", lambda e: e["subject"] == db["id"])
    changed_at = datetime.fromisoformat(event["data"]["changed_at"])
    await asyncio.sleep(1.0)  # billing never heard of it
    assert [
        (s["plan"], s["status"])
        for s in await subscriptions(gateway, token)
        if s["resource_id"] == db["id"]
    ] == [("free", "active")]

    logs = [stack.log_dir / f"extra-billing-reconcile-{n}.log" for n in "ab"]
    env = {"BILLING_RECONCILE_INTERVAL_SECONDS": str(INTERVAL)}
    with (
        billing_process(stack, "worker", log_name="reconcile-a", **env),
        billing_process(stack, "worker", log_name="reconcile-b", **env),
    ):
        starter = await wait_for(lambda: active_on(gateway, token, db["id"], "db-starter"), 90)
        # the lost event, delivered late after all: nothing changes
        await publish_event(amqp, "db.plan_changed", event["data"], time=event["time"])
        await asyncio.sleep(4 * INTERVAL)
    assert datetime.fromisoformat(starter["started_at"]) == changed_at
    subs = [s for s in await subscriptions(gateway, token) if s["resource_id"] == db["id"]]
    assert sorted((s["plan"], s["status"]) for s in subs) == [
        ("db-starter", "active"),
        ("free", "cancelled"),
    ]
    closed = next(s for s in subs if s["id"] == free["id"])
    assert datetime.fromisoformat(closed["current_period_end"]) == changed_at

    # billed from the real change time: a full starter month from `changed_at`, once
    await run_billing(gateway, stack.env, (changed_at + timedelta(days=35)).date())
    await run_billing(gateway, stack.env, (changed_at + timedelta(days=35)).date())
    [invoice] = await invoices(gateway, token)
    [line] = invoice["lines"]
    assert line["subscription_id"] == starter["id"]
    assert datetime.fromisoformat(line["period_start"]) == changed_at
    assert line["amount_minor"] == STARTER.price_minor

    # one pass per interval across both replicas, not one per replica
    finished = sorted(t for log in logs for t in passes(log))
    assert len(finished) >= 3, finished
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(finished)]
    # claims are at least INTERVAL - 10% apart; a worker may start its pass a little late
    assert min(gaps) > INTERVAL / 2, gaps
