"""Databases stay within their plan's size, transactions do not stay open for ever, and
placement learns each cluster's connection and disk use: a few queries per cluster every
`size_check_interval_seconds` (a singleton job across workers).

- Over the limit: read-only. `default_transaction_read_only` is set for the database and for
  its role and the sessions are ended, so new writes fail with SQLSTATE 25006; the owner can
  still read, and may `SET default_transaction_read_only = off` in a session to delete.
- A tenant who uses that to keep writing, so that the database grows by more than a quarter of
  its limit past the size at which it turned read-only, loses its logins (`db.suspended`).
- Back under the limit (it shrank, or its plan grew): writable and, if it had lost them, its
  logins back (`db.resumed`)."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from psycopg import AsyncConnection
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.events import DatabaseResumed, DatabaseSuspended
from shardz_common.plans import database_size_limit
from shardz_provisioner.db.tables import Account, Cluster, Database
from shardz_provisioner.domain import names
from shardz_provisioner.services import ddl
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable
from shardz_provisioner.services.events import emit

log = structlog.get_logger(__name__)
READ_ONLY, OVER_GROWN = "read_only", "over_grown"


def next_state(state: str | None, size: int, limit: int, size_at_limit: int | None) -> str | None:
    """The size state a database should be in (pure: the rules above)."""
    if size <= limit:
        return None
    if state is None:
        return READ_ONLY
    if state == READ_ONLY and size > (size_at_limit or limit) + limit // 4:
        return OVER_GROWN
    return state


async def enforce(
    sessions: async_sessionmaker[AsyncSession],
    registry: ClusterRegistry,
    free_plan_size: int,
    idle_ceiling: float = 3600.0,
    statement_ceiling: float = 3600.0,
) -> int:
    """Check every database's size against its plan, and end transactions left open past the
    ceiling; returns how many databases changed state."""
    changed = 0
    async with sessions() as s:
        clusters = await registry.load(s)
    for cluster in clusters:
        try:
            async with registry.admin(cluster.name) as conn:
                sizes = await ddl.usage_all(conn)
                ended = await ddl.end_idle_transactions(conn, idle_ceiling)
                ended += await ddl.cancel_long_statements(conn, statement_ceiling)
                budget, live = await ddl.connection_state(conn)
                disk_used = await ddl.disk_used(conn)
        except ClusterUnavailable:
            continue
        async with sessions() as s, s.begin():  # what placement weighs
            await s.execute(
                update(Cluster)
                .where(Cluster.name == cluster.name)
                .values(connection_budget=budget, live_connections=live, used_bytes=disk_used)
            )
        if ended:
            log.warning("ended transactions past a ceiling", cluster=cluster.name, n=ended)
        async with sessions() as s, s.begin():
            rows = (
                await s.execute(
                    select(Database, Account.status)
                    .join(Account, Account.user_id == Database.user_id)
                    .where(Database.cluster == cluster.name, Database.status == "ready")
                    .with_for_update(of=Database, skip_locked=True)
                )
            ).all()
            for db, account_status in rows:
                if db.db_name not in sizes:
                    continue
                size = sizes[db.db_name][0]
                limit = database_size_limit(db.plan, free_plan_size)
                target = next_state(db.size_state, size, limit, db.size_at_limit)
                if target == db.size_state:
                    continue
                try:
                    async with registry.admin(cluster.name) as conn:
                        await _apply(conn, db, target, account_status == "active")
                except ClusterUnavailable:
                    break  # the rest of this cluster waits for the next run
                _record(s, db, target, size)
                log.warning(
                    "database size state", database_id=str(db.id), state=target, size=size,
                    limit=limit,
                )  # fmt: skip
                changed += 1
    return changed


async def _apply(
    conn: AsyncConnection, db: Database, target: str | None, account_active: bool
) -> None:
    await ddl.set_read_only(conn, db.db_name, db.role_name, target is not None)
    terminal = names.terminal_role_name(db.id)
    if target == OVER_GROWN:
        await ddl.set_login(conn, db.role_name, False)
        await ddl.disable_terminal_login(conn, terminal)
    elif db.size_state == OVER_GROWN and account_active:
        await ddl.set_login(conn, db.role_name, True)
    if target is not None:
        await ddl.terminate_sessions(conn, db.role_name)  # new sessions take the setting
        await ddl.terminate_sessions(conn, terminal)


def _record(session: AsyncSession, db: Database, target: str | None, size: int) -> None:
    was = db.size_state
    db.size_state = target
    db.size_at_limit = size if target == READ_ONLY and was is None else db.size_at_limit
    if target is None:
        db.size_at_limit = None
    db.updated_at = datetime.now(UTC)
    if target == OVER_GROWN:
        emit(session, DatabaseSuspended(database_id=db.id, user_id=db.user_id), db.id)
    elif was == OVER_GROWN:
        emit(session, DatabaseResumed(database_id=db.id, user_id=db.user_id), db.id)
