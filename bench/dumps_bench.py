"""Exports and imports: a database of ~140 MB of rows exported through the platform (POST,
the worker's pg_dump -Fc streamed into the bucket, until `done`) against `pg_dump -Fc` to a
local file by hand; that dump imported through the platform (the body uploaded through the
gateway, until `done`) against `pg_restore --no-owner --no-privileges -d` by hand, as the
same tenant, into a fresh database of the same cluster.

`uv run python bench/run.py dumps` (DUMPS_BENCH_ROWS changes the size)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from common import Row, print_table

ROWS = int(os.environ.get("DUMPS_BENCH_ROWS", "1000000"))


def stack_config():  # type: ignore[no-untyped-def]
    # slot 20: slots 10-19 would collide with the gRPC ports (+10,000) of the test slots
    from auth_bench import bench_stack_config

    config = bench_stack_config(slot=20, name="bench-dumps")
    # the test stacks cancel tenant statements after 15 s: the pg_dump by hand would be cut
    ceilings = {
        "PROVISIONER_STATEMENT_CEILING_SECONDS": "3600",
        "PROVISIONER_IDLE_TRANSACTION_CEILING_SECONDS": "3600",
    }
    return dataclasses.replace(
        config, services=("identity", "provisioner"), settings={**config.settings, **ceilings}
    )


async def _db(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    resp = await client.post(
        "/v1/databases",
        json={"name": f"b-{uuid.uuid4().hex[:8]}", "plan": "db-starter"},
        headers={"Authorization": f"Bearer {token}"},
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


async def _wait(client: httpx.AsyncClient, token: str, path: str) -> dict[str, Any]:
    while True:
        resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        body: dict[str, Any] = resp.json()
        if body["status"] in ("done", "failed"):
            assert body["status"] == "done", body
            return body
        await asyncio.sleep(0.2)


def _tool_env(db: dict[str, Any]) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PGHOST": db["host"],
        "PGPORT": str(db["port"]),
        "PGUSER": db["username"],
        "PGPASSWORD": db["password"],
        "PGDATABASE": db["database"],
    }


def _bindir(uri: str) -> Path:
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return Path("/usr/lib/postgresql") / str(row[0] // 10000) / "bin"


async def measure(stack: Any) -> list[Row]:
    host = stack.host("api")
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Host": host}, timeout=600
    ) as client:
        signed = await client.post(
            "/v1/auth/signup",
            json={"email": f"b{uuid.uuid4().hex[:8]}@example.com", "password": "0123456789"},
        )
        token = signed.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        source = await _db(client, token)
        with psycopg.connect(source["uri"], autocommit=True) as conn:
            conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, payload text)")
            conn.execute(
                "INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text)"
                f" || repeat(chr(65 + (g % 26)::int), 40) FROM generate_series(1, {ROWS}) g"
            )
            conn.execute("VACUUM ANALYZE big")
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert size is not None
        mb = size[0] / 1e6
        bindir = _bindir(source["uri"])
        with tempfile.TemporaryDirectory() as folder:
            dump = Path(folder) / "by-hand.dump"
            t0 = time.perf_counter()
            subprocess.run(
                [str(bindir / "pg_dump"), "-Fc", "-f", str(dump)],
                env=_tool_env(source),
                check=True,
            )
            floor_export = time.perf_counter() - t0

            t0 = time.perf_counter()
            started = await client.post(f"/v1/databases/{source['id']}/exports", headers=auth)
            export = await _wait(
                client, token, f"/v1/databases/{source['id']}/exports/{started.json()['id']}"
            )
            ours_export = time.perf_counter() - t0
            ours_file = Path(folder) / "platform.dump"
            parts = urlsplit(export["download_url"])
            t0 = time.perf_counter()
            async with client.stream("GET", f"{parts.path}?{parts.query}") as resp:
                with ours_file.open("wb") as out:
                    async for chunk in resp.aiter_bytes(1 << 20):
                        out.write(chunk)
            download_s = time.perf_counter() - t0

            by_hand = await _db(client, token)
            t0 = time.perf_counter()
            subprocess.run(
                [str(bindir / "pg_restore"), "--no-owner", "--no-privileges", "-d",
                 by_hand["database"], str(ours_file)],
                env=_tool_env(by_hand),
                check=True,
            )  # fmt: skip
            floor_import = time.perf_counter() - t0

            target = await _db(client, token)

            async def body() -> Any:
                with ours_file.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        yield chunk

            t0 = time.perf_counter()
            started = await client.post(
                f"/v1/databases/{target['id']}/imports",
                content=body(),
                headers={**auth, "content-type": "application/octet-stream"},
            )
            await _wait(
                client, token, f"/v1/databases/{target['id']}/imports/{started.json()['id']}"
            )
            ours_import = time.perf_counter() - t0

    def line(name: str, ours: float, floor: float) -> list[str]:
        return [name, f"{ours:.1f} s", f"{floor:.1f} s", f"{ours / floor:.2f}x"]

    print_table(
        f"exports and imports of a {mb:.0f} MB database ({ROWS:,} rows)",
        ["figure", "ours", "by hand", "ratio"],
        [
            line("export", ours_export, floor_export),
            ["download", f"{download_s:.1f} s", "-", "-"],
            line("import", ours_import, floor_import),
        ],
    )
    return [
        Row(
            f"export of a {mb:.0f} MB database until `done` vs pg_dump -Fc to a file",
            ours_export,
            floor_export,
            "s",
            "<= 1.5x",
            higher_is_better=False,
        ),
        Row(
            "import of that dump (body upload until `done`) vs pg_restore -d as the owner",
            ours_import,
            floor_import,
            "s",
            "<= 2x",
            higher_is_better=False,
        ),
    ]


def run() -> list[Row]:
    from shardz_devstack.testing import start_test_stack

    t0 = time.monotonic()
    stack = start_test_stack(stack_config())
    print(f"bench stack up in {time.monotonic() - t0:.1f}s at {stack.gateway_url}", flush=True)
    try:
        return asyncio.run(measure(stack))
    finally:
        stack.stop()
