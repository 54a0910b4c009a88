"""Registered tenant clusters: admin connection pools, registration and placement."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import structlog
from cryptography.fernet import Fernet
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.errors import Unavailable
from shardz_common.plans import get_plan
from shardz_provisioner.db.tables import Cluster, Database
from shardz_provisioner.domain.models import ClusterIn
from shardz_provisioner.services import ddl

log = structlog.get_logger(__name__)
ADMIN_OPTIONS = "-c search_path=pg_catalog,pg_temp -c statement_timeout=60000"
DOWN_SECONDS = 15.0
CONNECTIONS_SCARCE = 0.5  # past this share of its budget a cluster is loaded by connections


class ClusterUnavailable(Unavailable):
    # False when no connection was made at all, so nothing can have been changed.
    reached: bool = False


class ClusterRegistry:
    def __init__(
        self,
        fernet: Fernet,
        pool_size: int = 4,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.fernet = fernet
        self.pool_size = pool_size
        # to learn of clusters registered (or changed) by another replica
        self.sessions = sessions
        self._pools: dict[str, AsyncConnectionPool[AsyncConnection]] = {}
        self._dsns: dict[str, str] = {}
        self._down_until: dict[str, float] = {}

    def encrypt(self, dsn: str) -> bytes:
        return self.fernet.encrypt(dsn.encode())

    async def load(self, session: AsyncSession) -> list[Cluster]:
        clusters = list((await session.execute(select(Cluster))).scalars())
        for c in clusters:
            dsn = self.fernet.decrypt(c.admin_dsn).decode()
            if self._dsns.get(c.name, dsn) != dsn:
                stale = self._pools.pop(c.name, None)
                if stale is not None:
                    await stale.close()
            self._dsns[c.name] = dsn
        return clusters

    async def refresh(self) -> None:
        if self.sessions is not None:
            async with self.sessions() as s:
                await self.load(s)

    async def register(
        self, session: AsyncSession, spec: ClusterIn, *, must_answer: bool = True
    ) -> Cluster:
        """Add or update a cluster; connects and hardens it first (so a typo fails here).
        From configuration at start, a cluster that is down is registered all the same."""
        try:
            async with await psycopg.AsyncConnection.connect(
                spec.admin_dsn, autocommit=True, connect_timeout=5, options=ADMIN_OPTIONS
            ) as conn:
                await ddl.harden_cluster(conn)
        except psycopg.Error as exc:
            if must_answer:
                raise ClusterUnavailable(f"cannot reach cluster {spec.name}") from exc
            log.warning("registering a cluster that does not answer", cluster=spec.name)
        values = {
            "name": spec.name,
            "admin_dsn": self.encrypt(spec.admin_dsn),
            "host": spec.host,
            "port": spec.port,
            "capacity": spec.capacity,
            "disk_bytes": spec.disk_bytes,
        }
        await session.execute(
            insert(Cluster)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[Cluster.name],
                set_={k: v for k, v in values.items() if k != "name"},
            )
        )
        old = self._pools.pop(spec.name, None)
        if old is not None and self._dsns.get(spec.name) != spec.admin_dsn:
            await old.close()
        elif old is not None:
            self._pools[spec.name] = old
        self._dsns[spec.name] = spec.admin_dsn
        cluster = await session.get(Cluster, spec.name)
        assert cluster is not None
        return cluster

    async def register_from_settings(self, session: AsyncSession, raw: str) -> None:
        for item in json.loads(raw or "[]"):
            await self.register(session, ClusterIn.model_validate(item), must_answer=False)

    def is_up(self, name: str) -> bool:
        return self._down_until.get(name, 0.0) < time.monotonic()

    async def _pool(self, name: str) -> AsyncConnectionPool[AsyncConnection]:
        pool = self._pools.get(name)
        if pool is None:
            if name not in self._dsns:
                await self.refresh()
            dsn = self._dsns.get(name)
            if dsn is None:
                log.error("cluster not registered here", cluster=name)
                raise ClusterUnavailable("the database server is unavailable")
            pool = AsyncConnectionPool(
                dsn,
                min_size=0,
                max_size=self.pool_size,
                open=False,
                # a pooled connection to a server that went away is noticed before use
                check=AsyncConnectionPool.check_connection,
                kwargs={"autocommit": True, "options": ADMIN_OPTIONS, "connect_timeout": 3},
            )
            self._pools[name] = pool
        return pool

    @asynccontextmanager
    async def admin(self, name: str) -> AsyncIterator[AsyncConnection]:
        """An admin connection to a cluster; a cluster that does not answer is 503."""
        pool = await self._pool(name)
        reached = False
        try:
            if pool.closed:
                await pool.open(wait=False)
            async with pool.connection(timeout=4) as conn:
                reached = True
                yield conn
        except (PoolTimeout, psycopg.OperationalError) as exc:
            self._down_until[name] = time.monotonic() + DOWN_SECONDS
            log.warning("tenant cluster unavailable", cluster=name, error=type(exc).__name__)
            err = ClusterUnavailable(
                "the database server is unavailable" + ("" if reached else "; nothing was changed")
            )
            err.reached = reached
            if not reached:
                await self.refresh()  # its address may have changed on another replica
            raise err from exc
        else:
            self._down_until.pop(name, None)

    async def dsn(self, name: str) -> str:
        """The cluster's admin DSN (for the client tools of a move); never shown."""
        if name not in self._dsns:
            await self.refresh()
        dsn = self._dsns.get(name)
        if dsn is None:
            raise ClusterUnavailable("the database server is unavailable")
        return dsn

    @asynccontextmanager
    async def admin_in(self, name: str, dbname: str) -> AsyncIterator[AsyncConnection]:
        """An admin connection inside one tenant database (unpooled: moves only)."""
        dsn = await self.dsn(name)
        try:
            # a frozen database is read-only for every new session: not for ours
            conn = await psycopg.AsyncConnection.connect(
                dsn,
                dbname=dbname,
                autocommit=True,
                options=ADMIN_OPTIONS + " -c default_transaction_read_only=off",
                connect_timeout=5,
            )
        except psycopg.OperationalError as exc:
            raise ClusterUnavailable("the database server is unavailable") from exc
        async with conn:
            yield conn

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close(timeout=2)
        self._pools.clear()

    async def placement(
        self, session: AsyncSession, overcommit: float, disk_reserve: float = 0.0
    ) -> list[str]:
        """Active clusters with room, least loaded first, those known down last. The load is
        the largest of: databases against capacity; live connections against the connection
        budget once more than half of it is in use (then connections are what runs out
        first); disk used against the declared disk. A cluster whose connections are all
        taken, whose plans promise more than `overcommit` times its budget, or whose databases
        leave less than `disk_reserve` of its disk free, takes no more databases."""
        promised = await committed_connections(session)
        rows = []
        for c, used in await cluster_loads(session):
            if c.status != "active" or used >= c.capacity:
                continue
            load = used / c.capacity
            if c.connection_budget:
                live = c.live_connections or 0
                if live >= c.connection_budget:
                    continue
                if promised.get(c.name, 0) > overcommit * c.connection_budget:
                    continue
                busy = live / c.connection_budget
                if busy >= CONNECTIONS_SCARCE:
                    load = max(load, busy)
            if c.disk_bytes and c.used_bytes is not None:
                full = c.used_bytes / c.disk_bytes
                if full >= 1.0 - disk_reserve:
                    continue
                load = max(load, full)
            rows.append((c, load))
        rows.sort(key=lambda r: (not self.is_up(r[0].name), r[1], r[0].name))
        return [c.name for c, _ in rows]


async def committed_connections(session: AsyncSession) -> dict[str, int]:
    """Per cluster, the connections its live databases' plans allow in all."""
    stmt = (
        select(Database.cluster, Database.plan, func.count())
        .where(Database.status.not_in(("deleted", "deleting")), Database.cluster.is_not(None))
        .group_by(Database.cluster, Database.plan)
    )
    totals: dict[str, int] = {}
    for cluster, plan_id, n in (await session.execute(stmt)).tuples():
        plan = get_plan(plan_id, "database")
        limit = int(plan.limits.get("connections", 5)) if plan else 5
        totals[str(cluster)] = totals.get(str(cluster), 0) + limit * int(n)
    return totals


async def cluster_loads(
    session: AsyncSession, name: str | None = None
) -> list[tuple[Cluster, int]]:
    """Every cluster (or one) with the number of live databases it holds, in one query."""
    stmt = (
        select(Cluster, func.count(Database.id))
        .outerjoin(Database, (Database.cluster == Cluster.name) & (Database.status != "deleted"))
        .group_by(Cluster.name)
        .order_by(Cluster.name)
    )
    if name is not None:
        stmt = stmt.where(Cluster.name == name)
    return [(c, int(used)) for c, used in (await session.execute(stmt)).tuples()]
