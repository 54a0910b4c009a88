"""Everything after creation: rotation, usage, suspension, deletion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.auth import Principal
from shardz_common.errors import AccountSuspended, Conflict
from shardz_common.events import DatabaseDeleted, DatabaseResumed, DatabaseSuspended
from shardz_provisioner.db.tables import Account, Cluster, Database
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import DatabaseWithPassword, Usage
from shardz_provisioner.services import ddl
from shardz_provisioner.services.clusters import ClusterRegistry
from shardz_provisioner.services.events import emit
from shardz_provisioner.services.provisioning import get_owned
from shardz_provisioner.services.views import to_out


async def _cluster(session: AsyncSession, db: Database) -> Cluster:
    cluster = await session.get(Cluster, db.cluster)
    assert cluster is not None
    return cluster


async def _require_active_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    account = await session.get(Account, user_id)
    if account is not None and account.status == "suspended":
        raise AccountSuspended("the account is suspended for an unpaid invoice")


async def rotate(
    session: AsyncSession, registry: ClusterRegistry, user: Principal, database_id: uuid.UUID
) -> DatabaseWithPassword:
    db = await get_owned(session, user, database_id, for_update=True)  # one rotation at a time
    await _require_active_account(session, user.id)
    if db.status != "ready":
        raise Conflict(f"the database is {db.status}")
    password = names.new_password()
    verifier = await names.scram_verifier_async(password)
    assert db.cluster is not None
    async with registry.admin(db.cluster) as conn:
        await ddl.set_password(conn, db.role_name, verifier)
        await ddl.terminate_sessions(conn, db.role_name)
    db.password = registry.fernet.encrypt(password.encode())
    db.updated_at = datetime.now(UTC)
    out = to_out(db, await _cluster(session, db))
    return DatabaseWithPassword(
        **out.model_dump(exclude={"uri"}),
        password=password,
        uri=names.uri(out.username, password, out.host, out.port, out.database),
    )


async def usage(
    session: AsyncSession, registry: ClusterRegistry, user: Principal, database_id: uuid.UUID
) -> Usage:
    db = await get_owned(session, user, database_id)
    if db.status not in ("ready", "suspended"):
        raise Conflict(f"the database is {db.status}")
    assert db.cluster is not None
    async with registry.admin(db.cluster) as conn:
        size, connections = await ddl.usage(conn, db.db_name)
    return Usage(size_bytes=size, connections=connections, measured_at=datetime.now(UTC))


def _mark_deleting(session: AsyncSession, db: Database) -> None:
    db.status = "deleting"
    db.updated_at = datetime.now(UTC)
    emit(session, DatabaseDeleted(database_id=db.id, user_id=db.user_id), db.id)


async def delete(session: AsyncSession, user: Principal, database_id: uuid.UUID) -> None:
    """Gone for the user at once (`db.deleted`); the worker drops it from the server."""
    db = await get_owned(session, user, database_id)
    if db.status == "provisioning":
        raise Conflict("the database is still being created")
    if db.status != "deleting":
        _mark_deleting(session, db)


async def delete_all_for(session: AsyncSession, user_id: uuid.UUID) -> None:
    rows = (
        await session.execute(
            select(Database)
            .where(Database.user_id == user_id, Database.status.in_(("ready", "suspended")))
            .with_for_update()
        )
    ).scalars()
    for db in rows:
        _mark_deleting(session, db)


async def set_suspended(
    session: AsyncSession,
    registry: ClusterRegistry,
    user_id: uuid.UUID,
    suspended: bool,
    occurred_at: datetime,
) -> None:
    """Suspension stops logins (NOLOGIN, sessions ended); reactivation restores them. An
    event older than the account's last status change is ignored."""
    changed = await session.execute(
        update(Account)
        .where(
            Account.user_id == user_id,
            Account.status != "deleted",
            or_(Account.status_at.is_(None), Account.status_at <= occurred_at),
        )
        .values(status="suspended" if suspended else "active", status_at=occurred_at)
        .returning(Account.user_id)
    )
    if changed.first() is None:
        return
    current = "ready" if suspended else "suspended"
    rows = (
        await session.execute(
            select(Database)
            .where(Database.user_id == user_id, Database.status == current)
            .with_for_update()
        )
    ).scalars()
    for db in rows:
        assert db.cluster is not None
        async with registry.admin(db.cluster) as conn:
            await ddl.set_login(conn, db.role_name, not suspended)
            if suspended:
                await ddl.terminate_sessions(conn, db.role_name)
                # the terminal's login is enabled again by its next credential request
                await ddl.disable_terminal_login(conn, names.terminal_role_name(db.id))
        db.status = "suspended" if suspended else "ready"
        db.updated_at = datetime.now(UTC)
        event = DatabaseSuspended if suspended else DatabaseResumed
        emit(session, event(database_id=db.id, user_id=db.user_id), db.id)
