"""Moves: POST /v1/databases/{id}/move of a ~1 GB database vs `pg_dump -Fc | pg_restore` by
hand between the same two clusters, in the same run; and the write-freeze window of a move
with logical replication (both clusters `wal_level = logical`) and without it.

One platform (identity + provisioner) and three tenant clusters: local-1 (`wal_level =
replica`, so a move from it copies with pg_dump under a freeze), local-2 and local-3
(`wal_level = logical`). The database is filled on local-1; then, in this order:
1. the floors: `pg_dump -Fc | pg_restore` by hand, local-1 -> local-2, into a scratch database,
   as the old scripts did (zlib) and without compression, as the move pipes it (the floor);
2. ours, dump path: the move local-1 -> local-2 (POST until GET shows the new port, ready);
3. ours, logical path: the move local-2 -> local-3;
4. the freeze of a logical move of a small (~10 MB) database, to show it does not grow with
   the size.
MOVE_BENCH_MB sets the size (default 1024). Every cluster's data goes with the stack.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import uuid

import httpx
import psycopg
from common import Row, print_table

SIZE_MB = int(os.environ.get("MOVE_BENCH_MB", "1024"))
SMALL_MB = 10
ROW_BYTES = 300  # one row of `payload` below, with its tuple header, roughly
LOGICAL = {"wal_level": "logical", "max_wal_size": "8GB"}


def bench_config():  # type: ignore[no-untyped-def]
    from auth_bench import bench_stack_config

    base = bench_stack_config(slot=8, name="bench-moves")
    return dataclasses.replace(
        base,
        services=("identity", "provisioner"),
        settings={
            **base.settings,
            "PROVISIONER_MOVE_GRACE_SECONDS": "1",
            # the test stacks' 48 MB free-plan size would turn the database read-only
            "PLATFORM_FREE_PLAN_DATABASE_SIZE_BYTES": str(64 * 1024**3),
        },
    )


class Api:
    def __init__(self, stack) -> None:  # type: ignore[no-untyped-def]
        self.host = stack.host("api")
        self.client = httpx.Client(base_url=stack.gateway_url, timeout=120)
        env = stack.env
        self.admin = self._login(
            env["IDENTITY_BOOTSTRAP_ADMIN_EMAIL"], env["IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"]
        )
        email = f"move-{uuid.uuid4().hex[:10]}@example.com"
        resp = self.post("/v1/auth/signup", None, json={"email": email, "password": "x" * 12})
        self.user = resp.json()["access_token"]

    def _login(self, email: str, password: str) -> str:
        resp = self.post("/v1/auth/login", None, json={"email": email, "password": password})
        return str(resp.json()["access_token"])

    def headers(self, token: str | None) -> dict[str, str]:
        h = {"Host": self.host}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    def post(self, path: str, token: str | None, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
        resp = self.client.post(path, headers=self.headers(token), **kw)
        assert resp.status_code < 300, resp.text
        return resp

    def get(self, path: str, token: str | None) -> dict:  # type: ignore[type-arg]
        resp = self.client.get(path, headers=self.headers(token))
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def move(self, db_id: str, cluster: str, port: int) -> tuple[float, float]:
        """Seconds from the POST until the database answers on `port`; its freeze window."""
        self.post(f"/v1/clusters/{cluster}/activate", self.admin)
        t = time.perf_counter()
        self.post(f"/v1/databases/{db_id}/move", self.admin, json={"cluster": cluster})
        while True:
            db = self.get(f"/v1/databases/{db_id}", self.user)
            if db["status"] != "moving":
                break
            time.sleep(0.1)
        took = time.perf_counter() - t
        self.post(f"/v1/clusters/{cluster}/drain", self.admin)
        assert db["port"] == port, f"the move failed: {db}"
        [latest, *_] = self.get(f"/v1/databases/{db_id}/moves", self.admin)["items"]
        return took, float(latest["freeze_seconds"])


def fill(uri: str, megabytes: int) -> int:
    rows = megabytes * 1024 * 1024 // ROW_BYTES
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE payload (id bigint PRIMARY KEY, note text NOT NULL, n int NOT NULL)"
        )
        step = 200_000
        for start in range(1, rows + 1, step):
            conn.execute(
                "INSERT INTO payload SELECT g, md5(g::text) || repeat('x', 200), g %% 97"
                " FROM generate_series(%s, %s) g",
                (start, min(rows, start + step - 1)),
            )
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert size is not None
    return int(size[0])


def by_hand(tools: str, source, target, db: str, *flags: str) -> float:  # type: ignore[no-untyped-def]
    """`pg_dump -Fc db | pg_restore -d scratch`, the way the old scripts did it."""
    scratch = f"bench_floor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(target.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    env = {**os.environ, "PGPASSWORD": source.password}
    t = time.perf_counter()
    dump = subprocess.Popen(
        [f"{tools}/pg_dump", "-Fc", *flags, "-h", "127.0.0.1", "-p", str(source.port),
         "-U", "shardz_admin", "-d", db],
        stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    restore = subprocess.run(
        [f"{tools}/pg_restore", "--no-owner", "-h", "127.0.0.1", "-p", str(target.port),
         "-U", "shardz_admin", "-d", scratch],
        stdin=dump.stdout, env={**env, "PGPASSWORD": target.password}, check=True,
    )  # fmt: skip
    assert dump.wait() == 0 and restore.returncode == 0
    took = time.perf_counter() - t
    with psycopg.connect(target.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{scratch}"')
    return took


def run() -> list[Row]:
    from shardz_devstack.postgres import pg_bindir
    from shardz_devstack.testing import start_test_stack

    stack = start_test_stack(bench_config())
    try:
        two = stack.start_extra_cluster(2, None, LOGICAL)
        three = stack.start_extra_cluster(3, None, LOGICAL)
        one = stack.tenant_clusters[0]
        api = Api(stack)
        for c in (two, three):
            api.post("/v1/clusters", api.admin, json=c.registration())
            api.post(f"/v1/clusters/{c.name}/drain", api.admin)
        created = api.post("/v1/databases", api.user, json={"name": "big"}).json()
        small = api.post("/v1/databases", api.user, json={"name": "small"}).json()
        t = time.perf_counter()
        size = fill(created["uri"], SIZE_MB)
        fill(small["uri"], SMALL_MB)
        print(f"filled {size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s", flush=True)
        scripts = by_hand(str(pg_bindir()), one, two, created["database"])
        print(f"by hand (pg_dump -Fc | pg_restore): {scripts:.1f} s", flush=True)
        # the same without compression, as the move pipes it: the floor of our overhead
        floor = by_hand(str(pg_bindir()), one, two, created["database"], "-Z0")
        print(f"by hand (pg_dump -Fc -Z0 | pg_restore): {floor:.1f} s", flush=True)
        dump_took, dump_freeze = api.move(created["id"], two.name, two.port)
        print(f"move (pg_dump): {dump_took:.1f} s, freeze {dump_freeze:.2f} s", flush=True)
        logical_took, logical_freeze = api.move(created["id"], three.name, three.port)
        print(f"move (logical): {logical_took:.1f} s, freeze {logical_freeze:.2f} s", flush=True)
        api.move(small["id"], two.name, two.port)  # onto a logical cluster first
        _, small_freeze = api.move(small["id"], three.name, three.port)
        print(f"move (logical, {SMALL_MB} MB): freeze {small_freeze:.2f} s", flush=True)
    finally:
        stack.stop()
    gb = f"{size / 1e6:.0f} MB"
    rows = [
        Row(f"move {gb}, pg_dump path (s)", dump_took, floor, "s", "<= 1.2x by hand", False),
        Row(
            f"move {gb}, pg_dump path, vs the old scripts' compressed dump (s)",
            dump_took,
            scripts,
            "s",
            "<= 1.2x by hand",
            False,
        ),
        Row(f"move {gb}, logical (s)", logical_took, floor, "s", "<= 1.2x by hand", False),
        Row(f"write freeze, logical, {gb} (s)", logical_freeze, floor, "s", "< 2 s", False),
        Row(
            f"write freeze, logical, {SMALL_MB} MB (s)",
            small_freeze,
            logical_freeze,
            "s",
            "same at any size",
            False,
        ),
        Row(f"write freeze, pg_dump path, {gb} (s)", dump_freeze, floor, "s", "the copy", False),
    ]
    print_table(
        f"moves: a {gb} database between two clusters"
        " (floor: pg_dump -Fc -Z0 | pg_restore by hand)",
        ["", "ours", "floor", "floor/ours", "goal"],
        [[r.figure, f"{r.ours:.2f}", f"{r.floor:.2f}", f"{r.ratio:.2f}", r.goal] for r in rows],
    )
    return rows
