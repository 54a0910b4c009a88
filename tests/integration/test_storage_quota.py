"""The quota holds under concurrency, across two storage API processes behind the gateway."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.integration.helpers import assert_problem, bearer, signup
from tests.integration.storage_support import (
    MIB,
    RandomBody,
    db,
    invariant,
    put,
    set_quota,
    space,
)


def _put_count(metrics: str) -> float:
    pattern = (
        r'http_requests_total\{method="PUT",route="/v1/storage/objects/\{key:path\}",[^}]*\} (\S+)'
    )
    return sum(float(v) for v in re.findall(pattern, metrics))


async def _puts_served(stack) -> list[float]:
    async with httpx.AsyncClient() as client:
        return [
            _put_count((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
            for port in stack.config.api_ports("storage")
        ]


async def test_ten_concurrent_uploads_for_a_quota_of_four(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    await space(gateway, token)
    size = 2 * MIB
    await set_quota(stack, uid, 4 * size + size // 2)
    before = await _puts_served(stack)
    assert len(before) == 2  # two API processes share the upstream

    async def upload(i: int) -> int:
        return (await put(gateway, token, f"race/{i}", bytes([i]) * size)).status_code

    codes = await asyncio.gather(*(upload(i) for i in range(10)))
    assert sorted(codes) == [201] * 4 + [413] * 6, codes
    state = await invariant(stack, uid)
    assert (state["used"], state["count"], state["reserved"]) == (4 * size, 4, 0)
    after = await _puts_served(stack)
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    listed = await gateway.get(
        "/v1/storage/objects", params={"prefix": "race/"}, headers=bearer(token)
    )
    assert len(listed.json()["items"]) == 4


async def test_overwrite_reaccounts_the_difference_and_a_smaller_plan_is_refused(
    gateway, stack
) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    await space(gateway, token)
    await set_quota(stack, uid, 10 * MIB)
    assert (await put(gateway, token, "a", b"a" * (6 * MIB))).status_code == 201
    # replacing 6 MiB by 8 MiB fits a 10 MiB quota: only the difference counts
    assert (await put(gateway, token, "a", b"b" * (8 * MIB))).status_code == 200
    assert (await invariant(stack, uid))["used"] == 8 * MIB
    assert_problem(await put(gateway, token, "b", b"c" * (3 * MIB)), 413, "quota_exceeded")

    plus = await gateway.patch("/v1/storage", json={"plan": "storage-plus"}, headers=bearer(token))
    assert plus.status_code == 200, plus.text
    assert plus.json()["quota_bytes"] == 107_374_182_400 and plus.json()["plan"] == "storage-plus"
    assert (await put(gateway, token, "b", b"c" * (3 * MIB))).status_code == 201
    unknown = await gateway.patch("/v1/storage", json={"plan": "gold"}, headers=bearer(token))
    assert_problem(unknown, 422, "validation_error")
    db_plan = await gateway.patch("/v1/storage", json={"plan": "db-pro"}, headers=bearer(token))
    assert_problem(db_plan, 422, "validation_error")

    # Pretend "b" holds 2 GiB (index and usage together, as an upload would leave them):
    # the free plan's 1 GiB no longer fits, so moving back is refused and changes nothing.
    async with await db(stack) as conn:
        await conn.execute(
            "UPDATE objects SET size = %s WHERE user_id = %s AND key = 'b'", (2 * 1024 * MIB, uid)
        )
        await conn.execute(
            "UPDATE spaces SET used_bytes = used_bytes - %s + %s WHERE user_id = %s",
            (3 * MIB, 2 * 1024 * MIB, uid),
        )
    refused = await gateway.patch(
        "/v1/storage", json={"plan": "storage-free"}, headers=bearer(token)
    )
    assert_problem(refused, 409, "conflict")
    assert (await space(gateway, token))["plan"] == "storage-plus"
    assert (await gateway.delete("/v1/storage/objects/b", headers=bearer(token))).status_code == 204
    back = await gateway.patch("/v1/storage", json={"plan": "storage-free"}, headers=bearer(token))
    assert back.status_code == 200 and back.json()["quota_bytes"] == 1_073_741_824
    assert (await invariant(stack, uid))["used"] == 8 * MIB


async def test_uploads_without_length_racing_never_pass_the_quota(gateway, stack) -> None:
    """Without Content-Length each upload grows its reservation in steps, so a greedy one
    may hold more than it ends up needing for a moment: fewer may succeed, never more."""
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    await space(gateway, token)
    size = 2 * MIB
    await set_quota(stack, uid, 4 * size + size // 2)

    async def upload(i: int) -> int:
        try:
            resp = await gateway.put(
                f"/v1/storage/objects/race/{i}",
                content=RandomBody(size, 256 * 1024),
                headers=bearer(token),
            )
        except httpx.HTTPError:
            return 413  # cut off while sending
        return resp.status_code

    codes = await asyncio.gather(*(upload(i) for i in range(10)))
    assert set(codes) <= {201, 413}, codes
    assert 1 <= codes.count(201) <= 4, codes
    state = await invariant(stack, uid)
    assert (state["used"], state["count"], state["reserved"]) == (
        codes.count(201) * size,
        codes.count(201),
        0,
    )
