"""Helpers of the export/import tests: wait for a job, fetch a download, checksum a database."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

from tests.integration.helpers import bearer, wait_for


async def wait_job(
    gateway: httpx.AsyncClient, token: str, db_id: str, kind: str, job_id: str, timeout: float
) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        resp = await gateway.get(f"/v1/databases/{db_id}/{kind}/{job_id}", headers=bearer(token))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body if body["status"] in ("done", "failed") else None

    job: dict[str, Any] = await wait_for(finished, timeout=timeout, interval=0.5)
    return job


def gateway_path(url: str) -> str:
    """A download link's path and query, to follow it through the test gateway (the link
    names the public host, api.<base>, which the gateway client sets as Host)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def download(gateway: httpx.AsyncClient, url: str, into: Path) -> httpx.Response:
    async with gateway.stream("GET", gateway_path(url), timeout=300) as resp:
        if resp.status_code == 200:
            with into.open("wb") as out:
                async for chunk in resp.aiter_bytes(1024 * 1024):
                    out.write(chunk)
        else:
            await resp.aread()
    return resp


async def upload_body(path: Path) -> Any:
    with path.open("rb") as src:
        while chunk := src.read(1024 * 1024):
            yield chunk


# an order-independent digest of a table's rows: count and sum of per-row hashes
TABLE_DIGEST = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
    " FROM {} t"
)


async def digest(uri: str) -> dict[str, Any]:
    """Every user table's row count and checksum, the large objects' bytes, and the schema
    objects by kind: what must be identical after a round trip."""
    out: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        tables = await (
            await conn.execute(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ).fetchall()
        for (name,) in tables:
            row = await (await conn.execute(TABLE_DIGEST.format(name))).fetchone()
            out[name] = tuple(row) if row else None
        los = await (
            await conn.execute("SELECT md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1")
        ).fetchall()
        out["large objects"] = [r[0] for r in los]
        objects = await (
            await conn.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
                " ORDER BY 1, 2"
            )
        ).fetchall()
        out["relations"] = [tuple(r) for r in objects]
        functions = await (
            await conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ).fetchall()
        out["functions"] = [r[0] for r in functions]
    return out
