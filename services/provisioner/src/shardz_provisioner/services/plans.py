"""Moving a database to another plan: its limits follow at once, billing learns through
`db.plan_changed`. Paid plans are for active accounts only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.auth import Principal
from shardz_common.errors import Conflict, ValidationFailed
from shardz_common.events import DatabasePlanChanged
from shardz_common.plans import database_size_limit, get_plan
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Cluster
from shardz_provisioner.domain.models import DatabaseOut
from shardz_provisioner.services import ddl
from shardz_provisioner.services.clusters import ClusterRegistry
from shardz_provisioner.services.events import emit
from shardz_provisioner.services.provisioning import _check_plan, get_owned, lock_account
from shardz_provisioner.services.views import to_out


async def change_plan(
    session: AsyncSession,
    registry: ClusterRegistry,
    settings: ProvisionerSettings,
    user: Principal,
    database_id: uuid.UUID,
    plan_id: str,
) -> DatabaseOut:
    plan = get_plan(plan_id, "database")
    if plan is None:
        raise ValidationFailed(f"unknown database plan {plan_id!r}", field="plan")
    # the account lock comes first (as in creation): it refuses a suspended account and
    # serialises this user's plan counts
    await lock_account(session, user.id)
    db = await get_owned(session, user, database_id, for_update=True)
    cluster = await session.get(Cluster, db.cluster)
    assert cluster is not None
    free_size = settings.platform.free_plan_database_size_bytes
    if db.plan == plan.id:
        return to_out(db, cluster, free_size)
    if db.status != "ready":
        raise Conflict(f"the database is {db.status}")
    await _check_plan(session, settings, user, plan)
    assert db.cluster is not None
    async with registry.admin(db.cluster) as conn:
        size, _ = await ddl.usage(conn, db.db_name)
        limit = database_size_limit(plan.id, free_size)
        if size > limit:
            raise Conflict(f"the database holds {size} bytes; the {plan.id} plan allows {limit}")
        connections = int(plan.limits.get("connections", 5))
        await conn.execute(
            sql.SQL("ALTER ROLE {} WITH CONNECTION LIMIT {}").format(
                sql.Identifier(db.role_name), sql.Literal(connections)
            )
        )
    previous = db.plan
    now = datetime.now(UTC)
    db.plan = plan.id
    db.plan_changed_at = now
    db.updated_at = now
    emit(
        session,
        DatabasePlanChanged(
            database_id=db.id,
            user_id=db.user_id,
            plan=plan.id,
            previous_plan=previous,
            changed_at=now,
        ),
        db.id,
    )
    return to_out(db, cluster, free_size)
