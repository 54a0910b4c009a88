"""CONTRACT section 5 through the gateway, with real logins to the tenant databases."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from shardz_common.testing.events import EventProbe
from tests.integration.helpers import assert_problem, bearer, create_db, signup, wait_for


async def server_has(stack, db_name: str, role: str) -> tuple[bool, bool]:
    async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as conn:
        db = await (
            await conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (db_name,))
        ).fetchone()
        r = await (
            await conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (role,))
        ).fetchone()
    return db is not None, r is not None


async def test_database_lifecycle(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="db.#") as probe:
        created = await create_db(gateway, token, "shop")
        assert created["status"] == "ready" and created["engine"] == "postgres"
        assert created["plan"] == "free" and created["name"] == "shop"
        assert "shop" not in created["database"] and "shop" not in created["username"]
        # the database takes a login with these credentials as soon as the answer arrives
        async with await psycopg.AsyncConnection.connect(created["uri"], connect_timeout=5) as conn:
            row = await (await conn.execute("SELECT current_user, current_database()")).fetchone()
            assert row == (created["username"], created["database"])
            await conn.execute("CREATE TABLE t (x int)")
            await conn.execute("INSERT INTO t VALUES (1)")
            await conn.commit()
        provisioned = await probe.wait_for(
            "db.provisioned", lambda e: e["data"]["database_id"] == created["id"]
        )
        assert provisioned["data"]["user_id"] == user["user"]["id"]
        assert provisioned["data"]["cluster"]
        usage_event = await probe.wait_for(
            "db.usage.reported", lambda e: e["data"]["database_id"] == created["id"]
        )
        assert usage_event["data"]["size_bytes"] > 0

        listed = (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
        assert [d["id"] for d in listed] == [created["id"]]
        assert "password" not in listed[0] and created["password"] not in str(listed)
        one = await gateway.get(f"/v1/databases/{created['id']}", headers=bearer(token))
        assert one.status_code == 200 and "password" not in one.json()
        assert created["password"] not in one.text

        usage = await gateway.get(f"/v1/databases/{created['id']}/usage", headers=bearer(token))
        assert usage.status_code == 200 and usage.json()["size_bytes"] > 1_000_000

        # rotation: the old password stops working and open sessions end
        old_session = await psycopg.AsyncConnection.connect(created["uri"], autocommit=True)
        rotated = await gateway.post(
            f"/v1/databases/{created['id']}/rotate-credentials", headers=bearer(token)
        )
        assert rotated.status_code == 200
        fresh = rotated.json()
        assert fresh["password"] != created["password"]
        with pytest.raises(psycopg.OperationalError):
            await old_session.execute("SELECT 1")
        await old_session.close()
        with pytest.raises(psycopg.OperationalError):
            await psycopg.AsyncConnection.connect(created["uri"], connect_timeout=5)
        async with await psycopg.AsyncConnection.connect(fresh["uri"]) as conn:
            assert await (await conn.execute("SELECT x FROM t")).fetchone() == (1,)

        deleted = await gateway.delete(f"/v1/databases/{created['id']}", headers=bearer(token))
        assert deleted.status_code in (202, 204)
        await probe.wait_for("db.deleted", lambda e: e["data"]["database_id"] == created["id"])
    during = await gateway.get(f"/v1/databases/{created['id']}", headers=bearer(token))
    assert during.status_code == 404 or during.json()["status"] == "deleting"

    async def gone() -> bool:
        return await server_has(stack, created["database"], created["username"]) == (False, False)

    await wait_for(gone, timeout=30)
    assert_problem(
        await gateway.get(f"/v1/databases/{created['id']}", headers=bearer(token)), 404, "not_found"
    )
    assert (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"] == []


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Shop",
        "1shop",
        "shop;drop",
        "sh'op",
        'sh"op',
        "shöp",
        "a" * 64,
        "shop name",
        "shop_db",
        "-shop",
        None,
        42,
    ],
)
async def test_hostile_labels_are_422_and_change_nothing(gateway, name) -> None:
    user = await signup(gateway)
    resp = await gateway.post(
        "/v1/databases", json={"name": name}, headers=bearer(user["access_token"])
    )
    assert_problem(resp, 422, "validation_error")
    items = (await gateway.get("/v1/databases", headers=bearer(user["access_token"]))).json()
    assert items["items"] == []


async def test_bad_engine_plan_duplicates_and_limits(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    assert_problem(
        await gateway.post(
            "/v1/databases", json={"name": "a", "engine": "mysql"}, headers=bearer(token)
        ),
        422,
        "validation_error",
    )
    assert_problem(
        await gateway.post(
            "/v1/databases", json={"name": "a", "plan": "platinum"}, headers=bearer(token)
        ),
        422,
        "validation_error",
    )
    await create_db(gateway, token, "a")
    assert_problem(
        await gateway.post("/v1/databases", json={"name": "a"}, headers=bearer(token)),
        409,
        "conflict",
    )
    limit = int(stack.env.get("PLATFORM_FREE_PLAN_DATABASES", "3"))
    for i in range(limit - 1):
        await create_db(gateway, token, f"b{i}")
    over = await gateway.post("/v1/databases", json={"name": "over"}, headers=bearer(token))
    assert_problem(over, 403, "plan_limit_reached")
    paid = await create_db(gateway, token, "paid", plan="db-starter")
    assert paid["plan"] == "db-starter"
    names = {
        d["name"]
        for d in (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
    }
    assert "over" not in names and len(names) == limit + 1
    # deleting frees the label and the plan slot at once, while the server drops it
    first = next(
        d
        for d in (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
        if d["name"] == "a"
    )
    assert (
        await gateway.delete(f"/v1/databases/{first['id']}", headers=bearer(token))
    ).status_code == 202
    again = await create_db(gateway, token, "a")
    assert again["id"] != first["id"]


async def test_other_users_databases_are_not_found(gateway) -> None:
    a = await signup(gateway)
    b = await signup(gateway)
    db = await create_db(gateway, a["access_token"])
    hb = bearer(b["access_token"])
    for method, path in [
        ("GET", f"/v1/databases/{db['id']}"),
        ("GET", f"/v1/databases/{db['id']}/usage"),
        ("POST", f"/v1/databases/{db['id']}/rotate-credentials"),
        ("DELETE", f"/v1/databases/{db['id']}"),
        ("GET", f"/v1/databases/{uuid.uuid4()}"),
    ]:
        assert_problem(await gateway.request(method, path, headers=hb), 404, "not_found")
    assert_problem(
        await gateway.get("/v1/databases/not-a-uuid", headers=hb), 422, "validation_error"
    )
    # and A's database is untouched
    assert (
        await gateway.get(f"/v1/databases/{db['id']}", headers=bearer(a["access_token"]))
    ).status_code == 200


async def test_concurrent_deletions_announce_the_database_once(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    created = await create_db(gateway, token, "twice")
    answers = await asyncio.gather(
        *(gateway.delete(f"/v1/databases/{created['id']}", headers=bearer(token)) for _ in range(5))
    )
    assert {r.status_code for r in answers} <= {202, 204, 404}, [r.text for r in answers]
    async with await psycopg.AsyncConnection.connect(
        stack.config.database_dsn("provisioner")
    ) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM outbox WHERE type = 'db.deleted' AND body LIKE %s",
                (f"%{created['id']}%",),
            )
        ).fetchone()
    assert row == (1,)


async def test_usage_history_starts_at_creation_and_is_the_owners_only(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    created = await create_db(gateway, token, "charted")
    history = await gateway.get(
        f"/v1/databases/{created['id']}/usage/history", headers=bearer(token)
    )
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert len(items) >= 1 and items[0]["size_bytes"] > 1_000_000
    assert set(items[0]) == {"size_bytes", "connections", "measured_at"}
    stamps = [i["measured_at"] for i in items]
    assert stamps == sorted(stamps)
    stranger = await signup(gateway)
    assert_problem(
        await gateway.get(
            f"/v1/databases/{created['id']}/usage/history",
            headers=bearer(stranger["access_token"]),
        ),
        404,
        "not_found",
    )
    bad = await gateway.get(
        f"/v1/databases/{created['id']}/usage/history?days=0", headers=bearer(token)
    )
    assert_problem(bad, 422, "validation_error")
