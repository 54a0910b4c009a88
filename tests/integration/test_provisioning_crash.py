"""Kill the provisioner in the middle of the saga; after a restart the reconciler converges."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from tests.integration.helpers import (
    admin_token,
    bearer,
    can_login,
    faulty_provisioner,
    free_port,
    provisioner_process,
    signup,
    wait_for,
    wait_http,
)


async def on_server(stack, pattern: str) -> tuple[set[str], set[str]]:
    async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0]) as conn:
        roles = await (
            await conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,))
        ).fetchall()
        dbs = await (
            await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))
        ).fetchall()
    return {r[0] for r in roles}, {d[0] for d in dbs}


async def intents(stack, user_id: str) -> list[tuple[str, str, str]]:
    dsn = stack.config.database_dsn("provisioner")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (
            await conn.execute(
                "SELECT status, db_name, role_name FROM databases WHERE user_id = %s", (user_id,)
            )
        ).fetchall()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize(
    ("step", "role_left", "db_left"),
    [("after_role", True, False), ("after_ddl", True, True)],
)
async def test_crash_mid_saga_converges_after_restart(
    gateway, stack, step: str, role_left: bool, db_left: bool
) -> None:
    user = await signup(gateway)
    uid, token = user["user"]["id"], user["access_token"]
    port = free_port()
    with faulty_provisioner(stack, step, PROVISIONER_PORT=str(port)) as api:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as direct:
            with pytest.raises(httpx.HTTPError):  # the process dies mid-request
                await direct.post("/v1/databases", json={"name": "doomed"}, headers=bearer(token))
        assert api.wait(10) == 137
    [(status, db_name, role_name)] = await intents(stack, uid)
    assert status == "provisioning"
    roles, dbs = await on_server(stack, "shz_%")
    assert (role_name in roles, db_name in dbs) == (role_left, db_left)
    # the API tells the truth meanwhile: the database is not ready
    listed = (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"]
    assert [d["status"] for d in listed] == ["provisioning"]

    # "restart": a worker whose reconciler treats the intent as abandoned
    with provisioner_process(
        stack,
        "worker",
        PROVISIONER_PROVISIONING_TIMEOUT_SECONDS="1",
        PROVISIONER_RECONCILE_INTERVAL_SECONDS="0.5",
    ):

        async def converged() -> bool:
            roles, dbs = await on_server(stack, "shz_%")
            return not await intents(stack, uid) and role_name not in roles and db_name not in dbs

        await wait_for(converged, timeout=30)
    assert (await gateway.get("/v1/databases", headers=bearer(token))).json()["items"] == []
    # no orphan is left on any cluster, and the user can create the database after all
    admin = await admin_token(gateway, stack.env)
    report = (await gateway.get("/v1/clusters/orphans", headers=bearer(admin))).json()
    assert all(role_name not in o["roles"] and db_name not in o["databases"] for o in report)
    again = await gateway.post("/v1/databases", json={"name": "doomed"}, headers=bearer(token))
    assert again.status_code == 201
    await asyncio.sleep(0)


async def test_orphans_on_a_cluster_are_reported(gateway, stack) -> None:
    admin = await admin_token(gateway, stack.env)
    async with await psycopg.AsyncConnection.connect(stack.tenant_dsns[0], autocommit=True) as conn:
        await conn.execute("CREATE ROLE shz_u_0000000000000000000000000000dead")
        try:
            report = (await gateway.get("/v1/clusters/orphans", headers=bearer(admin))).json()
            local = next(o for o in report if o["cluster"] == "local-1")
            assert "shz_u_0000000000000000000000000000dead" in local["roles"]
        finally:
            await conn.execute("DROP ROLE shz_u_0000000000000000000000000000dead")


async def test_no_environment_variable_arms_a_crash_point(gateway, stack) -> None:
    user = await signup(gateway)
    port = free_port()
    env = {"PROVISIONER_PORT": str(port), "PROVISIONER_FAULT_INJECTION": "after_ddl"}
    with provisioner_process(stack, "api", **env) as api:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as direct:
            made = await direct.post(
                "/v1/databases", json={"name": "safe"}, headers=bearer(user["access_token"])
            )
        assert made.status_code == 201, made.text
        assert api.poll() is None


async def test_a_rotation_that_dies_midway_leaves_the_stored_credential_working(
    gateway, stack
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    made = await gateway.post("/v1/databases", json={"name": "keys"}, headers=bearer(token))
    assert made.status_code == 201, made.text
    db = made.json()
    port = free_port()
    with faulty_provisioner(stack, "rotation_after_ddl", PROVISIONER_PORT=str(port)) as api:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as direct:
            with pytest.raises(httpx.HTTPError):  # dies after the server took a new password
                await direct.post(
                    f"/v1/databases/{db['id']}/rotate-credentials", headers=bearer(token)
                )
        assert api.wait(10) == 137
    assert not await can_login(db["uri"])  # the server holds a password nobody received
    with provisioner_process(
        stack,
        "worker",
        PROVISIONER_PROVISIONING_TIMEOUT_SECONDS="1",
        PROVISIONER_RECONCILE_INTERVAL_SECONDS="0.5",
    ):
        await wait_for(lambda: can_login(db["uri"]), timeout=30)
    rotated = await gateway.post(
        f"/v1/databases/{db['id']}/rotate-credentials", headers=bearer(token)
    )
    assert rotated.status_code == 200, rotated.text
    assert await can_login(rotated.json()["uri"])
    assert not await can_login(db["uri"])
