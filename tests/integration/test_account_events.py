"""The provisioner follows account events: suspension stops logins, deletion removes all."""

from __future__ import annotations

import aio_pika
import psycopg
import pytest

from shardz_common.testing.events import EventProbe
from tests.integration.helpers import (
    admin_token,
    assert_problem,
    bearer,
    can_login,
    create_db,
    publish_event,
    signup,
    wait_for,
)


async def test_suspension_stops_logins_and_reactivation_restores_them(gateway, stack) -> None:
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    db = await create_db(gateway, token)
    amqp = stack.env["PLATFORM_AMQP_URL"]
    session = await psycopg.AsyncConnection.connect(db["uri"], autocommit=True)
    async with EventProbe(amqp, keys="db.*") as probe:
        await publish_event(
            amqp, "account.suspended", {"user_id": uid, "reason": "invoice_overdue"}
        )
        await probe.wait_for("db.suspended", lambda e: e["data"]["database_id"] == db["id"])
        with pytest.raises(psycopg.OperationalError):  # the open session was ended
            await session.execute("SELECT 1")
        assert not await can_login(db["uri"])
        got = (await gateway.get(f"/v1/databases/{db['id']}", headers=bearer(token))).json()
        assert got["status"] == "suspended"
        new = await gateway.post("/v1/databases", json={"name": "more"}, headers=bearer(token))
        assert_problem(new, 403, "account_suspended")
        rot = await gateway.post(
            f"/v1/databases/{db['id']}/rotate-credentials", headers=bearer(token)
        )
        assert_problem(rot, 403, "account_suspended")

        await publish_event(amqp, "account.reactivated", {"user_id": uid, "reason": "paid"})
        await probe.wait_for("db.resumed", lambda e: e["data"]["database_id"] == db["id"])
    assert await can_login(db["uri"])
    got = (await gateway.get(f"/v1/databases/{db['id']}", headers=bearer(token))).json()
    assert got["status"] == "ready"
    await session.close()


async def test_deleting_the_account_removes_every_database(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    dbs = [await create_db(gateway, token) for _ in range(2)]
    assert (await gateway.delete("/v1/users/me", headers=bearer(token))).status_code == 202

    async def all_gone() -> bool:
        async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as conn:
            names = [d["database"] for d in dbs] + [d["username"] for d in dbs]
            row = await (
                await conn.execute(
                    "SELECT (SELECT count(*) FROM pg_database WHERE datname = ANY(%s))"
                    " + (SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s))",
                    (names, names),
                )
            ).fetchone()
        return row[0] == 0

    await wait_for(all_gone, timeout=30)
    for d in dbs:
        assert not await can_login(d["uri"])


async def test_an_older_suspension_arriving_late_does_not_undo_a_newer_reactivation(
    gateway, stack
) -> None:
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    db = await create_db(gateway, token)
    amqp = stack.env["PLATFORM_AMQP_URL"]
    async with EventProbe(amqp, keys="db.*") as probe:
        await publish_event(
            amqp,
            "account.suspended",
            {"user_id": uid, "reason": "overdue"},
            time="2026-01-01T10:00:00+00:00",
        )
        await probe.wait_for("db.suspended", lambda e: e["data"]["database_id"] == db["id"])
        await publish_event(
            amqp,
            "account.reactivated",
            {"user_id": uid, "reason": "paid"},
            time="2026-01-01T12:00:00+00:00",
        )
        await probe.wait_for("db.resumed", lambda e: e["data"]["database_id"] == db["id"])
        # a redelivered or delayed suspension from before the payment
        stale = await publish_event(
            amqp,
            "account.suspended",
            {"user_id": uid, "reason": "overdue"},
            time="2026-01-01T11:00:00+00:00",
        )
        for service in ("provisioner", "identity"):
            await wait_for(lambda s=service: _consumed(stack, s, stale), timeout=15)
    assert await can_login(db["uri"])
    got = (await gateway.get(f"/v1/databases/{db['id']}", headers=bearer(token))).json()
    assert got["status"] == "ready"
    me = (await gateway.get("/v1/users/me", headers=bearer(token))).json()
    assert me["status"] == "active"


async def _consumed(stack, service: str, event_id: str) -> bool:
    dsn = stack.config.database_dsn(service)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (
            await conn.execute("SELECT 1 FROM inbox WHERE event_id = %s", (event_id,))
        ).fetchone()
    return row is not None


async def test_a_suspension_reaches_each_cluster_that_answers_and_the_others_when_they_return(
    gateway, stack
) -> None:
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    extra = stack.start_extra_cluster(index=3)
    reg = {**extra.registration(), "name": "local-3", "capacity": 10}
    assert (await gateway.post("/v1/clusters", json=reg, headers=bearer(admin))).status_code == 201
    amqp = stack.env["PLATFORM_AMQP_URL"]
    try:
        away = await create_db(gateway, token, "away")  # the emptiest cluster: local-3
        assert away["port"] == extra.port
        await gateway.post("/v1/clusters/local-3/drain", headers=bearer(admin))
        home = await create_db(gateway, token, "home")
        assert home["port"] != extra.port
        extra.stop()
        async with EventProbe(amqp, keys="db.*") as probe:
            await publish_event(amqp, "account.suspended", {"user_id": uid, "reason": "overdue"})
            await probe.wait_for("db.suspended", lambda e: e["data"]["database_id"] == home["id"])
            assert not await can_login(home["uri"])
            # the account's state is recorded although one of its servers is down
            new = await gateway.post("/v1/databases", json={"name": "x"}, headers=bearer(token))
            assert_problem(new, 403, "account_suspended")
            got = await gateway.get(f"/v1/databases/{away['id']}", headers=bearer(token))
            assert got.json()["status"] == "ready"  # not applied there yet, and not claimed
            extra.start()
            await probe.wait_for(
                "db.suspended", lambda e: e["data"]["database_id"] == away["id"], timeout=60
            )
        assert not await can_login(away["uri"])
        got = await gateway.get(f"/v1/databases/{away['id']}", headers=bearer(token))
        assert got.json()["status"] == "suspended"
        # nothing was dead-lettered on the way
        dead = await _queue_depth(amqp, "provisioner.account-suspended.dead")
        assert dead == 0
    finally:
        extra.start()
        await gateway.post("/v1/clusters/local-3/drain", headers=bearer(admin))


async def _queue_depth(amqp: str, queue: str) -> int:
    conn = await aio_pika.connect(amqp)
    try:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await conn.close()
