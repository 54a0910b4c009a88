"""Creating a database is a saga, not a hope:

1. record the intent (status `provisioning`, generated names, encrypted password) and commit;
2. run idempotent DDL on the chosen tenant cluster;
3. mark it ready and write `db.provisioned` in one transaction.

A crash between the steps leaves an intent that the reconciler rolls back (worker). Each step
is its own unit of work, so this use case owns its commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from psycopg import AsyncConnection
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.auth import Principal
from shardz_common.errors import (
    AccountSuspended,
    Conflict,
    NotFound,
    PlanLimitReached,
    ProblemError,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from shardz_common.events import DatabaseProvisioned, DatabaseSuspended, DatabaseUsageReported
from shardz_common.plans import Plan, get_plan
from shardz_provisioner import faults
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Account, Cluster, Database, UsageSample
from shardz_provisioner.domain import names
from shardz_provisioner.domain.models import DatabaseCreate, DatabaseWithPassword
from shardz_provisioner.services import ddl
from shardz_provisioner.services.clusters import ClusterRegistry, ClusterUnavailable
from shardz_provisioner.services.events import emit
from shardz_provisioner.services.views import to_out

log = structlog.get_logger(__name__)


async def lock_account(session: AsyncSession, user_id: uuid.UUID) -> Account:
    """The account row, locked: serialises a user's concurrent creations (plan limits)."""
    await session.execute(insert(Account).values(user_id=user_id).on_conflict_do_nothing())
    account = (
        await session.execute(select(Account).where(Account.user_id == user_id).with_for_update())
    ).scalar_one()
    if account.status == "suspended":
        raise AccountSuspended("the account is suspended for an unpaid invoice")
    if account.status == "deleted":
        raise Unauthenticated("account no longer exists")
    return account


class CreationAbandoned(Unavailable):
    """The saga's intent was rolled back while the DDL ran (it took too long)."""


async def _check_plan(
    session: AsyncSession, settings: ProvisionerSettings, user: Principal, plan: Plan
) -> None:
    if not plan.is_free:
        return
    held = (
        await session.execute(
            select(func.count())
            .select_from(Database)
            .where(
                Database.user_id == user.id,
                Database.plan == plan.id,
                Database.status.not_in(("deleted", "deleting")),
            )
        )
    ).scalar_one()
    if held >= settings.platform.free_plan_databases:
        raise PlanLimitReached(
            f"the free plan allows {settings.platform.free_plan_databases} databases"
        )


async def create(
    sessions: async_sessionmaker[AsyncSession],
    registry: ClusterRegistry,
    settings: ProvisionerSettings,
    user: Principal,
    body: DatabaseCreate,
) -> DatabaseWithPassword:
    plan = get_plan(body.plan, "database")
    if plan is None:
        raise ValidationFailed(f"unknown database plan {body.plan!r}", field="plan")
    database_id = uuid.uuid4()
    password = names.new_password()
    # 1. intent. Its commit need not wait for the disk: step 3 commits synchronously, which
    # flushes this record too (WAL is sequential). If the control plane itself crashes in
    # between, the client got no 201 and whatever DDL ran shows in the orphan report.
    async with sessions() as s, s.begin():
        await s.execute(text("SET LOCAL synchronous_commit = off"))
        await lock_account(s, user.id)
        await _check_plan(s, settings, user, plan)
        candidates = await registry.placement(
            s, settings.connection_overcommit, settings.disk_reserve_fraction
        )
        if not candidates:
            raise ClusterUnavailable("no database server has room right now")
        db = Database(
            id=database_id,
            user_id=user.id,
            name=body.name,
            engine=body.engine,
            plan=plan.id,
            status="provisioning",
            cluster=candidates[0],
            db_name=names.db_name(database_id),
            role_name=names.role_name(database_id),
            password=registry.fernet.encrypt(password.encode()),
        )
        s.add(db)
        try:
            await s.flush()
        except IntegrityError as exc:
            raise Conflict(f"you already have a database named {body.name!r}") from exc
    # 2. DDL
    try:
        size = await _run_ddl(registry, settings, db, password, plan)
    except ClusterUnavailable as exc:
        await _abandon(sessions, registry, db, ddl_may_have_run=exc.reached)
        raise
    except BaseException:
        await _abandon(sessions, registry, db, ddl_may_have_run=True)
        raise
    faults.hit("after_ddl")
    # 3. ready + events, together -- unless the world moved on while the DDL ran: the
    # reconciler took the intent back, or the account was deleted or suspended meanwhile.
    async with sessions() as s, s.begin():
        account = await s.get(Account, user.id, with_for_update=True)
        row = await s.get(Database, database_id, with_for_update=True)
        if row is None or row.status != "provisioning":
            abandoned: ProblemError | None = CreationAbandoned(
                "creating the database took too long"
            )
        elif account is not None and account.status == "deleted":
            abandoned = Unauthenticated("account no longer exists")
        else:
            abandoned = None
            suspended = account is not None and account.status == "suspended"
            if suspended:
                await _disable_login(registry, row)
            row.status = "suspended" if suspended else "ready"
            row.updated_at = datetime.now(UTC)
            cluster = await s.get(Cluster, row.cluster)
            assert cluster is not None
            emit(
                s,
                DatabaseProvisioned(
                    database_id=row.id,
                    user_id=row.user_id,
                    engine=row.engine,
                    cluster=cluster.name,
                    plan=row.plan,
                ),
                row.id,
            )
            # the first point of the size history (GET .../usage/history)
            s.add(UsageSample(database_id=row.id, size_bytes=size, connections=0))
            emit(
                s,
                DatabaseUsageReported(
                    database_id=row.id,
                    user_id=row.user_id,
                    size_bytes=size,
                    measured_at=datetime.now(UTC),
                ),
                row.id,
            )
            if suspended:
                emit(s, DatabaseSuspended(database_id=row.id, user_id=row.user_id), row.id)
            out = to_out(row, cluster, settings.platform.free_plan_database_size_bytes)
    if abandoned is not None:
        await _abandon(sessions, registry, db, ddl_may_have_run=True)
        raise abandoned
    return DatabaseWithPassword(
        **out.model_dump(exclude={"uri"}),
        password=password,
        uri=names.uri(out.username, password, out.host, out.port, out.database),
    )


async def _run_ddl(
    registry: ClusterRegistry,
    settings: ProvisionerSettings,
    db: Database,
    password: str,
    plan: Plan,
) -> int:
    assert db.cluster is not None
    limit = int(plan.limits.get("connections", 5))
    verifier = await names.scram_verifier_async(password)
    async with registry.admin(db.cluster) as conn:
        await ddl.create_role(conn, db.role_name, verifier, limit)
        faults.hit("after_role")
        await ddl.create_database(conn, db.db_name, db.role_name)
        await ensure_terminal_login(conn, settings, db)
        size, _ = await ddl.usage(conn, db.db_name)
    return size


async def ensure_terminal_login(
    conn: AsyncConnection, settings: ProvisionerSettings, db: Database
) -> str:
    """The terminal's login role for `db` (see ddl.ensure_terminal_login); its password."""
    password = names.terminal_password(settings.fernet_key(), db.id)
    await ddl.ensure_terminal_login(
        conn,
        db.db_name,
        db.role_name,
        names.terminal_role_name(db.id),
        await names.scram_verifier_async(password),
        settings.terminal_connection_limit,
    )
    return password


async def _disable_login(registry: ClusterRegistry, db: Database) -> None:
    assert db.cluster is not None
    async with registry.admin(db.cluster) as conn:
        await ddl.set_login(conn, db.role_name, False)
        await ddl.disable_terminal_login(conn, names.terminal_role_name(db.id))


async def _abandon(
    sessions: async_sessionmaker[AsyncSession],
    registry: ClusterRegistry,
    db: Database,
    *,
    ddl_may_have_run: bool,
) -> None:
    """Undo a failed creation: whatever DDL ran is dropped, the intent is removed. If the
    cluster went away mid-way the intent stays for the reconciler, which retries the undo."""
    assert db.cluster is not None
    if ddl_may_have_run:
        try:
            async with registry.admin(db.cluster) as conn:
                await ddl.drop(conn, db.db_name, db.role_name, names.terminal_role_name(db.id))
        except ClusterUnavailable:
            log.warning("rollback deferred to the reconciler", database_id=str(db.id))
            return
    async with sessions() as s, s.begin():
        row = await s.get(Database, db.id)
        if row is not None:
            await s.delete(row)


async def get_owned(
    session: AsyncSession,
    user: Principal,
    database_id: uuid.UUID,
    *,
    for_update: bool = False,
    deleting: bool = False,
) -> Database:
    """The user's database; one whose deletion was accepted is gone for the user (404) except
    to a repeated DELETE (`deleting=True`), which answers as the first did."""
    row = await session.get(Database, database_id, with_for_update=for_update)
    gone = ("deleted",) if deleting else ("deleted", "deleting")
    if row is None or row.user_id != user.id or row.status in gone:
        raise NotFound("no such database")
    return row
