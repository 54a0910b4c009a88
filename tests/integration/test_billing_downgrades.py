"""A downgrade to a plan whose limits the resource already exceeds is 409 `conflict` and
changes nothing: not the plan, not its limits, not billing's subscription. A downgrade that
fits goes through, and billing follows it (databases and storage spaces alike)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from shardz_common.testing.events import EventProbe
from tests.integration.billing_helpers import subscriptions, wait_subscription
from tests.integration.helpers import assert_problem, bearer, create_db, signup
from tests.integration.storage_support import MIB, db, put, space

FREE_SIZE = 48 * MIB  # PLATFORM_FREE_PLAN_DATABASE_SIZE_BYTES of the test platform


async def tenant_size(uri: str) -> int:
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        row = await (await conn.execute("SELECT pg_database_size(current_database())")).fetchone()
    assert row is not None
    return int(row[0])


async def connection_limit(stack, role: str) -> int:
    async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as conn:
        row = await (
            await conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,))
        ).fetchone()
    assert row is not None
    return int(row[0])


async def billed(gateway, token: str, resource_id: str) -> list[tuple[str, str]]:
    return sorted(
        (s["plan"], s["status"])
        for s in await subscriptions(gateway, token)
        if s["resource_id"] == resource_id
    )


async def test_a_database_over_the_free_size_cannot_move_to_free(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    created = await create_db(gateway, token, plan="db-starter")
    await wait_subscription(gateway, token, created["id"], plan="db-starter", status="active")
    # the tenant fills it past the free plan's size (uncompressed rows: 64 MB of data)
    async with await psycopg.AsyncConnection.connect(created["uri"], autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad"
            " FROM generate_series(1, 64000) AS g"
        )
    assert await tenant_size(created["uri"]) > FREE_SIZE
    url = f"/v1/databases/{created['id']}"
    before = (await gateway.get(url, headers=bearer(token))).json()

    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="db.plan_changed") as probe:
        refused = await gateway.patch(url, json={"plan": "free"}, headers=bearer(token))
        assert_problem(refused, 409, "conflict")
        assert "free" in refused.json()["detail"]
        await asyncio.sleep(2)
        assert [e for e in probe.events if e["subject"] == created["id"]] == []
    after = (await gateway.get(url, headers=bearer(token))).json()
    assert after == before and after["plan"] == "db-starter" and after["status"] == "ready"
    assert after["size_limit_bytes"] > FREE_SIZE
    assert await connection_limit(stack, created["username"]) == 20
    assert await billed(gateway, token, created["id"]) == [("db-starter", "active")]

    # once it fits, the same downgrade goes through and billing follows it
    async with await psycopg.AsyncConnection.connect(created["uri"], autocommit=True) as conn:
        await conn.execute("DROP TABLE filler")
    assert await tenant_size(created["uri"]) < FREE_SIZE
    moved = await gateway.patch(url, json={"plan": "free"}, headers=bearer(token))
    assert moved.status_code == 200, moved.text
    assert moved.json()["size_limit_bytes"] == FREE_SIZE
    assert await connection_limit(stack, created["username"]) == 5
    await wait_subscription(gateway, token, created["id"], plan="free", status="active")
    assert await billed(gateway, token, created["id"]) == [
        ("db-starter", "cancelled"),
        ("free", "active"),
    ]


async def pretend_stored(stack, user_id: str, key: str, size: int) -> None:
    """Make `key` count as `size` bytes (index and usage together, as an upload leaves them):
    more than the free quota, without uploading gigabytes."""
    async with await db(stack) as conn:
        row = await (
            await conn.execute(
                "SELECT size FROM objects WHERE user_id = %s AND key = %s", (user_id, key)
            )
        ).fetchone()
        assert row is not None
        await conn.execute(
            "UPDATE objects SET size = %s WHERE user_id = %s AND key = %s", (size, user_id, key)
        )
        await conn.execute(
            "UPDATE spaces SET used_bytes = used_bytes - %s + %s WHERE user_id = %s",
            (row[0], size, user_id),
        )


async def test_storage_plan_changes_reach_billing_and_an_overfull_downgrade_is_refused(
    gateway, stack
) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    await wait_subscription(gateway, token, uid, plan="storage-free", status="active")
    plus = await gateway.patch("/v1/storage", json={"plan": "storage-plus"}, headers=bearer(token))
    assert plus.status_code == 200, plus.text
    # billing closes the free subscription and opens the paid one (storage.plan_changed)
    await wait_subscription(gateway, token, uid, plan="storage-plus", status="active")
    assert await billed(gateway, token, uid) == [
        ("storage-free", "cancelled"),
        ("storage-plus", "active"),
    ]

    assert (await put(gateway, token, "big", b"x" * MIB)).status_code == 201
    await pretend_stored(stack, uid, "big", 2 * 1024 * MIB)  # 2 GiB: over the free 1 GiB
    before: dict[str, Any] = await space(gateway, token)
    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="storage.plan_changed") as probe:
        refused = await gateway.patch(
            "/v1/storage", json={"plan": "storage-free"}, headers=bearer(token)
        )
        assert_problem(refused, 409, "conflict")
        await asyncio.sleep(2)
        assert [e for e in probe.events if e["data"]["user_id"] == uid] == []
    assert await space(gateway, token) == before
    assert before["plan"] == "storage-plus" and before["quota_bytes"] > 2 * 1024 * MIB
    assert await billed(gateway, token, uid) == [
        ("storage-free", "cancelled"),
        ("storage-plus", "active"),
    ]

    assert (await gateway.delete("/v1/storage/objects/big", headers=bearer(token))).status_code
    back = await gateway.patch("/v1/storage", json={"plan": "storage-free"}, headers=bearer(token))
    assert back.status_code == 200, back.text
    await wait_subscription(gateway, token, uid, plan="storage-free", status="active")
    assert await billed(gateway, token, uid) == [
        ("storage-free", "active"),
        ("storage-free", "cancelled"),
        ("storage-plus", "cancelled"),
    ]
