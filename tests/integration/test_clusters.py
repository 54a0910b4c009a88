"""Several tenant clusters: placement by load, draining, and a cluster that is down."""

from __future__ import annotations

import psycopg

from tests.integration.helpers import admin_token, assert_problem, bearer, create_db, signup


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
