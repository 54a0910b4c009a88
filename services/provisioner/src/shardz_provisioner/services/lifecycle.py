"""Everything after creation: rotation, usage, suspension, deletion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.auth import Principal
from shardz_common.errors import AccountSuspended, Conflict
from shardz_common.events import DatabaseDeleted, DatabaseResumed, DatabaseSuspended
from shardz_provisioner import faults
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Account, Cluster, Database
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import DatabaseWithPassword, Usage
from shardz_provisioner.services import ddl
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable
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
    sessions: async_sessionmaker[AsyncSession],
    registry: ClusterRegistry,
    settings: ProvisionerSettings,
    user: Principal,
    database_id: uuid.UUID,
) -> DatabaseWithPassword:
    """A small saga, so the stored credential always logs in: record the new password as
    pending, set it on the server, then make it the stored one. A crash or a failed commit in
    between leaves the pending record, which `reconciler.settle_rotations` resolves by putting
    the stored (previous) password back on the server: the caller never saw the new one."""
    password = names.new_password()
    verifier = await names.scram_verifier_async(password)
    sealed = registry.fernet.encrypt(password.encode())
    async with sessions() as s, s.begin():
        db = await get_owned(s, user, database_id, for_update=True)  # one rotation at a time
        await _require_active_account(s, user.id)
        if db.status != "ready":
            raise Conflict(f"the database is {db.status}")
        db.pending_password = sealed
        db.updated_at = datetime.now(UTC)
        cluster_name, role = db.cluster, db.role_name
    assert cluster_name is not None
    try:
        async with registry.admin(cluster_name) as conn:
            await ddl.set_password(conn, role, verifier)
            faults.hit("rotation_after_ddl")
            await ddl.terminate_sessions(conn, role)
    except ClusterUnavailable as exc:
        if not exc.reached:  # nothing changed on the server: forget the attempt now
            await _clear_pending(sessions, database_id, sealed)
        raise
    async with sessions() as s, s.begin():
        db = await get_owned(s, user, database_id, for_update=True)
        if db.pending_password != sealed:
            raise Conflict("the database changed during the rotation; rotate again")
        db.password, db.pending_password = sealed, None
        db.updated_at = datetime.now(UTC)
        free_size = settings.platform.free_plan_database_size_bytes
        out = to_out(db, await _cluster(s, db), free_size)
    return DatabaseWithPassword(
        **out.model_dump(exclude={"uri"}),
        password=password,
        uri=names.uri(out.username, password, out.host, out.port, out.database),
    )


async def _clear_pending(
    sessions: async_sessionmaker[AsyncSession], database_id: uuid.UUID, sealed: bytes
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(
            update(Database)
            .where(Database.id == database_id, Database.pending_password == sealed)
            .values(pending_password=None)
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
    """Gone for the user at once (`db.deleted`); the worker drops it from the server. The row
    lock makes concurrent deletions announce it once; the others find it `deleting`."""
    db = await get_owned(session, user, database_id, for_update=True, deleting=True)
    if db.status == "provisioning":
        raise Conflict("the database is still being created")
    if db.status == "moving":  # the move ends within its freeze; delete it after
        raise Conflict("the database is being moved to another server; try again after")
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
    session: AsyncSession, user_id: uuid.UUID, suspended: bool, occurred_at: datetime
) -> None:
    """Record the account's state and mark its databases for `apply_access`: no DDL here, so
    a cluster that is down cannot roll the suspension back (nor dead-letter it). An event
    older than the account's last status change is ignored."""
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
    await session.execute(
        update(Database)
        .where(Database.user_id == user_id, Database.status.in_(("ready", "suspended", "moving")))
        .values(access_pending=True)
    )


async def apply_access(
    sessions: async_sessionmaker[AsyncSession], registry: ClusterRegistry, batch: int = 50
) -> int:
    """Make logins on the servers follow their accounts: suspended -> NOLOGIN and sessions
    ended, active -> LOGIN; `db.suspended` / `db.resumed` once applied. A database whose
    cluster is down stays pending and is retried at the next run; the others go on. Rows are
    claimed with SKIP LOCKED, so any number of workers can run this."""
    applied = 0
    async with sessions() as s, s.begin():
        rows = (
            await s.execute(
                select(Database, Account.status)
                .join(Account, Account.user_id == Database.user_id)
                .where(Database.access_pending)
                .order_by(Database.id)
                .limit(batch)
                .with_for_update(of=Database, skip_locked=True)
            )
        ).all()
        for db, account_status in rows:
            if db.status == "moving":
                continue  # applied once the move ends, on whichever cluster then holds it
            if db.status not in ("ready", "suspended"):
                db.access_pending = False  # deleted or deleting meanwhile: nothing to apply
                continue
            suspend = account_status == "suspended"
            assert db.cluster is not None
            login = not suspend and db.size_state != "over_grown"
            if not registry.is_up(db.cluster):
                continue  # known down a moment ago: do not wait on it again yet
            try:
                async with registry.admin(db.cluster) as conn:
                    await ddl.set_login(conn, db.role_name, login)
                    if suspend:
                        await ddl.terminate_sessions(conn, db.role_name)
                    if not login:
                        # the terminal's login comes back with its next credential request
                        await ddl.disable_terminal_login(conn, names.terminal_role_name(db.id))
            except ClusterUnavailable:
                continue  # converges once the cluster answers again
            db.access_pending = False
            target = "suspended" if suspend else "ready"
            if db.status != target:
                db.status = target
                db.updated_at = datetime.now(UTC)
                event = DatabaseSuspended if suspend else DatabaseResumed
                emit(s, event(database_id=db.id, user_id=db.user_id), db.id)
            applied += 1
    return applied
