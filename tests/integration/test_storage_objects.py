"""Objects through the gateway: round trips, overwrite, listing, downloads' HTTP details."""

from __future__ import annotations

import hashlib

import httpx

from tests.integration.helpers import assert_problem, bearer, signup
from tests.integration.storage_support import MIB, RandomBody, invariant, put, space


async def test_a_new_user_has_a_space_with_the_free_quota(gateway, stack) -> None:
    user = await signup(gateway)
    got = await space(gateway, user["access_token"])
    assert got["quota_bytes"] == 1_073_741_824
    assert (got["used_bytes"], got["object_count"]) == (0, 0)
    assert_problem(await gateway.get("/v1/storage"), 401, "unauthenticated")


async def test_small_object_round_trip_and_overwrite(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    data = b"hello, shards\n" * 100
    resp = await put(gateway, token, "docs/hello.txt", data, **{"Content-Type": "text/plain"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["key"] == "docs/hello.txt" and body["size"] == len(data)
    assert body["content_type"] == "text/plain"
    got = await gateway.get("/v1/storage/objects/docs/hello.txt", headers=bearer(token))
    assert got.status_code == 200 and got.content == data
    assert got.headers["etag"] == f'"{body["etag"]}"'
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''hello.txt" in got.headers["content-disposition"]

    smaller = b"short"
    again = await put(gateway, token, "docs/hello.txt", smaller)
    assert again.status_code == 200, again.text
    assert (
        await gateway.get("/v1/storage/objects/docs/hello.txt", headers=bearer(token))
    ).content == smaller
    state = await invariant(stack, uid)
    assert state["used"] == len(smaller) and state["count"] == 1
    assert (await space(gateway, token))["used_bytes"] == len(smaller)

    assert (
        await gateway.delete("/v1/storage/objects/docs/hello.txt", headers=bearer(token))
    ).status_code == 204
    assert (await space(gateway, token))["used_bytes"] == 0
    gone = await gateway.get("/v1/storage/objects/docs/hello.txt", headers=bearer(token))
    assert_problem(gone, 404, "not_found")
    assert_problem(
        await gateway.delete("/v1/storage/objects/docs/hello.txt", headers=bearer(token)),
        404,
        "not_found",
    )


async def test_200_mb_round_trip_byte_for_byte(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    size = 200 * 1000 * 1000
    body = RandomBody(size)
    # no Content-Length: the reservation grows as the body arrives
    resp = await gateway.put(
        "/v1/storage/objects/big/blob.bin", content=body, headers=bearer(token), timeout=300
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == size
    digest = hashlib.sha256()
    async with gateway.stream(
        "GET", "/v1/storage/objects/big/blob.bin", headers=bearer(token), timeout=300
    ) as got:
        assert got.status_code == 200
        assert int(got.headers["content-length"]) == size
        async for chunk in got.aiter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == body.hexdigest()
    state = await invariant(stack, uid)
    assert state["used"] == size and state["reserved"] == 0


async def test_multipart_form_upload_streams_the_file_part(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    data = bytes(range(256)) * 40_000  # ~10 MB: more than one part to the store
    resp = await gateway.post(
        "/v1/storage/objects",
        data={"key": "forms/a.bin"},
        files={"file": ("ignored.bin", data, "application/x-test")},
        headers=bearer(token),
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["key"] == "forms/a.bin" and resp.json()["size"] == len(data)
    assert resp.json()["content_type"] == "application/x-test"
    got = await gateway.get("/v1/storage/objects/forms/a.bin", headers=bearer(token))
    assert got.content == data
    # without `key`, the file's name is the key
    named = await gateway.post(
        "/v1/storage/objects", files={"file": ("report.csv", b"a,b\n")}, headers=bearer(token)
    )
    assert named.status_code == 201 and named.json()["key"] == "report.csv"
    bad = await gateway.post(
        "/v1/storage/objects",
        data={"key": "../x"},
        files={"file": ("f", b"x")},
        headers=bearer(token),
    )
    assert_problem(bad, 422, "validation_error")
    assert (await space(gateway, token))["object_count"] == 2


async def test_listing_pages_by_key_with_a_prefix(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    keys = [f"p/{i:02d}" for i in range(7)] + ["q/other", "p0"]
    for k in keys:
        assert (await put(gateway, token, k, k.encode())).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"prefix": "p/", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = await gateway.get("/v1/storage/objects", params=params, headers=bearer(token))
        assert page.status_code == 200, page.text
        seen += [i["key"] for i in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(k for k in keys if k.startswith("p/"))
    everything = await gateway.get("/v1/storage/objects", headers=bearer(token))
    assert [i["key"] for i in everything.json()["items"]] == sorted(keys)
    too_many = await gateway.get(
        "/v1/storage/objects", params={"limit": 1001}, headers=bearer(token)
    )
    assert_problem(too_many, 422, "validation_error")


async def test_range_conditional_and_head(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    data = bytes(range(256)) * 4
    created = (await put(gateway, token, "r/ünïcode name.bin", data)).json()
    path = "/v1/storage/objects/r/ünïcode name.bin"
    part = await gateway.get(path, headers={**bearer(token), "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = await gateway.get(path, headers={**bearer(token), "Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    beyond = await gateway.get(path, headers={**bearer(token), "Range": "bytes=5000-"})
    assert_problem(beyond, 416, "range_not_satisfiable")
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"

    etag = f'"{created["etag"]}"'
    cached = await gateway.get(path, headers={**bearer(token), "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    changed = await gateway.get(path, headers={**bearer(token), "If-None-Match": '"other"'})
    assert changed.status_code == 200

    head = await gateway.head(path, headers=bearer(token))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["etag"] == etag and "last-modified" in head.headers
    assert head.headers["x-content-type-options"] == "nosniff"
    disposition = head.headers["content-disposition"]
    assert "filename*=UTF-8''%C3%BCn%C3%AFcode%20name.bin" in disposition


async def test_upload_without_length_past_the_quota_is_cut_off_with_413(gateway, stack) -> None:
    from tests.integration.storage_support import set_quota

    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "keep", b"k" * 1000)).status_code == 201
    await set_quota(stack, uid, 20 * MIB)
    body = RandomBody(40 * MIB)
    try:
        resp = await gateway.put(
            "/v1/storage/objects/too-big", content=body, headers=bearer(token), timeout=60
        )
    except httpx.HTTPError:
        resp = None  # the server may close while the client still sends
    if resp is not None:
        assert_problem(resp, 413, "quota_exceeded")
    assert body.sent < 40 * MIB or resp is not None
    state = await invariant(stack, uid)
    assert (state["used"], state["count"], state["reserved"]) == (1000, 1, 0)
    assert_problem(
        await gateway.get("/v1/storage/objects/too-big", headers=bearer(token)), 404, "not_found"
    )
    # with Content-Length the refusal comes before any byte is stored
    early = await put(gateway, token, "too-big", b"x" * (20 * MIB))
    assert_problem(early, 413, "quota_exceeded")
    assert (await invariant(stack, uid))["used"] == 1000


async def test_an_empty_object_is_an_object(gateway, stack) -> None:
    user = await signup(gateway)
    token = user["access_token"]
    resp = await put(gateway, token, "empty", b"")
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == 0
    got = await gateway.get("/v1/storage/objects/empty", headers=bearer(token))
    assert got.status_code == 200 and got.content == b""
    assert_problem(
        await gateway.get(
            "/v1/storage/objects/empty", headers={**bearer(token), "Range": "bytes=0-"}
        ),
        416,
        "range_not_satisfiable",
    )
    assert (await space(gateway, token))["object_count"] == 1
