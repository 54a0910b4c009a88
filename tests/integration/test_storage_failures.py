"""Uploads that fail half way: the client leaves, the object store goes away."""

from __future__ import annotations

import asyncio
import contextlib

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
    MIB,
    RandomBody,
    backend_leftovers,
    db,
    invariant,
    put,
    space,
    start_store,
    stop_store,
    storage_process,
)


async def _upload_in_flight(stack, uid: str) -> bool:
    """True once the service has sent parts of the user's upload to the store."""
    async with await db(stack) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM reservations WHERE user_id = %s AND upload_id IS NOT NULL",
                (uid,),
            )
        ).fetchone()
    return row[0] > 0


async def test_an_upload_aborted_half_way_leaves_nothing(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "keep", b"k" * 10)).status_code == 201
    body = RandomBody(64 * MIB, pause_after=24 * MIB)
    task = asyncio.create_task(
        gateway.put("/v1/storage/objects/half", content=body, headers=bearer(token))
    )
    await asyncio.wait_for(body.paused.wait(), 30)
    await wait_for(lambda: _upload_in_flight(stack, uid), timeout=30)
    task.cancel()  # the client goes away mid-body
    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
        await task

    async def released() -> bool:
        state = await invariant(stack, uid)
        return state["reserved"] == 0 and state["used"] == 10

    await wait_for(released, timeout=30)
    # the sweeper removes the parts that reached the store; the kept object stays
    keep_key = await _backend_key(stack, uid, "keep")

    async def only_kept() -> bool:
        return backend_leftovers(stack, uid) == [keep_key]

    await wait_for(only_kept, timeout=30)
    assert (
        await gateway.get("/v1/storage/objects/keep", headers=bearer(token))
    ).content == b"k" * 10
    assert_problem(
        await gateway.get("/v1/storage/objects/half", headers=bearer(token)), 404, "not_found"
    )


async def _backend_key(stack, uid: str, key: str) -> str:
    async with await db(stack) as conn:
        row = await (
            await conn.execute(
                "SELECT backend_key FROM objects WHERE user_id = %s AND key = %s", (uid, key)
            )
        ).fetchone()
    return row[0]


async def test_the_store_stopped_mid_upload_gives_503_and_recovers(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "before", b"b" * 100)).status_code == 201
    body = RandomBody(48 * MIB, pause_after=20 * MIB)
    task = asyncio.create_task(
        gateway.put("/v1/storage/objects/during", content=body, headers=bearer(token), timeout=120)
    )
    await asyncio.wait_for(body.paused.wait(), 30)
    await wait_for(lambda: _upload_in_flight(stack, uid), timeout=30)
    stopped = True
    await asyncio.to_thread(stop_store, stack)
    try:
        body.resume.set()
        with contextlib.suppress(httpx.HTTPError):
            resp = await task
            assert_problem(resp, 503, "unavailable")
        state = await invariant(stack, uid)
        assert (state["used"], state["count"], state["reserved"]) == (100, 1, 0)
        down = await gateway.get("/v1/storage/objects/before", headers=bearer(token))
        assert_problem(down, 503, "unavailable")
        small = await put(gateway, token, "while-down", b"x")
        assert_problem(small, 503, "unavailable")
        assert (await space(gateway, token))["used_bytes"] == 100
        await asyncio.to_thread(start_store, stack)
        stopped = False
    finally:
        if stopped:
            await asyncio.to_thread(start_store, stack)

    after = await put(gateway, token, "after", b"a" * 50)
    assert after.status_code == 201, after.text
    assert (
        await gateway.get("/v1/storage/objects/before", headers=bearer(token))
    ).content == b"b" * 100
    assert (await invariant(stack, uid))["used"] == 150
    keep = {await _backend_key(stack, uid, "before"), await _backend_key(stack, uid, "after")}

    async def converged() -> bool:  # the abandoned multipart upload is aborted once it returns
        return set(backend_leftovers(stack, uid)) == keep

    await wait_for(converged, timeout=90, interval=1)


async def test_an_api_process_killed_mid_upload_loses_nothing(gateway, stack) -> None:
    """The crashed process cannot give its reservation back: it expires, the worker frees it
    and removes the parts that reached the store."""
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "keep", b"k" * 10)).status_code == 201
    port = free_port()
    env = {"STORAGE_PORT": str(port), "STORAGE_RESERVATION_TTL_SECONDS": "3"}
    with storage_process(stack, "api", "doomed", **env) as proc:
        await wait_http(f"http://127.0.0.1:{port}/readyz")
        body = RandomBody(64 * MIB, pause_after=24 * MIB)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as direct:
            task = asyncio.create_task(
                direct.put("/v1/storage/objects/crash", content=body, headers=bearer(token))
            )
            await asyncio.wait_for(body.paused.wait(), 30)
            await wait_for(lambda: _upload_in_flight(stack, uid), timeout=30)
            proc.kill()
            proc.wait()
            body.resume.set()
            with contextlib.suppress(httpx.HTTPError):
                await task
    keep_key = await _backend_key(stack, uid, "keep")

    async def recovered() -> bool:
        state = await invariant(stack, uid)
        return state["reserved"] == 0 and backend_leftovers(stack, uid) == [keep_key]

    await wait_for(recovered, timeout=60, interval=0.5)
    assert (await invariant(stack, uid))["used"] == 10
    assert_problem(
        await gateway.get("/v1/storage/objects/crash", headers=bearer(token)), 404, "not_found"
    )
