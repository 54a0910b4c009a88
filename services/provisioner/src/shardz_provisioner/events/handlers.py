"""Events the provisioner consumes: identity's user lifecycle and billing's account state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.consumers import Consumer, consumer, event_time
from shardz_common.events import AccountReactivated, AccountSuspended, UserCreated, UserDeleted
from shardz_provisioner.db.tables import Account
from shardz_provisioner.services import lifecycle
from shardz_provisioner.services.clusters import ClusterRegistry


def consumers(registry: ClusterRegistry) -> list[Consumer[Any]]:
    @consumer("provisioner.user-created", UserCreated)
    async def on_user_created(event: UserCreated, session: AsyncSession) -> None:
        await session.execute(
            insert(Account).values(user_id=event.user_id).on_conflict_do_nothing()
        )

    @consumer("provisioner.user-deleted", UserDeleted)
    async def on_user_deleted(event: UserDeleted, session: AsyncSession) -> None:
        stmt = insert(Account).values(user_id=event.user_id, status="deleted")
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Account.user_id],
                set_={"status": "deleted", "updated_at": func.now()},
            )
        )
        await lifecycle.delete_all_for(session, event.user_id)

    @consumer("provisioner.account-suspended", AccountSuspended)
    async def on_account_suspended(event: AccountSuspended, session: AsyncSession) -> None:
        await session.execute(
            insert(Account).values(user_id=event.user_id).on_conflict_do_nothing()
        )
        await lifecycle.set_suspended(session, event.user_id, True, event_time())

    @consumer("provisioner.account-reactivated", AccountReactivated)
    async def on_account_reactivated(event: AccountReactivated, session: AsyncSession) -> None:
        await lifecycle.set_suspended(session, event.user_id, False, event_time())

    return [on_user_created, on_user_deleted, on_account_suspended, on_account_reactivated]
