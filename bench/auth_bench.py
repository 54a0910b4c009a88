"""(a) Authenticated GET /v1/users/me through the gateway vs a bare FastAPI + asyncpg route."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from common import Row, print_table
from wrk import HttpResult, Load, ensure_wrk, run_load

BENCH_DIR = Path(__file__).resolve().parent
FLOOR_PORT = 23199
LOAD = Load(threads=1, connections=32, seconds=10, warmup_seconds=3)


def bench_stack_config(slot: int = 5, name: str = "bench"):  # type: ignore[no-untyped-def]
    """A test-like stack in a slot of its own (pytest sessions use slots 0-4), with the
    services' default pool sizes (the test stacks shrink them)."""
    from shardz_devstack.config import StackConfig, state_root

    base = StackConfig.test(slot=slot)
    settings = {k: v for k, v in base.settings.items() if "_DB_" not in k}
    return dataclasses.replace(
        base,
        settings=settings,
        name=name,
        data_dir=state_root() / name,
        db_prefix=f"shardz_{name.replace('-', '')}_",
        services=("identity",),  # the only service on this request's path
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"floor app exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def measure_floor(wrk: str | None) -> HttpResult:
    from shardz_common.testing.db import fresh_database

    async def run() -> HttpResult:
        async with fresh_database("shardz_bench_floor") as url:
            dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
            target = uuid.uuid4()
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                await conn.execute(
                    "CREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL UNIQUE)"
                )
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO users VALUES (%s, %s)",
                        [(uuid.uuid4(), f"u{i}@example.com") for i in range(999)]
                        + [(target, "me@example.com")],
                    )
                await conn.commit()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "floor_app:create_app",
                    "--factory",
                    "--app-dir",
                    str(BENCH_DIR),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(FLOOR_PORT),
                    "--workers",
                    "1",
                    "--http",
                    "httptools",
                    "--loop",
                    "uvloop",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env={**os.environ, "BENCH_FLOOR_DSN": dsn},
                start_new_session=True,
            )
            try:
                _wait_port(FLOOR_PORT, proc)
                url_ = f"http://127.0.0.1:{FLOOR_PORT}/users/{target}"
                check = httpx.get(url_)
                assert check.status_code == 200, check.text
                return await asyncio.to_thread(run_load, wrk, url_, {}, LOAD)
            finally:
                proc.terminate()
                proc.wait(10)

    return asyncio.run(run())


def measure_platform(wrk: str | None) -> HttpResult:
    from shardz_devstack.testing import start_test_stack

    t0 = time.monotonic()
    stack = start_test_stack(bench_stack_config())
    print(f"bench stack up in {time.monotonic() - t0:.1f}s at {stack.gateway_url}", flush=True)
    try:
        host = stack.host("api")
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        with httpx.Client(base_url=stack.gateway_url, headers={"Host": host}) as client:
            resp = client.post(
                "/v1/auth/signup", json={"email": email, "password": "correct horse battery"}
            )
            assert resp.status_code == 201, resp.text
            token = resp.json()["access_token"]
            headers = {"Host": host, "Authorization": f"Bearer {token}"}
            check = client.get("/v1/users/me", headers=headers)
            assert check.status_code == 200, check.text
        return run_load(wrk, f"{stack.gateway_url}/v1/users/me", headers, LOAD)
    finally:
        stack.stop()


def run() -> list[Row]:
    wrk = ensure_wrk()
    if not wrk:
        print("wrk unavailable: falling back to an httpx load loop (numbers are client-bound)")
    floor = measure_floor(wrk)
    ours = measure_platform(wrk)
    load = (
        f"-t{LOAD.threads} -c{LOAD.connections} -d{LOAD.seconds}s "
        f"after {LOAD.warmup_seconds}s warm-up"
    )
    rows = [
        [
            name,
            r.tool,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.requests),
            str(r.errors),
        ]
        for name, r in (
            ("platform: gateway -> identity GET /v1/users/me (JWT)", ours),
            ("floor: FastAPI + 1 asyncpg query, direct", floor),
        )
    ]
    print_table(
        f"auth: authenticated read ({load})",
        ["", "tool", "req/s", "p50 ms", "p99 ms", "requests", "errors"],
        rows,
    )
    ratio = ours.rps / floor.rps
    print(
        f"ratio platform/floor req/s: {ratio:.2f}  (goal >= 0.50) "
        f"{'OK' if ratio >= 0.5 else 'MISSED'}"
    )
    print(f"p50 latency platform/floor: {ours.p50_ms / floor.p50_ms:.2f}x")
    if ours.errors or floor.errors:
        print("WARNING: errors during the load; the figures are not trustworthy")
    return [
        Row("GET /v1/users/me via gateway, req/s", ours.rps, floor.rps, "req/s", ">= 0.5 x floor"),
        Row("GET /v1/users/me p50", ours.p50_ms, floor.p50_ms, "ms", "-", higher_is_better=False),
        Row("GET /v1/users/me p99", ours.p99_ms, floor.p99_ms, "ms", "-", higher_is_better=False),
    ]
