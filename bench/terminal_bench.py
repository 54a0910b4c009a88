"""The SQL terminal: `select 1` through the gateway's WebSocket against psycopg straight to
the database (the floor) and against `psql -c` as a fresh process per command (the old
design); then SESSIONS concurrent sessions each running a query a second, against the same
load on direct connections, with the terminal's memory per session.

`uv run python bench/run.py terminal` (TERMINAL_BENCH_SECONDS shortens the load phase)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid

import httpx
import psycopg
from common import Row, percentile, print_table
from websockets.asyncio.client import connect

ROUND_TRIPS = 2000
PSQL_RUNS = 40
SESSIONS = 200
SECONDS = float(os.environ.get("TERMINAL_BENCH_SECONDS", "60"))


def stack_config():  # type: ignore[no-untyped-def]
    from auth_bench import bench_stack_config

    return dataclasses.replace(
        bench_stack_config(slot=9, name="bench-term"),
        services=("identity", "provisioner", "terminal"),
    )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Session:
    def __init__(self, ws) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.n = 0

    async def select1(self) -> float:
        self.n += 1
        started = time.perf_counter()
        await self.ws.send(json.dumps({"type": "query", "id": self.n, "sql": "select 1"}))
        while json.loads(await self.ws.recv())["type"] != "done":
            pass
        return (time.perf_counter() - started) * 1000


async def open_session(stack, db_id: str, token: str) -> Session:  # type: ignore[no-untyped-def]
    port = stack.config.gateway_port
    ws = await connect(
        f"ws://{stack.host('terminal')}:{port}/v1/terminal/{db_id}",
        host="127.0.0.1",
        port=port,
        additional_headers={"Authorization": f"Bearer {token}"},
        proxy=None,
        compression=None,
        open_timeout=60,
    )
    assert json.loads(await ws.recv())["type"] == "ready"
    return Session(ws)


async def direct_connection(cred: dict) -> psycopg.AsyncConnection:  # type: ignore[type-arg]
    """The floor: the same login straight to the database, no terminal, no gateway."""
    conn = await psycopg.AsyncConnection.connect(
        host=cred["host"],
        port=cred["port"],
        dbname=cred["database"],
        user=cred["username"],
        password=cred["password"],
        autocommit=True,
    )
    await conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(cred["role"])))
    return conn


async def direct_select1(conn: psycopg.AsyncConnection) -> float:  # type: ignore[type-arg]
    started = time.perf_counter()
    await conn.execute("select 1")
    return (time.perf_counter() - started) * 1000


async def steady(call, count: int, seconds: float) -> list[float]:  # type: ignore[no-untyped-def]
    """`count` clients, each calling once a second (spread over the second) for `seconds`."""
    latencies: list[float] = []

    async def client(i: int) -> None:
        await asyncio.sleep(i / count)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            latencies.append(await call(i))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))

    await asyncio.gather(*(client(i) for i in range(count)))
    return latencies


def psql_per_command(cred: dict) -> list[float]:  # type: ignore[type-arg]
    psql = shutil.which("psql") or "/usr/bin/psql"
    env = {**os.environ, "PGPASSWORD": cred["password"]}
    argv = [psql, "-X", "-h", cred["host"], "-p", str(cred["port"]), "-U", cred["username"]]
    argv += ["-d", cred["database"], "-c", "select 1"]
    times = []
    for _ in range(PSQL_RUNS):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def measure(stack) -> list[Row]:  # type: ignore[no-untyped-def]
    host = stack.host("api")
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers={"Host": host}) as client:
        email = f"term-{uuid.uuid4().hex[:10]}@example.com"
        signup = await client.post(
            "/v1/auth/signup", json={"email": email, "password": "correct horse battery"}
        )
        token = signup.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        db = (await client.post("/v1/databases", json={"name": "bench"}, headers=auth)).json()
        user_id = signup.json()["user"]["id"]
        cred = (
            await client.post(
                f"{stack.internal_urls['provisioner']}/internal/session-credentials",
                json={"database_id": db["id"], "user_id": user_id},
                headers={"Authorization": f"Bearer {stack.env['PROVISIONER_INTERNAL_SECRET']}"},
            )
        ).json()
    # 1. one round trip, sequential
    session = await open_session(stack, db["id"], token)
    for _ in range(200):
        await session.select1()
    ws_times = [await session.select1() for _ in range(ROUND_TRIPS)]
    await session.ws.close()
    conn = await direct_connection(cred)
    for _ in range(200):
        await direct_select1(conn)
    direct_times = [await direct_select1(conn) for _ in range(ROUND_TRIPS)]
    await conn.close()
    psql_times = psql_per_command(cred)
    # 2. SESSIONS sessions, a query a second each
    # every terminal API process behind the gateway holds some of the sessions
    pids = [p.pid for name, p in stack.processes.items() if name.startswith("terminal-api")]
    before = sum(rss_mb(pid) for pid in pids)
    sessions = []
    for _ in range(SESSIONS):
        sessions.append(await open_session(stack, db["id"], token))
    opened = sum(rss_mb(pid) for pid in pids)
    load = await steady(lambda i: sessions[i].select1(), SESSIONS, SECONDS)
    after = sum(rss_mb(pid) for pid in pids)
    for s in sessions:
        await s.ws.close()
    conns = [await direct_connection(cred) for _ in range(SESSIONS)]
    floor_load = await steady(lambda i: direct_select1(conns[i]), SESSIONS, SECONDS)
    for c in conns:
        await c.close()
    per_session = (max(opened, after) - before) / SESSIONS
    p50 = statistics.median
    label = f"{SESSIONS} sessions, 1 q/s, {SECONDS:.0f}s"
    measured = [
        ("WebSocket via gateway", ws_times),
        ("psycopg direct", direct_times),
        ("psql -c per command", psql_times),
        (f"{label}: terminal", load),
        (f"{label}: direct", floor_load),
    ]
    print_table(
        "terminal: select 1 (ms)",
        ["path", "p50", "p99", "n"],
        [[name, f"{p50(v):.3f}", f"{percentile(v, 99):.3f}", str(len(v))] for name, v in measured],
    )
    print(
        f"terminal RSS: {before:.1f} MB idle, {opened:.1f} MB with {SESSIONS} sessions open,"
        f" {after:.1f} MB after the load: {per_session * 1024:.0f} KiB per session"
    )
    return [
        Row("terminal select 1 p50 (WebSocket via gateway vs psycopg direct)", p50(ws_times),
            p50(direct_times), "ms", "p50 <= 2 ms", higher_is_better=False),
        Row("terminal select 1 p50 vs psql -c per command (old design)", p50(ws_times),
            p50(psql_times), "ms", ">= 10x faster", higher_is_better=False),
        Row(f"terminal p99 at {SESSIONS} sessions x 1 q/s (vs direct connections)",
            percentile(load, 99), percentile(floor_load, 99), "ms", "", higher_is_better=False),
        Row("terminal memory per open session (vs the 1 MB goal)", per_session, 1.0, "MB",
            "< 1 MB", higher_is_better=False),
    ]  # fmt: skip


def run() -> list[Row]:
    from shardz_devstack.testing import start_test_stack

    # one user holds every session of the load phase: lift the per-user caps for the bench
    os.environ["TERMINAL_MAX_SESSIONS_PER_USER"] = str(SESSIONS * 2)
    os.environ["PROVISIONER_TERMINAL_CONNECTION_LIMIT"] = str(SESSIONS * 2 + 10)
    t0 = time.monotonic()
    stack = start_test_stack(stack_config())
    print(f"bench stack up in {time.monotonic() - t0:.1f}s at {stack.gateway_url}", flush=True)
    try:
        return asyncio.run(measure(stack))
    finally:
        stack.stop()
