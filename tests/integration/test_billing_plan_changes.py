"""Plan changes through the provisioner (limits follow at once, billing switches the
subscription), paid plans for active accounts only, and reconciliation of missed events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx
import psycopg

from shardz_billing.config import BillingSettings
from shardz_billing.services.reconcile import reconcile_databases
from shardz_common.db import make_engine, make_sessionmaker
from shardz_common.settings import InternalSecrets, PlatformSettings
from shardz_common.testing.events import EventProbe
from tests.integration.billing_helpers import subscriptions, wait_subscription
from tests.integration.helpers import (
    assert_problem,
    bearer,
    create_db,
    publish_event,
    signup,
    wait_for,
)


async def connection_limit(stack, role: str) -> int:
    async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as conn:
        row = await (
            await conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,))
        ).fetchone()
    return int(row[0])


async def billing_exec(stack, sql: str, *args: object) -> None:
    dsn = stack.env["BILLING_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql, args)


async def test_changing_plan_applies_limits_and_switches_the_subscription(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    assert await connection_limit(stack, db["username"]) == 5
    free = await wait_subscription(gateway, token, db["id"], plan="free", status="active")

    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="db.plan_changed") as probe:
        resp = await gateway.patch(
            f"/v1/databases/{db['id']}", json={"plan": "db-pro"}, headers=bearer(token)
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["plan"] == "db-pro" and "password" not in resp.json()
        changed = await probe.wait_for("db.plan_changed")
        assert changed["data"]["previous_plan"] == "free"
    assert await connection_limit(stack, db["username"]) == 60
    pro = await wait_subscription(gateway, token, db["id"], plan="db-pro", status="active")
    subs = {s["id"]: s for s in await subscriptions(gateway, token)}
    assert subs[free["id"]]["status"] == "cancelled"
    assert subs[free["id"]]["current_period_end"] == pro["started_at"]

    same = await gateway.patch(
        f"/v1/databases/{db['id']}", json={"plan": "db-pro"}, headers=bearer(token)
    )
    assert same.status_code == 200
    unknown = await gateway.patch(
        f"/v1/databases/{db['id']}", json={"plan": "platinum"}, headers=bearer(token)
    )
    assert_problem(unknown, 422, "validation_error")
    other = await signup(gateway)
    foreign = await gateway.patch(
        f"/v1/databases/{db['id']}", json={"plan": "free"}, headers=bearer(other["access_token"])
    )
    assert_problem(foreign, 404, "not_found")
    assert await connection_limit(stack, db["username"]) == 60

    down = await gateway.patch(
        f"/v1/databases/{db['id']}", json={"plan": "db-starter"}, headers=bearer(token)
    )
    assert down.status_code == 200
    assert await connection_limit(stack, db["username"]) == 20
    await wait_subscription(gateway, token, db["id"], plan="db-starter", status="active")


async def test_a_suspended_account_cannot_take_a_paid_plan(gateway, stack) -> None:
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    db = await create_db(gateway, token)
    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="db.suspended") as probe:
        await publish_event(
            stack.env["PLATFORM_AMQP_URL"],
            "account.suspended",
            {"user_id": uid, "reason": "overdue"},
        )
        await probe.wait_for("db.suspended", lambda e: e["data"]["database_id"] == db["id"])
    resp = await gateway.patch(
        f"/v1/databases/{db['id']}", json={"plan": "db-pro"}, headers=bearer(token)
    )
    assert_problem(resp, 403, "account_suspended")
    created = await gateway.post(
        "/v1/databases", json={"name": "paid", "plan": "db-starter"}, headers=bearer(token)
    )
    assert_problem(created, 403, "account_suspended")
    assert await connection_limit(stack, db["username"]) == 5
    # billing learns of the database from its event: wait for it, then nothing else is there
    await wait_subscription(gateway, token, db["id"], plan="free")
    assert [
        s["plan"] for s in await subscriptions(gateway, token) if s["resource_id"] == db["id"]
    ] == ["free"]


def _settings(stack) -> BillingSettings:
    env = stack.env
    return BillingSettings(
        database_url=env["BILLING_DATABASE_URL"],
        reconcile_page_size=2,  # several pages even on a small test platform
        platform=PlatformSettings(provisioner_url=env["PLATFORM_PROVISIONER_URL"]),
        secrets=InternalSecrets(provisioner_internal_secret=env["PROVISIONER_INTERNAL_SECRET"]),
    )


async def test_reconciliation_fixes_what_events_missed_once(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    kept = await create_db(gateway, token, plan="db-starter")
    gone = await create_db(gateway, token, plan="db-pro")
    sub = await wait_subscription(gateway, token, kept["id"], status="active")
    await wait_subscription(gateway, token, gone["id"], status="active")
    assert (
        await gateway.delete(f"/v1/databases/{gone['id']}", headers=bearer(token))
    ).status_code == 202
    cancelled = await wait_subscription(gateway, token, gone["id"], status="cancelled")

    # as if db.provisioned of one and db.deleted of the other had never arrived
    await billing_exec(stack, "DELETE FROM subscriptions WHERE id = %s", uuid.UUID(sub["id"]))
    await billing_exec(
        stack,
        "UPDATE subscriptions SET status = 'active', cancelled_at = NULL WHERE id = %s",
        uuid.UUID(cancelled["id"]),
    )
    settings = _settings(stack)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with httpx.AsyncClient() as http:
            # two passes at once (the worker runs one per interval, an overrun may overlap):
            # each fix is made once, whichever pass gets to the resource first
            a, b = await asyncio.gather(
                reconcile_databases(sessions, http, settings),
                reconcile_databases(sessions, http, settings),
            )
            assert a + b == 2, (a, b)
            assert await reconcile_databases(sessions, http, settings) == 0  # never twice
    finally:
        await engine.dispose()

    subs = [s for s in await subscriptions(gateway, token) if s["resource_id"] == kept["id"]]
    assert len(subs) == 1 and subs[0]["status"] == "active"
    # billed from the database's real creation time
    assert datetime.fromisoformat(subs[0]["started_at"]) == datetime.fromisoformat(
        kept["created_at"]
    )

    async def closed() -> bool:
        found = [s for s in await subscriptions(gateway, token) if s["resource_id"] == gone["id"]]
        return [s["status"] for s in found] == ["cancelled"]

    await wait_for(closed, timeout=5)


async def test_the_database_listing_is_internal_only(gateway, stack) -> None:
    resp = await gateway.get("/internal/databases")
    assert resp.status_code == 404
    async with httpx.AsyncClient() as client:
        url = f"{stack.env['PLATFORM_PROVISIONER_URL']}/internal/databases"
        assert (await client.get(url)).status_code == 401
        wrong = await client.get(url, headers=bearer("not-the-secret"))
        assert wrong.status_code == 401
        ok = await client.get(
            url, params={"limit": 1}, headers=bearer(stack.env["PROVISIONER_INTERNAL_SECRET"])
        )
        assert ok.status_code == 200 and "items" in ok.json()
        assert all("password" not in item for item in ok.json()["items"])
