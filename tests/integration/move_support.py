"""Two extra tenant clusters with `wal_level = logical` for the move tests, started once per
test platform and kept draining (so no other test's database lands there) except while a
test moves a database onto one of them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg

from tests.integration.helpers import admin_token, bearer, free_port, wait_for

_started: dict[int, tuple[Any, Any]] = {}
LOGICAL = {"wal_level": "logical"}


async def move_clusters(gateway: httpx.AsyncClient, stack: Any) -> tuple[Any, Any]:
    """(local-5, local-6), registered and draining; local-1 (the stack's own) keeps the
    default `wal_level = replica`, so a move from it copies with pg_dump under a freeze."""
    if id(stack) not in _started:
        admin = await admin_token(gateway, stack.env)
        pair = tuple(stack.start_extra_cluster(i, free_port(), LOGICAL) for i in (5, 6))
        for cluster in pair:
            added = await gateway.post(
                "/v1/clusters", json=cluster.registration(), headers=bearer(admin)
            )
            assert added.status_code == 201, added.text
            await gateway.post(f"/v1/clusters/{cluster.name}/drain", headers=bearer(admin))
        _started[id(stack)] = pair
    return _started[id(stack)]


@contextlib.asynccontextmanager
async def active(gateway: httpx.AsyncClient, admin: str, *names: str) -> AsyncIterator[None]:
    """Clusters that take databases for the length of a block, draining again after it."""
    for name in names:
        resp = await gateway.post(f"/v1/clusters/{name}/activate", headers=bearer(admin))
        assert resp.status_code == 200, resp.text
    try:
        yield
    finally:
        for name in names:
            await gateway.post(f"/v1/clusters/{name}/drain", headers=bearer(admin))


async def on_cluster(dsn: str, db: dict[str, Any]) -> tuple[bool, bool]:
    """(the tenant's role exists, its database exists) on the cluster of `dsn`."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        role = await (
            await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (db["username"],))
        ).fetchone()
        data = await (
            await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["database"],))
        ).fetchone()
    return role is not None, data is not None


async def move_leftovers(dsn: str) -> list[str]:
    """Publications' slots, subscriptions' roles: whatever a move leaves on a cluster."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (
            await conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'shz\\_m\\_%%'"
                " UNION ALL SELECT slot_name::text FROM pg_replication_slots"
            )
        ).fetchall()
    return [r[0] for r in rows]


async def fill(uri: str, rows: int) -> int:
    """A table of `rows` rows; returns their checksum (sum of ids and text lengths)."""
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        await conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, label text NOT NULL)")
        await conn.execute(
            "INSERT INTO items (label) SELECT md5(g::text) FROM generate_series(1, %s) g", (rows,)
        )
    return await checksum(uri)


async def checksum(uri: str) -> int:
    async with await psycopg.AsyncConnection.connect(uri) as conn:
        row = await (
            await conn.execute("SELECT count(*) * 1000000 + sum(id + length(label)) FROM items")
        ).fetchone()
    assert row is not None
    return int(row[0])


async def get_db(gateway: httpx.AsyncClient, token: str, db_id: str) -> dict[str, Any]:
    resp = await gateway.get(f"/v1/databases/{db_id}", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def wait_moved(
    gateway: httpx.AsyncClient, token: str, db_id: str, port: int, timeout: float = 90
) -> dict[str, Any]:
    async def there() -> dict[str, Any] | None:
        resp = await gateway.get(f"/v1/databases/{db_id}", headers=bearer(token))
        if resp.status_code == 503:  # the shared control-plane server is busy: ask again
            return None
        assert resp.status_code == 200, resp.text
        db: dict[str, Any] = resp.json()
        if db["status"] == "moving":
            return None
        assert db["port"] == port, f"the move failed: {db}"
        return db

    moved: dict[str, Any] = await wait_for(there, timeout=timeout, interval=0.2)
    return moved


async def moves_of(gateway: httpx.AsyncClient, admin: str, db_id: str) -> list[dict[str, Any]]:
    resp = await gateway.get(f"/v1/databases/{db_id}/moves", headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def moved_events(stack: Any, db_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(
        stack.config.database_dsn("provisioner")
    ) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM outbox WHERE type = 'db.moved' AND body LIKE %s",
                (f"%{db_id}%",),
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def with_port(uri: str, old: int, new: int) -> str:
    return uri.replace(f":{old}/", f":{new}/")
