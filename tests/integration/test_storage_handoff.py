"""Download bodies handed to the gateway (X-Accel-Redirect to an internal location that fetches
them from the store), the streaming fallback without that location, and small uploads stored
in one transaction."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

import httpx

from tests.integration.helpers import (
    assert_problem,
    bearer,
    free_port,
    signup,
    wait_for,
    wait_http,
)
from tests.integration.storage_support import (
    BUCKET,
    MIB,
    backend_leftovers,
    invariant,
    put,
    raw_request,
    s3,
    set_quota,
    space,
    storage_process,
)

STORE_HEADER_PREFIXES = ("x-amz-", "seaweed-")


async def _direct_get(port: int, path: str, token: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as direct:
        return await direct.get(path, headers={**bearer(token), **headers})


async def test_a_download_is_handed_to_the_gateway_with_the_services_headers(
    gateway, stack
) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    data = os.urandom(3 * MIB + 17)
    stored = await put(gateway, token, "docs/r%C3%A9sum%C3%A9.pdf", data, **{
        "Content-Type": "application/pdf"
    })  # fmt: skip
    assert stored.status_code == 201, stored.text
    head = await gateway.head(
        "/v1/storage/objects/docs/r%C3%A9sum%C3%A9.pdf", headers=bearer(token)
    )
    got = await gateway.get("/v1/storage/objects/docs/r%C3%A9sum%C3%A9.pdf", headers=bearer(token))

    assert got.status_code == 200 and got.content == data
    assert got.headers["etag"] == f'"{stored.json()["etag"]}"' == head.headers["etag"]
    assert got.headers["last-modified"] == head.headers["last-modified"]
    assert got.headers["content-disposition"] == head.headers["content-disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["x-request-id"]
    # one of each, and nothing of the store's own (its names, its etag, its owner)
    assert len(got.headers.get_list("etag")) == 1
    assert len(got.headers.get_list("content-type")) == 1
    assert not [h for h in got.headers if h.lower().startswith(STORE_HEADER_PREFIXES)]

    # the dashboard downloads with fetch(): the CORS answer survives the handoff
    dashboard = f"http://dashboard.{stack.base_domain}:{stack.env['PLATFORM_GATEWAY_PORT']}"
    cors = await gateway.get(
        "/v1/storage/objects/docs/r%C3%A9sum%C3%A9.pdf",
        headers={**bearer(token), "Origin": dashboard},
    )
    assert cors.status_code == 200 and cors.content == data
    assert cors.headers.get_list("access-control-allow-origin") == [dashboard]
    assert "content-disposition" in cors.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in got.headers  # no Origin, no CORS

    # The service itself answers with the handoff and no body: the bytes never cross it.
    port = stack.config.api_ports("storage")[0]
    direct = await _direct_get(port, "/v1/storage/objects/docs/r%C3%A9sum%C3%A9.pdf", token)
    assert direct.headers["x-accel-redirect"].startswith("/.storage-backend/")
    assert direct.content == b""


async def test_ranges_and_conditions_are_the_services_not_the_clients(gateway, stack) -> None:
    """The service decides the range (206/416) and 304; the gateway asks the store for exactly
    that range, never for what the client wrote (a multi-range the service ignores included)."""
    user = await signup(gateway)
    token = user["access_token"]
    data = bytes(range(256)) * 4096  # 1 MiB
    stored = await put(gateway, token, "r", data)
    etag = f'"{stored.json()["etag"]}"'
    path = "/v1/storage/objects/r"

    part = await gateway.get(path, headers={**bearer(token), "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = await gateway.get(path, headers={**bearer(token), "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    several = await gateway.get(path, headers={**bearer(token), "Range": "bytes=0-1,5-6"})
    assert several.status_code == 200 and several.content == data
    past = await gateway.get(path, headers={**bearer(token), "Range": f"bytes={len(data)}-"})
    assert_problem(past, 416, "range_not_satisfiable")
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    same = await gateway.get(path, headers={**bearer(token), "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    # a condition the service does not judge never reaches the store to be judged there
    since = await gateway.get(
        path, headers={**bearer(token), "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}
    )
    assert since.status_code == 200 and since.content == data

    link = await gateway.post(
        "/v1/storage/presign", json={"key": "r", "expires_in": 60}, headers=bearer(token)
    )
    url = urlsplit(link.json()["url"])
    followed = await gateway.get(f"{url.path}?{url.query}", headers={"Range": "bytes=10-19"})
    assert followed.status_code == 206 and followed.content == data[10:20]


async def test_the_store_is_unreachable_through_the_internal_location(gateway, stack) -> None:
    """Attack: a client that knows (or guesses) the internal location and even holds a valid
    presigned store URL asks the gateway for it directly, to read any object of the bucket."""
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "secret", b"s" * 100)).status_code == 201
    [backend_key] = backend_leftovers(stack, uid)
    signed = urlsplit(
        s3(stack).generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": backend_key}, ExpiresIn=60
        )
    )
    target = f"/.storage-backend{signed.path}?{signed.query}"
    status, body = await raw_request(stack, "GET", target)
    assert status == 404 and b"s" * 100 not in body
    status, body = await raw_request(stack, "GET", f"/.storage-backend/{BUCKET}/{backend_key}")
    assert status == 404 and b"s" * 100 not in body
    # nor does a response header forged into the request change anything
    status, body = await raw_request(
        stack, "GET", "/v1/storage/objects/secret", {"X-Accel-Redirect": target}
    )
    assert status == 401 and b"s" * 100 not in body


async def test_without_the_gateway_location_downloads_stream_through_the_service(
    gateway, stack
) -> None:
    """An Ingress has no internal store location: with STORAGE_DOWNLOAD_HANDOFF_LOCATION unset
    the service streams the bytes itself, ranges and headers alike."""
    user = await signup(gateway)
    token = user["access_token"]
    data = os.urandom(9 * MIB + 3)  # a multipart object
    stored = await put(gateway, token, "k8s/blob.bin", data)
    assert stored.status_code == 201, stored.text
    port = free_port()
    env = {"STORAGE_PORT": str(port), "STORAGE_DOWNLOAD_HANDOFF_LOCATION": ""}
    with storage_process(stack, "api", "no-handoff", **env):
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        whole = await _direct_get(port, "/v1/storage/objects/k8s/blob.bin", token)
        assert whole.status_code == 200 and whole.content == data
        assert "x-accel-redirect" not in whole.headers
        assert whole.headers["etag"] == f'"{stored.json()["etag"]}"'
        assert whole.headers["x-content-type-options"] == "nosniff"
        assert 'filename="blob.bin"' in whole.headers["content-disposition"]
        part = await _direct_get(
            port, "/v1/storage/objects/k8s/blob.bin", token, Range="bytes=8388600-8388620"
        )
        assert part.status_code == 206 and part.content == data[8388600:8388621]


async def test_small_uploads_racing_for_the_quota_store_exactly_what_fits(gateway, stack) -> None:
    """Small bodies are checked against the quota after they reach the store, in the
    transaction that indexes them: ten racing for room for four still give exactly four, and
    the six refused bodies leave the store once the sweeper has run."""
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    await space(gateway, token)
    size = 64 * 1024
    await set_quota(stack, uid, 4 * size + size // 2)

    async def upload(i: int) -> int:
        return (await put(gateway, token, f"small/{i}", bytes([i]) * size)).status_code

    codes = await asyncio.gather(*(upload(i) for i in range(10)))
    assert sorted(codes) == [201] * 4 + [413] * 6, codes
    state = await invariant(stack, uid)
    assert (state["used"], state["count"], state["reserved"]) == (4 * size, 4, 0)
    # a replacement re-accounts the difference in the same single step
    kept = [i for i, c in enumerate(codes) if c == 201]
    assert (await put(gateway, token, f"small/{kept[0]}", b"x" * 10)).status_code == 200
    assert (await invariant(stack, uid))["used"] == 3 * size + 10

    async def only_the_kept_remain() -> bool:
        return len(backend_leftovers(stack, uid)) == 4

    await wait_for(only_the_kept_remain, timeout=60, interval=0.5)
