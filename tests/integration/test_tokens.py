"""Forged, expired and rotated tokens, as every service sees them."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import psycopg
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization

from tests.integration.helpers import assert_problem, bearer, signup

ROUTES = ["/v1/users/me", "/v1/databases"]  # identity and the provisioner


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def active_private_key(stack) -> tuple[str, object]:
    dsn = stack.config.database_dsn("identity")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        kid, blob = await (
            await conn.execute("SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL")
        ).fetchone()
    pem = Fernet(stack.env["IDENTITY_SECRET_KEY"].encode()).decrypt(bytes(blob))
    return kid, serialization.load_pem_private_key(pem, password=None)


def claims(sub: str, **over) -> dict:
    now = int(time.time())
    base = {
        "iss": "smallshardz-identity",
        "aud": "smallshardz",
        "sub": sub,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "role": "user",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


async def refused_everywhere(gateway: httpx.AsyncClient, token: str) -> None:
    for route in ROUTES:
        assert_problem(await gateway.get(route, headers=bearer(token)), 401, "unauthenticated")


async def test_forged_tokens_are_refused_by_every_service(gateway, stack) -> None:
    user = await signup(gateway)
    good = user["access_token"]
    header = jwt.get_unverified_header(good)
    sub = user["user"]["id"]
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(good))).status_code == 200

    # alg: none
    await refused_everywhere(
        gateway, f"{b64({'alg': 'none', 'kid': header['kid']})}.{b64(claims(sub))}."
    )
    # HS256 keyed with the public key (algorithm confusion)
    jwks = (await gateway.get("/.well-known/jwks.json")).json()
    public_x = next(k for k in jwks["keys"] if k["kid"] == header["kid"])["x"]
    for secret in (public_x.encode(), base64.urlsafe_b64decode(public_x + "==")):
        forged = jwt.encode(claims(sub), secret, algorithm="HS256", headers={"kid": header["kid"]})
        await refused_everywhere(gateway, forged)
    # a tampered payload under the genuine signature: another user's id, or admin
    h, p, s = good.split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=="))
    for change in ({"sub": str(uuid.uuid4())}, {"role": "admin"}):
        await refused_everywhere(gateway, f"{h}.{b64({**payload, **change})}.{s}")
    # garbage and empty
    for junk in ("not-a-jwt", "a.b.c", "Bearer"):
        for route in ROUTES:
            resp = await gateway.get(route, headers={"Authorization": f"Bearer {junk}"})
            assert_problem(resp, 401, "unauthenticated")


async def test_expired_or_misaddressed_tokens_signed_by_the_real_key_are_refused(
    gateway, stack
) -> None:
    user = await signup(gateway)
    sub = user["user"]["id"]
    kid, key = await active_private_key(stack)
    now = int(time.time())

    def sign(c: dict) -> str:
        return jwt.encode(c, key, algorithm="EdDSA", headers={"kid": kid})

    # the control: our hand-made token is accepted, so the refusals below are about claims
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(sign(claims(sub))))).status_code == 200
    await refused_everywhere(gateway, sign(claims(sub, iat=now - 1000, exp=now - 60)))
    await refused_everywhere(gateway, sign(claims(sub, aud="someone-else")))
    await refused_everywhere(gateway, sign(claims(sub, iss="https://evil.example")))
    for missing in ("exp", "iat", "jti"):
        await refused_everywhere(gateway, sign(claims(sub, **{missing: None})))


async def test_signing_key_rotation_keeps_old_tokens_valid_and_new_ones_work(
    gateway, stack
) -> None:
    admin = await gateway.post(
        "/v1/auth/login",
        json={
            "email": stack.env["IDENTITY_BOOTSTRAP_ADMIN_EMAIL"],
            "password": stack.env["IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"],
        },
    )
    assert admin.status_code == 200, admin.text
    admin_token = admin.json()["access_token"]
    user = await signup(gateway)
    old = user["access_token"]
    forbidden = await gateway.post("/v1/auth/signing-keys/rotate", headers=bearer(old))
    assert_problem(forbidden, 403, "forbidden")
    rotated = await gateway.post("/v1/auth/signing-keys/rotate", headers=bearer(admin_token))
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]
    kids = {k["kid"] for k in (await gateway.get("/.well-known/jwks.json")).json()["keys"]}
    assert {new_kid, jwt.get_unverified_header(old)["kid"]} <= kids
    refreshed = await gateway.post(
        "/v1/auth/refresh", json={"refresh_token": user["refresh_token"]}
    )
    fresh = refreshed.json()["access_token"]
    # identity replicas pick the new key up within their key cache's lifetime
    deadline = time.monotonic() + 10
    while jwt.get_unverified_header(fresh)["kid"] != new_kid and time.monotonic() < deadline:
        fresh = (
            await gateway.post(
                "/v1/auth/login",
                json={
                    "email": user["user"]["email"],
                    "password": "correct horse battery",
                },
            )
        ).json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    for route in ROUTES:
        assert (await gateway.get(route, headers=bearer(old))).status_code == 200
        assert (await gateway.get(route, headers=bearer(fresh))).status_code == 200


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/users/me/extra"])
async def test_unknown_routes_answer_problem_json(gateway, path) -> None:
    assert_problem(await gateway.get(path), 404, "not_found")
