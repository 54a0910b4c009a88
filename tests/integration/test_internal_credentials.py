"""The terminal gateway's way in: an internal call that only services can make."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.integration.helpers import assert_problem, create_db, signup


async def test_session_credentials_are_internal_authenticated_and_owner_scoped(
    gateway, stack
) -> None:
    user = await signup(gateway)
    other = await signup(gateway)
    db = await create_db(gateway, user["access_token"])
    body = {"database_id": db["id"], "user_id": user["user"]["id"]}
    # never through the gateway
    routed = await gateway.post("/internal/session-credentials", json=body)
    assert routed.status_code == 404
    url = f"{stack.internal_urls['provisioner']}/internal/session-credentials"
    secret = stack.env["PROVISIONER_INTERNAL_SECRET"]
    async with httpx.AsyncClient() as direct:
        for auth in (None, "Bearer nope", f"Bearer {stack.env['IDENTITY_INTERNAL_SECRET']}"):
            headers = {"Authorization": auth} if auth else {}
            assert_problem(
                await direct.post(url, json=body, headers=headers), 401, "unauthenticated"
            )
        ok = await direct.post(url, json=body, headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200, ok.text
        cred = ok.json()
        # a platform-owned login that acts as the tenant's role, never the tenant's password
        assert cred["role"] == db["username"] and cred["database"] == db["database"]
        assert cred["username"] != db["username"] and cred["password"] != db["password"]
        async with await psycopg.AsyncConnection.connect(
            host=cred["host"],
            port=cred["port"],
            dbname=cred["database"],
            user=cred["username"],
            password=cred["password"],
            autocommit=True,
        ) as conn:
            # on its own the login can do nothing in the database ...
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute("CREATE TABLE mine (x int)")
            # ... and as the tenant's role it can do what the tenant can
            await conn.execute(f'SET ROLE "{cred["role"]}"')
            assert (await (await conn.execute("SELECT current_user")).fetchone())[0] == db[
                "username"
            ]
            await conn.execute("CREATE TABLE mine (x int)")
        # another user's id never gets this database's credential
        theirs = {"database_id": db["id"], "user_id": other["user"]["id"]}
        denied = await direct.post(url, json=theirs, headers={"Authorization": f"Bearer {secret}"})
        assert_problem(denied, 404, "not_found")
    # and the credential is not written in the clear in the provisioner's own database
    dsn = stack.config.database_dsn("provisioner")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        stored = (
            await (
                await conn.execute("SELECT password FROM databases WHERE id = %s", (db["id"],))
            ).fetchone()
        )[0]
    assert cred["password"].encode() not in bytes(stored)
