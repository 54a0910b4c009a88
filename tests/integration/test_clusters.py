"""Several tenant clusters: placement by load, draining, and a cluster that is down."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.helpers import (
    admin_token,
    assert_problem,
    bearer,
    create_db,
    signup,
    wait_for,
)


async def clusters(gateway, token: str) -> dict[str, dict]:
    resp = await gateway.get("/v1/clusters", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    assert "admin_dsn" not in resp.text and "shardz_admin:" not in resp.text
    return {c["name"]: c for c in resp.json()["items"]}


def least_loaded(state: dict[str, dict]) -> str:
    active = [c for c in state.values() if c["status"] == "active" and c["up"]]
    return min(active, key=lambda c: (c["databases"] / c["capacity"], c["name"]))["name"]


async def test_placement_spreads_by_load_and_respects_draining_and_outages(gateway, stack) -> None:
    admin = await admin_token(gateway, stack.env)
    user = await signup(gateway)
    token = user["access_token"]
    assert_problem(await gateway.get("/v1/clusters", headers=bearer(token)), 403, "forbidden")
    extra = stack.start_extra_cluster(index=2)
    reg = {**extra.registration(), "name": "local-2", "capacity": 4}
    added = await gateway.post("/v1/clusters", json=reg, headers=bearer(admin))
    assert added.status_code == 201, added.text
    bad = await gateway.post(
        "/v1/clusters",
        json={
            **reg,
            "name": "nowhere",
            "admin_dsn": reg["admin_dsn"].replace(str(extra.port), "1"),
        },
        headers=bearer(admin),
    )
    assert_problem(bad, 503, "unavailable")
    ports = {}
    try:
        # each new database goes to the active cluster with the lowest load ratio
        placed = set()
        for i in range(4):
            state = await clusters(gateway, admin)
            expected = least_loaded(state)
            db = await create_db(gateway, token, f"spread-{i}", plan="db-starter")
            ports[db["id"]] = db["port"]
            assert db["port"] == state[expected]["port"], (state, db["port"])
            placed.add(expected)
        assert placed == {"local-1", "local-2"}  # they spread over both servers
        db2 = next(d for d, p in ports.items() if p == extra.port)
        # a database on local-2 takes logins there, with password auth
        listed = {
            d["id"]: d
            for d in (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
        }
        assert listed[db2]["port"] == extra.port

        # draining local-1: new databases go to local-2 even though it is fuller
        drained = await gateway.post("/v1/clusters/local-1/drain", headers=bearer(admin))
        assert drained.json()["status"] == "draining"
        on2 = await create_db(gateway, token, "while-drained", plan="db-starter")
        assert on2["port"] == extra.port
        await gateway.post("/v1/clusters/local-1/activate", headers=bearer(admin))

        # local-2 down and local-1 drained: 503, and nothing is left behind
        await gateway.post("/v1/clusters/local-1/drain", headers=bearer(admin))
        extra.stop()
        before = (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
        down = await gateway.post(
            "/v1/databases", json={"name": "nowhere", "plan": "db-starter"}, headers=bearer(token)
        )
        assert_problem(down, 503, "unavailable")
        after = (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
        assert after == before
        extra.start()
        async with await psycopg.AsyncConnection.connect(extra.admin_dsn) as conn:
            leftovers = await (
                await conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'shz_d_%%'")
            ).fetchone()
        assert leftovers[0] == len([p for p in ports.values() if p == extra.port]) + 1
    finally:
        await gateway.post("/v1/clusters/local-1/activate", headers=bearer(admin))
        await gateway.post("/v1/clusters/local-2/drain", headers=bearer(admin))
        for db_id in ports:
            await gateway.delete(f"/v1/databases/{db_id}", headers=bearer(token))


async def test_tenants_holding_every_connection_do_not_starve_the_platform(gateway, stack) -> None:
    admin = await admin_token(gateway, stack.env)
    # ten connections for tenants, fifteen kept for the platform's (superuser) admin pools
    small = stack.start_extra_cluster(
        index=4, settings={"max_connections": "25", "superuser_reserved_connections": "15"}
    )
    reg = {**small.registration(), "name": "local-4", "capacity": 10}
    assert (await gateway.post("/v1/clusters", json=reg, headers=bearer(admin))).status_code == 201
    before = await clusters(gateway, admin)
    others = [n for n, c in before.items() if n != "local-4" and c["status"] == "active"]
    hogs: list[psycopg.AsyncConnection] = []
    tenant, other = await signup(gateway), await signup(gateway)
    try:
        for name in others:
            await gateway.post(f"/v1/clusters/{name}/drain", headers=bearer(admin))
        victim = await create_db(gateway, other["access_token"], "victim")
        hoarded = [await create_db(gateway, tenant["access_token"], f"hog-{i}") for i in range(2)]
        assert {d["port"] for d in [victim, *hoarded]} == {small.port}
        # every connection tenants may hold on local-4 (the platform's own use some too)
        for db in hoarded * 5:
            try:
                hogs.append(await psycopg.AsyncConnection.connect(db["uri"]))
            except psycopg.OperationalError as exc:
                assert "reserved" in str(exc)
                break
        with pytest.raises(psycopg.OperationalError, match="reserved"):
            await psycopg.AsyncConnection.connect(victim["uri"], connect_timeout=5)
        for name in others:
            await gateway.post(f"/v1/clusters/{name}/activate", headers=bearer(admin))

        # the worker's next check (every 2 s here) records it for placement
        await wait_for(lambda: _seen_full(stack, "local-4"), timeout=30)
        # the platform's own work on the full cluster goes through the reserved slots ...
        rotated = await gateway.post(
            f"/v1/databases/{victim['id']}/rotate-credentials",
            headers=bearer(other["access_token"]),
        )
        assert rotated.status_code == 200, rotated.text
        deleted = await gateway.delete(
            f"/v1/databases/{victim['id']}", headers=bearer(other["access_token"])
        )
        assert deleted.status_code == 202

        async def dropped() -> bool:
            async with await psycopg.AsyncConnection.connect(small.admin_dsn) as conn:
                row = await (
                    await conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (victim["database"],)
                    )
                ).fetchone()
            return row is None

        await wait_for(dropped, timeout=30)
        # ... and a new database goes where it can take logins, not to the full cluster
        fresh = await create_db(gateway, other["access_token"], "elsewhere")
        assert fresh["port"] != small.port
        async with await psycopg.AsyncConnection.connect(fresh["uri"]) as conn:
            await conn.execute("SELECT 1")
    finally:
        for conn in hogs:
            await conn.close()
        for name in others:
            await gateway.post(f"/v1/clusters/{name}/activate", headers=bearer(admin))
        await gateway.post("/v1/clusters/local-4/drain", headers=bearer(admin))


async def _seen_full(stack, name: str) -> bool:
    """Whether the worker has recorded that tenants hold every connection they may there."""
    async with await psycopg.AsyncConnection.connect(
        stack.config.database_dsn("provisioner")
    ) as conn:
        row = await (
            await conn.execute(
                "SELECT live_connections >= connection_budget FROM clusters WHERE name = %s",
                (name,),
            )
        ).fetchone()
    return bool(row and row[0])


async def test_a_cluster_whose_disk_is_nearly_full_takes_no_new_database(gateway, stack) -> None:
    """One tenant's growth must not leave the next database without room: a cluster
    registered with its disk size stops receiving databases once they leave less than the
    reserve (20 %) free, and new ones go where there is room (503 when nowhere)."""
    admin = await admin_token(gateway, stack.env)
    small = stack.start_extra_cluster(index=7)  # 5 and 6 are the moves tests'
    disk = 80 * 1024 * 1024  # an empty cluster's own databases take about 23 MB of it
    reg = {**small.registration(), "name": "local-7", "capacity": 50, "disk_bytes": disk}
    assert (await gateway.post("/v1/clusters", json=reg, headers=bearer(admin))).status_code == 201
    others = [
        n
        for n, c in (await clusters(gateway, admin)).items()
        if n != "local-7" and c["status"] == "active"
    ]
    user = await signup(gateway)
    token = user["access_token"]
    try:
        for name in others:
            await gateway.post(f"/v1/clusters/{name}/drain", headers=bearer(admin))
        grower = await create_db(gateway, token, "grower")
        assert grower["port"] == small.port
        async with await psycopg.AsyncConnection.connect(grower["uri"], autocommit=True) as conn:
            await conn.execute(
                # ~1 KB rows stay below the TOAST threshold: stored as written, uncompressed
                "CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 30) AS pad"
                " FROM generate_series(1, 40000) g"
            )

        async def measured_full() -> bool:
            state = (await clusters(gateway, admin))["local-7"]
            return (state["used_bytes"] or 0) > 0.8 * disk

        await wait_for(measured_full, timeout=30)
        state = (await clusters(gateway, admin))["local-7"]
        assert state["disk_bytes"] == disk
        refused = await gateway.post(
            "/v1/databases", json={"name": "no-room"}, headers=bearer(token)
        )
        assert_problem(refused, 503, "unavailable")
        listed = await gateway.get("/v1/databases", headers=bearer(token))
        assert [d["name"] for d in listed.json()["items"]] == ["grower"]

        for name in others:
            await gateway.post(f"/v1/clusters/{name}/activate", headers=bearer(admin))
        elsewhere = await create_db(gateway, token, "elsewhere")
        assert elsewhere["port"] != small.port
    finally:
        for name in others:
            await gateway.post(f"/v1/clusters/{name}/activate", headers=bearer(admin))
        await gateway.post("/v1/clusters/local-7/drain", headers=bearer(admin))
