"""Signing keys that identity drops or revokes stop verifying on every service, also for
tokens a service has verified (and cached) before."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import jwt
import psycopg

from tests.integration.helpers import admin_token, assert_problem, bearer, signup

ROUTES = ["/v1/users/me", "/v1/databases"]  # identity and the provisioner


async def refused_everywhere_within(gateway: httpx.AsyncClient, token: str, limit: float) -> float:
    """Seconds until every route refuses `token`; fails past `limit`."""
    start = time.monotonic()
    pending = set(ROUTES)
    while pending:
        for route in list(pending):
            if (await gateway.get(route, headers=bearer(token))).status_code == 401:
                pending.discard(route)
        elapsed = time.monotonic() - start
        assert elapsed < limit, f"{pending} still accept the token after {elapsed:.1f}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


async def test_an_emergency_revocation_stops_its_tokens_everywhere_within_five_seconds(
    gateway: httpx.AsyncClient, stack
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    for route in ROUTES:  # verified and cached by each service
        assert (await gateway.get(route, headers=bearer(token))).status_code == 200
    admin = await admin_token(gateway, stack.env)
    forbidden = await gateway.post(f"/v1/auth/signing-keys/{kid}/revoke", headers=bearer(token))
    assert_problem(forbidden, 403, "forbidden")
    revoked = await gateway.post(f"/v1/auth/signing-keys/{kid}/revoke", headers=bearer(admin))
    assert revoked.status_code == 200, revoked.text
    await refused_everywhere_within(gateway, token, limit=5.0)
    jwks = await gateway.get("/.well-known/jwks.json")
    assert kid not in {k["kid"] for k in jwks.json()["keys"]}
    # the platform goes on with a new key
    fresh = await signup(gateway)
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] != kid
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(fresh["access_token"]))).status_code == 200
    missing = await gateway.post(
        "/v1/auth/signing-keys/no-such-kid/revoke", headers=bearer(fresh["access_token"])
    )
    assert missing.status_code in (403, 404)


async def test_a_key_dropped_from_the_jwks_stops_verifying_within_a_minute(
    gateway: httpx.AsyncClient, stack
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(token))).status_code == 200
    admin = await admin_token(gateway, stack.env)
    rotated = await gateway.post("/v1/auth/signing-keys/rotate", headers=bearer(admin))
    assert rotated.status_code == 200
    # still trusted during the overlap ...
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(token))).status_code == 200
    # ... and once the overlap has passed, identity drops it from the JWKS
    async with await psycopg.AsyncConnection.connect(
        stack.config.database_dsn("identity"), autocommit=True
    ) as conn:
        await conn.execute(
            "UPDATE signing_keys SET retired_at = now() - interval '30 days' WHERE kid = %s",
            (kid,),
        )
    await refused_everywhere_within(gateway, token, limit=60.0)


async def test_rotate_with_revoke_old_from_the_command_line(
    gateway: httpx.AsyncClient, stack
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(token))).status_code == 200
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shardz_identity", "rotate-signing-key", "--revoke-old"],
        env=stack.prepared.process_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    new_kid = done.stdout.strip().splitlines()[-1]
    await refused_everywhere_within(gateway, token, limit=5.0)
    jwks = await gateway.get("/.well-known/jwks.json")
    assert [k["kid"] for k in jwks.json()["keys"]] == [new_kid]
