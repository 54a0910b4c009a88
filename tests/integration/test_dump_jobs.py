"""The machinery behind exports and imports: one job per database at a time, the sweeper that
removes dumps past their time, and storage's internal read that imports use."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from botocore.exceptions import ClientError
from sqlalchemy.ext.asyncio import create_async_engine

from shardz_common.db import make_sessionmaker
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.services import dump_runner
from tests.integration.dump_helpers import download, wait_job
from tests.integration.helpers import (
    assert_problem,
    bearer,
    create_db,
    provisioner_process,
    signup,
    wait_for,
)
from tests.integration.storage_support import s3
from tests.integration.test_dump_crash import stack_worker_paused


async def test_two_workers_never_run_two_jobs_of_one_database_at_once(
    gateway: httpx.AsyncClient, stack: Any
) -> None:
    """Race: two workers claim at the same instant while an export and an import of the same
    database wait; only one may run (a dump beside a restore of one database would see half
    of it), while a job of another database is taken by the second worker."""
    user = await signup(gateway)
    token = user["access_token"]
    db, other = await create_db(gateway, token), await create_db(gateway, token)
    url = stack.config.database_dsn("provisioner").replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    engine = create_async_engine(url, pool_size=4)
    sessions = make_sessionmaker(engine)
    settings = ProvisionerSettings(dump_lease_seconds=60)
    claimed: list[Any] = []
    try:
        with stack_worker_paused(stack):
            for path, kwargs in (
                (f"/v1/databases/{db['id']}/exports", {}),
                (f"/v1/databases/{db['id']}/imports", {"content": b"SELECT 1;"}),
            ):
                resp = await gateway.post(path, headers=bearer(token), **kwargs)
                assert resp.status_code == 202, resp.text
            results = await asyncio.gather(*(dump_runner.claim(sessions, settings) for _ in "ab"))
            claimed = [c for c in results if c is not None]
            assert len(claimed) == 1, results  # the second waited for the first, then passed
            assert await dump_runner.claim(sessions, settings) is None
            # another database's job is not held up by it
            resp = await gateway.post(f"/v1/databases/{other['id']}/exports", headers=bearer(token))
            assert resp.status_code == 202
            third = await dump_runner.claim(sessions, settings)
            assert third is not None and third.database.id != claimed[0].database.id
            claimed.append(third)
            # give the claims back to the stack's worker
            dsn = stack.config.database_dsn("provisioner")
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await conn.execute(
                    "UPDATE dump_jobs SET status = 'queued', lease_until = NULL, attempts = 0"
                    " WHERE id = ANY(%s)",
                    ([c.id for c in claimed],),
                )
    finally:
        await engine.dispose()


async def test_the_sweeper_removes_expired_exports_and_their_links_stop_working(
    gateway: httpx.AsyncClient, stack: Any, tmp_path: Any
) -> None:
    """Exports are kept for their retention only: then the dump leaves the bucket and its
    link answers 403, as does one of a database that was deleted."""
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    started = await gateway.post(f"/v1/databases/{db['id']}/exports", headers=bearer(token))
    export = await wait_job(gateway, token, db["id"], "exports", started.json()["id"], 120)
    assert export["status"] == "done"
    dsn = stack.config.database_dsn("provisioner")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (
            await conn.execute("SELECT store_key FROM dump_jobs WHERE id = %s", (export["id"],))
        ).fetchone()
        assert row is not None
        key = row[0]
        client = s3(stack)
        bucket = stack.env.get("PROVISIONER_DUMPS_BUCKET", "shardz-dumps")
        assert client.head_object(Bucket=bucket, Key=key)["ContentLength"] == export["size_bytes"]
        # its retention ends now
        await conn.execute(
            "UPDATE dump_jobs SET expires_at = %s WHERE id = %s",
            (datetime.now(UTC) - timedelta(seconds=1), export["id"]),
        )
        await conn.commit()

        async def removed() -> bool:
            row = await (
                await conn.execute(
                    "SELECT store_key IS NULL FROM dump_jobs WHERE id = %s", (export["id"],)
                )
            ).fetchone()
            await conn.commit()
            return bool(row and row[0])

        with provisioner_process(stack, "worker", PROVISIONER_DUMP_SWEEP_INTERVAL_SECONDS="1"):
            await wait_for(removed, timeout=60, interval=0.5)
    try:
        client.head_object(Bucket=bucket, Key=key)
        raise AssertionError("the expired dump is still in the bucket")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey")
    resp = await download(gateway, export["download_url"], tmp_path / "gone")
    assert resp.status_code == 403
    shown = await gateway.get(
        f"/v1/databases/{db['id']}/exports/{export['id']}", headers=bearer(token)
    )
    assert shown.json()["download_url"] is None


async def test_storage_internal_reads_need_storage_secret_and_stay_in_the_users_space(
    gateway: httpx.AsyncClient, stack: Any
) -> None:
    """Attack: a caller without storage's service secret (or with another service's) reads a
    user's object through the internal route; or names another user's id for a key."""
    owner, other = await signup(gateway), await signup(gateway)
    put = await gateway.put(
        "/v1/storage/objects/d.sql", content=b"SELECT 1;", headers=bearer(owner["access_token"])
    )
    assert put.status_code == 201
    base = stack.internal_urls["storage"]
    url = f"{base}/internal/objects/{owner['user']['id']}/d.sql"
    async with httpx.AsyncClient() as direct:
        for auth in (None, "Bearer nope", f"Bearer {stack.env['PROVISIONER_INTERNAL_SECRET']}"):
            headers = {"Authorization": auth} if auth else {}
            assert_problem(await direct.get(url, headers=headers), 401, "unauthenticated")
        good = {"Authorization": f"Bearer {stack.env['STORAGE_INTERNAL_SECRET']}"}
        ok = await direct.get(url, headers=good)
        assert ok.status_code == 200 and ok.content == b"SELECT 1;"
        theirs = f"{base}/internal/objects/{other['user']['id']}/d.sql"
        assert_problem(await direct.get(theirs, headers=good), 404, "not_found")
