"""Storage follows the account: suspension, reactivation, deletion; usage goes to billing;
the sweeper removes what no row owns, with two workers running."""

from __future__ import annotations

import re
import uuid

from shardz_common.testing.events import EventProbe
from tests.integration.helpers import assert_problem, bearer, publish_event, signup, wait_for
from tests.integration.storage_support import (
    BUCKET,
    MIB,
    backend_leftovers,
    put,
    s3,
    space,
    storage_process,
)


async def test_suspension_makes_the_space_read_only_until_reactivation(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "a", b"first")).status_code == 201
    assert (await put(gateway, token, "b", b"second")).status_code == 201
    amqp = stack.env["PLATFORM_AMQP_URL"]
    await publish_event(amqp, "account.suspended", {"user_id": uid, "reason": "invoice_overdue"})

    async def suspended() -> bool:
        return (await space(gateway, token))["status"] == "suspended"

    await wait_for(suspended)
    assert_problem(await put(gateway, token, "c", b"new"), 403, "account_suspended")
    assert_problem(await put(gateway, token, "a", b"overwrite"), 403, "account_suspended")
    form = await gateway.post(
        "/v1/storage/objects", files={"file": ("f.txt", b"x")}, headers=bearer(token)
    )
    assert_problem(form, 403, "account_suspended")
    plan = await gateway.patch("/v1/storage", json={"plan": "storage-plus"}, headers=bearer(token))
    assert_problem(plan, 403, "account_suspended")
    # reads and deletes still work
    assert (await gateway.get("/v1/storage/objects/a", headers=bearer(token))).content == b"first"
    assert (await gateway.delete("/v1/storage/objects/b", headers=bearer(token))).status_code == 204
    got = await space(gateway, token)
    assert (got["used_bytes"], got["object_count"]) == (5, 1)

    await publish_event(amqp, "account.reactivated", {"user_id": uid, "reason": "paid"})

    async def active() -> bool:
        return (await space(gateway, token))["status"] == "active"

    await wait_for(active)
    assert (await put(gateway, token, "c", b"new")).status_code == 201


async def test_usage_is_reported_after_a_change(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    async with EventProbe(stack.env["PLATFORM_AMQP_URL"], keys="storage.#") as probe:
        assert (await put(gateway, token, "one", b"1" * 1000)).status_code == 201
        assert (await put(gateway, token, "two", b"2" * 24)).status_code == 201
        event = await probe.wait_for(
            "storage.usage.reported",
            lambda e: e["data"]["user_id"] == uid and e["data"]["used_bytes"] == 1024,
            timeout=30,
        )
    assert event["source"] == "storage"
    assert event["data"]["object_count"] == 2 and event["data"]["plan"] == "storage-free"
    assert "measured_at" in event["data"]


async def test_deleting_the_account_removes_every_object(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "small", b"s" * 100)).status_code == 201
    assert (await put(gateway, token, "large", b"l" * (20 * MIB))).status_code == 201
    assert len(backend_leftovers(stack, uid)) == 2
    assert (await gateway.delete("/v1/users/me", headers=bearer(token))).status_code == 202

    async def all_gone() -> bool:
        return backend_leftovers(stack, uid) == []

    await wait_for(all_gone, timeout=60, interval=0.5)
    # the token is still well-formed for a while: the space answers as gone, not as empty
    assert_problem(await gateway.get("/v1/storage", headers=bearer(token)), 401, "unauthenticated")


async def test_two_sweepers_remove_orphans_once_and_keep_owned_objects(gateway, stack) -> None:
    user = await signup(gateway)
    token, uid = user["access_token"], user["user"]["id"]
    assert (await put(gateway, token, "owned", b"mine")).status_code == 201
    client = s3(stack)
    orphan = f"{uid}/{uuid.uuid4()}"
    client.put_object(Bucket=BUCKET, Key=orphan, Body=b"left behind by a crash")
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=f"{uid}/{uuid.uuid4()}")
    leftovers = backend_leftovers(stack, uid)
    assert orphan in leftovers and any(k.startswith("upload:") for k in leftovers)
    fast = {"STORAGE_ORPHAN_SCAN_INTERVAL_SECONDS": "0.5", "STORAGE_ORPHAN_GRACE_SECONDS": "0"}
    with (
        storage_process(stack, "worker", "sweeper-1", **fast),
        storage_process(stack, "worker", "sweeper-2", **fast),
    ):

        async def only_owned() -> bool:
            return len(backend_leftovers(stack, uid)) == 1

        await wait_for(only_owned, timeout=60, interval=0.5)
    assert orphan not in backend_leftovers(stack, uid)
    assert upload["UploadId"] not in str(client.list_multipart_uploads(Bucket=BUCKET))
    assert (
        await gateway.get("/v1/storage/objects/owned", headers=bearer(token))
    ).content == b"mine"
    # the two workers took turns (see services/storage/tests for the lock itself): the
    # orphans were queued, and no worker failed on the other's deletions
    queued = 0
    for name in ("sweeper-1", "sweeper-2"):
        log = (stack.log_dir / f"extra-storage-{name}.log").read_text()
        queued += sum(int(n) for n in re.findall(r'"count": (\d+), [^\n]*orphans queued', log))
    assert queued >= 2
