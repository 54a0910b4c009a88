"""Identity through the gateway, with a second service (the provisioner) verifying tokens."""

from __future__ import annotations

import asyncio
import time

import httpx
import psycopg

from tests.integration.helpers import PASSWORD, assert_problem, bearer, new_email, signup


async def test_signup_token_is_verified_by_another_service(gateway: httpx.AsyncClient) -> None:
    email = new_email()
    body = await signup(gateway, email)
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 900
    assert body["user"]["email"] == email
    me = await gateway.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == body["user"]["id"] and me.json()["status"] == "active"
    # the provisioner verifies the same token locally against identity's JWKS
    dbs = await gateway.get("/v1/databases", headers=bearer(body["access_token"]))
    assert dbs.status_code == 200, dbs.text
    assert dbs.json() == {"items": []}
    assert_problem(await gateway.get("/v1/databases"), 401, "unauthenticated")


async def test_signup_rejects_duplicates_and_weak_passwords(gateway: httpx.AsyncClient) -> None:
    email = new_email()
    await signup(gateway, email)
    dup = await gateway.post("/v1/auth/signup", json={"email": email.upper(), "password": PASSWORD})
    assert_problem(dup, 409, "conflict")
    weak = await gateway.post("/v1/auth/signup", json={"email": new_email(), "password": "pw-Xq7"})
    problem = assert_problem(weak, 422, "validation_error")
    assert any(e["loc"][-1] == "password" for e in problem["errors"])
    assert "pw-Xq7" not in weak.text  # the rejected password is not echoed
    garbage = await gateway.post(
        "/v1/auth/signup", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_problem(garbage, 422, "validation_error")


async def test_login_refresh_rotation_and_reuse_revokes_the_family(
    gateway: httpx.AsyncClient,
) -> None:
    email = new_email()
    await signup(gateway, email)
    login = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    first = login.json()["refresh_token"]
    r1 = await gateway.post("/v1/auth/refresh", json={"refresh_token": first})
    assert r1.status_code == 200
    second = r1.json()["refresh_token"]
    assert second != first
    # replaying the spent token is theft: the whole family dies, including `second`
    assert_problem(
        await gateway.post("/v1/auth/refresh", json={"refresh_token": first}),
        401,
        "unauthenticated",
    )
    assert_problem(
        await gateway.post("/v1/auth/refresh", json={"refresh_token": second}),
        401,
        "unauthenticated",
    )
    # another session of the same user (another family) is untouched
    other = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    r2 = await gateway.post(
        "/v1/auth/refresh", json={"refresh_token": other.json()["refresh_token"]}
    )
    assert r2.status_code == 200
    # logout ends that family
    out = await gateway.post("/v1/auth/logout", json={"refresh_token": r2.json()["refresh_token"]})
    assert out.status_code == 204
    assert_problem(
        await gateway.post("/v1/auth/refresh", json={"refresh_token": r2.json()["refresh_token"]}),
        401,
        "unauthenticated",
    )


async def test_failed_logins_are_rate_limited_per_account(gateway: httpx.AsyncClient) -> None:
    email = new_email()
    await signup(gateway, email)
    for _ in range(5):
        bad = await gateway.post(
            "/v1/auth/login", json={"email": email, "password": "wrong-pass-1"}
        )
        assert_problem(bad, 401, "unauthenticated")
    limited = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0
    # other accounts from the same address still sign in
    other = new_email()
    await signup(gateway, other)
    ok = await gateway.post("/v1/auth/login", json={"email": other, "password": PASSWORD})
    assert ok.status_code == 200


async def test_failed_logins_are_rate_limited_per_client_address(stack) -> None:
    # Requests from 127.0.0.2 reach the gateway from another client address.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(
        base_url=stack.gateway_url,
        headers={"Host": stack.host("api")},
        transport=transport,
        timeout=30,
    ) as client:
        statuses = []
        for _ in range(60):
            resp = await client.post(
                "/v1/auth/login", json={"email": new_email(), "password": "wrong-pass-1"}
            )
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
        assert int(resp.headers["Retry-After"]) > 0
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Host": stack.host("api")}, timeout=30
    ) as here:
        email = new_email()
        await signup(here, email)
        ok = await here.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert ok.status_code == 200  # 127.0.0.1 is not limited by 127.0.0.2's failures


async def test_revoked_api_key_is_refused_by_another_service_within_two_seconds(
    gateway: httpx.AsyncClient,
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    created = await gateway.post("/v1/api-keys", json={"name": "ci"}, headers=bearer(token))
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("shz_") and key["key"].startswith(key["prefix"])
    assert (await gateway.get("/v1/databases", headers=bearer(key["key"]))).status_code == 200
    assert (await gateway.get("/v1/users/me", headers=bearer(key["key"]))).status_code == 200
    listed = (await gateway.get("/v1/api-keys", headers=bearer(token))).json()["items"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert "key" not in listed[0] and listed[0]["last_used_at"] is not None
    revoked_at = time.monotonic()
    assert (
        await gateway.delete(f"/v1/api-keys/{key['id']}", headers=bearer(token))
    ).status_code == 204
    while True:
        resp = await gateway.get("/v1/databases", headers=bearer(key["key"]))
        if resp.status_code == 401:
            break
        assert time.monotonic() - revoked_at < 2.0, "revoked key still accepted after 2 s"
        await asyncio.sleep(0.05)
    assert time.monotonic() - revoked_at < 2.0
    assert_problem(resp, 401, "unauthenticated")
    assert_problem(
        await gateway.get("/v1/users/me", headers=bearer(key["key"])), 401, "unauthenticated"
    )
    # another user's key id is not found, not forbidden
    other = await signup(gateway)
    assert_problem(
        await gateway.delete(f"/v1/api-keys/{key['id']}", headers=bearer(other["access_token"])),
        404,
        "not_found",
    )
    assert_problem(
        await gateway.get("/v1/databases", headers=bearer("shz_made_up")), 401, "unauthenticated"
    )


async def test_account_deletion_signs_out_everywhere(gateway: httpx.AsyncClient, stack) -> None:
    email = new_email()
    user = await signup(gateway, email)
    token = user["access_token"]
    key = (await gateway.post("/v1/api-keys", json={"name": "k"}, headers=bearer(token))).json()
    assert (await gateway.delete("/v1/users/me", headers=bearer(token))).status_code == 202
    assert_problem(await gateway.get("/v1/users/me", headers=bearer(token)), 401, "unauthenticated")
    assert_problem(
        await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
        401,
        "unauthenticated",
    )
    assert_problem(
        await gateway.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]}),
        401,
        "unauthenticated",
    )
    assert_problem(
        await gateway.get("/v1/databases", headers=bearer(key["key"])), 401, "unauthenticated"
    )
    # the provisioner learns of it through user.deleted
    dsn = stack.config.database_dsn("provisioner")
    deadline = time.monotonic() + 10
    status = None
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = await (
                await conn.execute(
                    "SELECT status FROM accounts WHERE user_id = %s", (user["user"]["id"],)
                )
            ).fetchone()
            status = row[0] if row else None
            if status == "deleted":
                break
            await asyncio.sleep(0.1)
    assert status == "deleted"
    # the address can sign up again as a new account
    again = await signup(gateway, email)
    assert again["user"]["id"] != user["user"]["id"]
