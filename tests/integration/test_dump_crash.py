"""A worker killed in the middle of an export or an import: another worker takes the job over
once its lease runs out, and the outcome is as if nothing had happened (no rows twice)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg

from tests.integration.dump_helpers import download, wait_job
from tests.integration.helpers import bearer, create_db, repo_root, service_process, signup

ROWS_SQL = b"""\
CREATE TABLE public.items (id int PRIMARY KEY, name text);
INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 1000) g;
COPY public.items (id, name) FROM stdin;
1001\tlast
\\.
"""


@contextlib.contextmanager
def stack_worker_paused(stack: Any) -> Iterator[None]:
    """The stack's own provisioner worker frozen, so the faulty one claims the job."""
    pid = stack.processes["provisioner-worker"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def worker_dying_at(stack: Any, step: str) -> Iterator[Any]:
    launcher = [str(repo_root() / "tests" / "integration" / "faulty_provisioner.py"), step]
    # a short lease: the crashed claim runs out quickly
    with service_process(
        stack,
        "provisioner",
        "worker",
        launcher=launcher,
        log_name=f"dies-{step}",
        PROVISIONER_DUMP_LEASE_SECONDS="2",
    ) as proc:
        yield proc


async def _job_row(stack: Any, job_id: str) -> tuple[str, int]:
    dsn = stack.config.database_dsn("provisioner")
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        row = await (
            await conn.execute("SELECT status, attempts FROM dump_jobs WHERE id = %s", (job_id,))
        ).fetchone()
    assert row is not None
    return row[0], row[1]


async def test_an_import_whose_worker_dies_before_commit_lands_exactly_once(
    gateway: httpx.AsyncClient, stack: Any
) -> None:
    """Failure: the worker is killed after applying every statement, before the commit."""
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    with stack_worker_paused(stack):
        started = await gateway.post(
            f"/v1/databases/{db['id']}/imports",
            content=ROWS_SQL,
            headers={**bearer(token), "content-type": "application/sql"},
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        with worker_dying_at(stack, "import_before_commit") as proc:
            assert proc.wait(90) == 137  # died at the armed step
        assert await _job_row(stack, job_id) == ("running", 1)
        async with await psycopg.AsyncConnection.connect(db["uri"]) as conn:
            gone = await (await conn.execute("SELECT to_regclass('public.items')")).fetchone()
            assert gone == (None,)  # nothing of the interrupted attempt was kept
    job = await wait_job(gateway, token, db["id"], "imports", job_id, 120)
    assert job["status"] == "done" and job["refused"] == [], job
    assert await _job_row(stack, job_id) == ("done", 2)
    async with await psycopg.AsyncConnection.connect(db["uri"]) as conn:
        count = await (await conn.execute("SELECT count(*) FROM public.items")).fetchone()
        assert count == (1001,)


async def test_an_export_whose_worker_dies_after_the_upload_is_made_again(
    gateway: httpx.AsyncClient, stack: Any, tmp_path: Any
) -> None:
    """Failure: the worker is killed after the dump reached the bucket, before it recorded it."""
    user = await signup(gateway)
    token = user["access_token"]
    db = await create_db(gateway, token)
    async with await psycopg.AsyncConnection.connect(db["uri"], autocommit=True) as conn:
        await conn.execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS id")
    with stack_worker_paused(stack):
        started = await gateway.post(f"/v1/databases/{db['id']}/exports", headers=bearer(token))
        assert started.status_code == 202
        job_id = started.json()["id"]
        with worker_dying_at(stack, "export_after_upload") as proc:
            assert proc.wait(90) == 137
        assert await _job_row(stack, job_id) == ("running", 1)
    job = await wait_job(gateway, token, db["id"], "exports", job_id, 120)
    assert job["status"] == "done", job
    assert await _job_row(stack, job_id) == ("done", 2)
    resp = await download(gateway, job["download_url"], tmp_path / "t.dump")
    assert resp.status_code == 200
    assert (tmp_path / "t.dump").stat().st_size == job["size_bytes"]
