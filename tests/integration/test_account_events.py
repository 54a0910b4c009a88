"""The provisioner follows account events: suspension stops logins, deletion removes all."""

from __future__ import annotations

import psycopg
import pytest

from shardz_common.testing.events import EventProbe
from tests.integration.helpers import (
    assert_problem,
    bearer,
    create_db,
    publish_event,
    signup,
    wait_for,
)


async def can_login(uri: str) -> bool:
    try:
        async with await psycopg.AsyncConnection.connect(uri, connect_timeout=5) as conn:
            await conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


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
