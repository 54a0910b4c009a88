"""Hostile keys, other users' objects and presigned links."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from tests.integration.helpers import assert_problem, bearer, signup
from tests.integration.storage_support import invariant, put, raw_request, space

HOSTILE = [
    ("/v1/storage/objects//abs", "leading slash (kept by the gateway, not merged)"),
    ("/v1/storage/objects/a//b", "empty segment"),
    ("/v1/storage/objects/a/", "empty last segment"),
    ("/v1/storage/objects/./a", "dot segment"),
    ("/v1/storage/objects/a/../b", "dot-dot segment"),
    ("/v1/storage/objects/a/%2e%2e/b", "encoded dot-dot segment"),
    ("/v1/storage/objects/a%2F..%2Fb", "encoded slashes around dot-dot"),
    ("/v1/storage/objects/a%01b", "control character"),
    ("/v1/storage/objects/a%7Fb", "DEL"),
    ("/v1/storage/objects/a%C2%85b", "C1 control character"),
    ("/v1/storage/objects/bad%FFutf8", "invalid UTF-8"),
    ("/v1/storage/objects/e%CC%81", "not NFC (e + combining acute)"),
    ("/v1/storage/objects/" + "k" * 1025, "longer than 1,024 bytes"),
    ("/v1/storage/objects/" + "%C3%A9" * 513, "1,026 bytes of UTF-8"),
]


@pytest.mark.parametrize(("target", "why"), HOSTILE, ids=[w for _, w in HOSTILE])
async def test_hostile_keys_are_refused_and_nothing_is_written(gateway, stack, target, why) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    await space(gateway, token)
    status, body = await raw_request(
        stack, "PUT", target, {"Authorization": f"Bearer {token}"}, b"payload"
    )
    assert status == 422, (why, status, body[:300])
    assert b'"validation_error"' in body
    state = await invariant(stack, uid)
    assert (state["used"], state["count"], state["reserved"]) == (0, 0, 0)
    listed = await gateway.get("/v1/storage/objects", headers=bearer(token))
    assert listed.json()["items"] == []


async def test_the_longest_allowed_key_and_an_encoded_nul(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    longest = "é" * 512  # 1,024 bytes
    assert (await put(gateway, token, longest, b"x")).status_code == 201
    status, _ = await raw_request(
        stack, "PUT", "/v1/storage/objects/a%00b", {"Authorization": f"Bearer {token}"}, b"x"
    )
    assert status in (400, 422)
    assert (await space(gateway, token))["object_count"] == 1


async def test_another_users_keys_are_404_and_invisible(gateway, stack) -> None:
    alice, mallory = await signup(gateway), await signup(gateway)
    a, m = alice["access_token"], mallory["access_token"]
    assert (await put(gateway, a, "secret/plan.txt", b"alice's")).status_code == 201
    path = "/v1/storage/objects/secret/plan.txt"
    for method in ("GET", "HEAD", "DELETE"):
        resp = await gateway.request(method, path, headers=bearer(m))
        assert resp.status_code == 404, method
    assert_problem(await gateway.get(path, headers=bearer(m)), 404, "not_found")
    presign = await gateway.post(
        "/v1/storage/presign", json={"key": "secret/plan.txt", "expires_in": 60}, headers=bearer(m)
    )
    assert_problem(presign, 404, "not_found")
    listed = await gateway.get("/v1/storage/objects", headers=bearer(m))
    assert listed.json()["items"] == []
    # mallory's own object under the same key is hers alone; alice's stays as it was
    assert (await put(gateway, m, "secret/plan.txt", b"mallory's")).status_code == 201
    assert (await gateway.get(path, headers=bearer(a))).content == b"alice's"
    assert (await space(gateway, a))["used_bytes"] == len(b"alice's")
    # a presigned link of alice's cannot be turned onto mallory's space by editing the user
    link = (
        await gateway.post(
            "/v1/storage/presign",
            json={"key": "secret/plan.txt", "expires_in": 60},
            headers=bearer(a),
        )
    ).json()["url"]
    forged = link.replace(alice["user"]["id"], mallory["user"]["id"])
    assert_problem(await _follow(gateway, forged), 403, "forbidden")


async def _follow(gateway: httpx.AsyncClient, url: str) -> httpx.Response:
    """Follow a presigned link through the test gateway, without any credential."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.hostname.startswith("api.")
    path = urlunsplit(("", "", parts.path, parts.query, ""))
    return await gateway.get(path, headers={"Authorization": ""})


async def test_presigned_links_expire_and_die_with_the_object(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    assert (await put(gateway, token, "share/a.txt", b"version one")).status_code == 201
    made = await gateway.post(
        "/v1/storage/presign", json={"key": "share/a.txt", "expires_in": 2}, headers=bearer(token)
    )
    assert made.status_code == 200, made.text
    url = made.json()["url"]
    assert url.startswith(f"http://api.{stack.base_domain}:{stack.config.gateway_port}/")
    assert stack.env["STORAGE_S3_ENDPOINT"] not in url
    got = await _follow(gateway, url)
    assert got.status_code == 200 and got.content == b"version one"
    assert got.headers["content-disposition"].startswith("attachment;")
    ranged = await gateway.get(
        urlsplit(url).path + "?" + urlsplit(url).query, headers={"Range": "bytes=0-6"}
    )
    assert ranged.status_code == 206 and ranged.content == b"version"
    tampered = url.replace("signature=", "signature=0")
    assert_problem(await _follow(gateway, tampered), 403, "forbidden")
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    longer = url.replace(f"expires={expires}", f"expires={expires + 3600}")
    assert_problem(await _follow(gateway, longer), 403, "forbidden")
    await asyncio.sleep(max(0.0, expires - time.time()) + 1.1)
    assert_problem(await _follow(gateway, url), 403, "forbidden")

    for_long = (
        await gateway.post(
            "/v1/storage/presign",
            json={"key": "share/a.txt", "expires_in": 600},
            headers=bearer(token),
        )
    ).json()["url"]
    assert (await _follow(gateway, for_long)).status_code == 200
    assert (await put(gateway, token, "share/a.txt", b"version two")).status_code == 200
    assert_problem(await _follow(gateway, for_long), 403, "forbidden")  # replaced

    newest = (
        await gateway.post(
            "/v1/storage/presign",
            json={"key": "share/a.txt", "expires_in": 600},
            headers=bearer(token),
        )
    ).json()["url"]
    assert (await _follow(gateway, newest)).content == b"version two"
    assert (
        await gateway.delete("/v1/storage/objects/share/a.txt", headers=bearer(token))
    ).status_code == 204
    assert_problem(await _follow(gateway, newest), 403, "forbidden")  # deleted

    for bad in (0, 604_801):
        resp = await gateway.post(
            "/v1/storage/presign",
            json={"key": "share/a.txt", "expires_in": bad},
            headers=bearer(token),
        )
        assert_problem(resp, 422, "validation_error")


@pytest.mark.parametrize(
    "target",
    [
        "/v1/storage/objects/../../internal/x",
        "/v1/storage/objects/a/../../../v1/databases",
        "/v1/storage/objects/%2e%2e/%2e%2e/%2e%2e/metrics",
    ],
)
async def test_dot_segments_cannot_leave_the_storage_routes(gateway, stack, target) -> None:
    """Keys are judged by the service, but a path that normalises outside the object routes
    is still refused by the gateway (404), never passed on."""
    user = await signup(gateway)
    status, body = await raw_request(
        stack, "GET", target, {"Authorization": f"Bearer {user['access_token']}"}
    )
    assert status == 404, (target, body[:200])
    assert b'"not_found"' in body
